"""Key spellings map to the right live modules; ldm, diffusers and checkpoint maps agree."""

from __future__ import annotations

import pytest
import torch
from loader_helpers import loader_for
from lora_files import adapter_tensors, spell, write_lora
from tiny_models import checkpoint_state_dict

from lora_ext.formats.detect import detect_base
from lora_ext.formats.keymap import build_keymap, entries_from_checkpoint, keymap_for_parts
from lora_ext.host import ModelParts, TextEncoderPart
from lora_ext.loading.prompt import LoraToken

SD1_KOHYA = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
    "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_out_0": "input_blocks.2.1.transformer_blocks.0.attn2.to_out.0",
    "lora_unet_up_blocks_1_attentions_0_proj_out": "output_blocks.3.1.proj_out",
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj": "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj",
    "lora_unet_mid_block_attentions_0_proj_in": "middle_block.1.proj_in",
    "lora_unet_mid_block_resnets_1_conv2": "middle_block.2.out_layers.3",
    "lora_unet_down_blocks_1_downsamplers_0_conv": "input_blocks.6.0.op",
    "lora_unet_up_blocks_0_upsamplers_0_conv": "output_blocks.2.1.conv",
    "lora_unet_up_blocks_2_upsamplers_0_conv": "output_blocks.8.2.conv",
    "lora_unet_down_blocks_0_resnets_1_time_emb_proj": "input_blocks.2.0.emb_layers.1",
    "lora_unet_down_blocks_1_resnets_0_conv_shortcut": "input_blocks.4.0.skip_connection",
    "lora_unet_conv_in": "input_blocks.0.0",
    "lora_unet_conv_out": "out.2",
    "lora_unet_time_embedding_linear_2": "time_embed.2",
}
SDXL_KEYS = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": (
        "unet",
        "input_blocks.4.1.transformer_blocks.0.attn2.to_k",
        None,
    ),
    "unet.up_blocks.0.upsamplers.0.conv": ("unet", "output_blocks.2.2.conv", None),
    "unet.up_blocks.1.upsamplers.0.conv": ("unet", "output_blocks.5.2.conv", None),
    "lora_unet_label_emb_0_0": ("unet", "label_emb.0.0", None),
    "unet.add_embedding.linear_1": ("unet", "label_emb.0.0", None),
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v": (
        "unet",
        "input_blocks.4.1.transformer_blocks.0.attn1.to_v",
        None,
    ),
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (
        "te0",
        "transformer.text_model.encoder.layers.0.self_attn.q_proj",
        None,
    ),
    "lora_te2_text_model_encoder_layers_0_self_attn_k_proj": ("te1", "model.transformer.resblocks.0.attn", (32, 64)),
    "lora_te2_text_model_encoder_layers_1_mlp_fc2": ("te1", "model.transformer.resblocks.1.mlp.c_proj", None),
    "text_encoder_2.text_model.encoder.layers.1.self_attn.out_proj": (
        "te1",
        "model.transformer.resblocks.1.attn.out_proj",
        None,
    ),
    "text_encoders.clip_g.transformer.text_model.encoder.layers.0.self_attn.v_proj": (
        "te1",
        "model.transformer.resblocks.0.attn",
        (64, 96),
    ),
}


def test_kohya_sd1_keys_map_to_ldm_modules(make_ldm_host):
    keymap = keymap_for_parts(make_ldm_host("sd1").parts())
    for key, module in SD1_KOHYA.items():
        target = keymap.lookup(key)
        assert target is not None, key
        assert (target.part, target.module) == ("unet", module), key
    te = keymap.lookup("lora_te_text_model_encoder_layers_1_self_attn_out_proj")
    assert (te.part, te.module) == ("te0", "transformer.text_model.encoder.layers.1.self_attn.out_proj")


def test_sdxl_keys_map_including_upsamplers_and_fused_qkv_rows(make_ldm_host):
    keymap = keymap_for_parts(make_ldm_host("sdxl").parts())
    assert keymap.family == "sdxl"
    for key, (part, module, rows) in SDXL_KEYS.items():
        target = keymap.lookup(key)
        assert target is not None, key
        assert (target.part, target.module, target.rows) == (part, module, rows), key
    assert keymap.lookup("lora_te_text_model_encoder_layers_0_self_attn_q_proj") is None  # SD1 TE prefix on SDXL


ATTN_Q_SPELLINGS = [
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
    "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q",
    "lycoris_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "base_model.model.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q",
    "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
]


@pytest.mark.parametrize("naming", ["ldm", "diffusers"])
def test_every_spelling_of_one_module_reaches_the_same_target(make_ldm_host, make_standalone_host, naming):
    host = make_ldm_host("sd1") if naming == "ldm" else make_standalone_host("sd1")
    keymap = keymap_for_parts(host.parts())
    targets = {keymap.lookup(key) for key in ATTN_Q_SPELLINGS}
    assert len(targets) == 1 and None not in targets
    (target,) = targets
    assert target.canonical == "unet:input_blocks.1.1.transformer_blocks.0.attn1.to_q"
    assert target.block == "IN01"


def _unet_targets(keymap):
    return {t.canonical: t.shape for t in keymap.targets() if not t.is_text_encoder}


def test_ldm_and_diffusers_models_give_the_same_canonical_modules(make_ldm_host, make_standalone_host):
    ldm = _unet_targets(keymap_for_parts(make_ldm_host("sd1").parts()))
    diffusers = _unet_targets(keymap_for_parts(make_standalone_host("sd1").parts()))
    common = set(ldm) & set(diffusers)
    assert len(common) > 150
    assert {k for k in diffusers if k not in ldm} == set()  # every diffusers module has its ldm name
    assert all(ldm[k] == diffusers[k] for k in common)


@pytest.mark.parametrize("layout", ["sd1", "sd2", "sdxl"])
def test_checkpoint_keys_build_the_same_map_as_the_live_model(make_ldm_host, layout):
    host = make_ldm_host(layout)
    live = keymap_for_parts(host.parts())
    shapes = {key: tuple(t.shape) for key, t in checkpoint_state_dict(host.sd_model).items()}
    entries, _ = entries_from_checkpoint(shapes)
    from_checkpoint = build_keymap(entries, "ldm")
    assert from_checkpoint.family == live.family == layout
    assert set(from_checkpoint.by_prefix) == set(live.by_prefix)
    for prefix, target in live.by_prefix.items():
        other = from_checkpoint.by_prefix[prefix]
        assert (other.canonical, other.shape, other.rows, other.module) == (
            target.canonical,
            target.shape,
            target.rows,
            target.module,
        )


def test_open_clip_fused_in_proj_takes_q_and_v_slices_independently(make_ldm_host):
    host = make_ldm_host("sd2")
    loader = loader_for(host)
    attn = host.parts().text_encoders[0].root.get_submodule("model.transformer.resblocks.0.attn")
    before = attn.in_proj_weight.detach().clone()
    width = before.shape[1]
    q = adapter_tensors("lora", before[:width], seed=1)
    v = adapter_tensors("lora", before[:width], seed=2)
    state = {
        **spell("lora_te_text_model_encoder_layers_0_self_attn_q_proj", q),
        **spell("lora_te_text_model_encoder_layers_0_self_attn_v_proj", v),
    }
    write_lora(host.lora_dir / "qv.safetensors", state)
    report = loader.apply([LoraToken("qv", te=0.5)])
    assert report.files[0].matched == 2
    after = attn.in_proj_weight.detach()

    def delta(t):
        return 0.5 * float(t["alpha"]) / 4 * t["lora_up.weight"] @ t["lora_down.weight"]

    torch.testing.assert_close(after[:width], before[:width] + delta(q))
    assert torch.equal(after[width : 2 * width], before[width : 2 * width])
    torch.testing.assert_close(after[2 * width :], before[2 * width :] + delta(v))


def test_flattened_transformers5_text_encoder_names_are_accepted(make_pipeline):
    pipeline = make_pipeline("sd1")
    parts = ModelParts(
        unet=pipeline.unet,
        text_encoders=(TextEncoderPart(0, "hf_clip", pipeline.text_encoder.text_model),),
        naming="diffusers",
    )
    keymap = keymap_for_parts(parts)
    target = keymap.lookup("lora_te_text_model_encoder_layers_0_self_attn_q_proj")
    assert target is not None and target.module == "encoder.layers.0.self_attn.q_proj"
    assert keymap.lookup("text_encoder.encoder.layers.0.self_attn.q_proj") == target


def _down(width: int) -> dict[str, torch.Tensor]:
    return {"lora_down.weight": torch.zeros(4, width), "lora_up.weight": torch.zeros(320, 4)}


@pytest.mark.parametrize(
    "metadata,modules,expected",
    [
        ({"ss_base_model_version": "sdxl_base_v1-0"}, {}, ("sdxl", "metadata")),
        ({"ss_v2": "True"}, {}, ("sd2", "metadata")),
        ({"modelspec.architecture": "stable-diffusion-v1/lora"}, {}, ("sd1", "metadata")),
        ({}, {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": _down(768)}, ("sd1", "shapes")),
        ({}, {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": _down(1024)}, ("sd2", "shapes")),
        ({}, {"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": _down(2048)}, ("sdxl", "shapes")),
        ({}, {"lora_te2_text_model_encoder_layers_0_mlp_fc1": _down(32)}, ("sdxl", "keys")),
        ({}, {"lora_te_text_model_encoder_layers_0_mlp_fc1": _down(32)}, ("sd1", "keys")),
        ({}, {"something": _down(32)}, ("unknown", "none")),
    ],
)
def test_base_model_is_detected_from_metadata_shapes_and_keys(metadata, modules, expected):
    detection = detect_base(modules, metadata)
    assert (detection.family, detection.evidence) == expected
