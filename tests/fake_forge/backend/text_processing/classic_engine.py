"""``ClassicTextProcessingEngine``: prompts → CLIP hidden states (and pooled), not under inference mode itself.

Forge's engine also parses emphasis, embeddings and 75-token chunks; the fake tokenizes to one chunk.
Its ``text_encoder`` is an ``IntegratedCLIP``-like module with an HF ``CLIPTextModel`` at ``.transformer``.
"""


class ClassicTextProcessingEngine:
    def __init__(
        self,
        text_encoder,
        tokenizer,
        embedding_dir=None,
        embedding_key="clip_l",
        embedding_expected_shape=768,
        emphasis_name="Original",
        text_projection=False,
        minimal_clip_skip=1,
        clip_skip=1,
        return_pooled=False,
        final_layer_norm=True,
    ):
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.text_projection = text_projection
        self.minimal_clip_skip = minimal_clip_skip
        self.clip_skip = clip_skip
        self.return_pooled = return_pooled
        self.final_layer_norm = final_layer_norm

    def __call__(self, texts):
        transformer = self.text_encoder.transformer
        device = next(transformer.parameters()).device
        ids = self.tokenizer(
            list(texts),
            padding="max_length",
            max_length=transformer.config.max_position_embeddings,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        out = transformer(input_ids=ids, output_hidden_states=True)
        skip = max(self.clip_skip, self.minimal_clip_skip)
        z = out.hidden_states[-skip]
        if self.final_layer_norm:
            z = transformer.text_model.final_layer_norm(z)
        if not self.return_pooled:
            return z
        pooled = out.pooler_output
        if self.text_projection:
            pooled = pooled @ self.text_encoder.text_projection.to(pooled)
        return z, pooled
