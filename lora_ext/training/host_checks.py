"""Whether a host may train, as pure rules over its memory and weight-storage modes.

The WebUI adapter reads its flags (``--lowvram``, ``--medvram``, fp8 storage, an
alternate UNet such as TensorRT) and returns ``training_capabilities(...)`` from
``capabilities()``; the trainer refuses with these reasons before touching anything.
"""

from __future__ import annotations

from lora_ext.host import HostCapabilities


def training_capabilities(
    *,
    lowvram: bool = False,
    medvram: bool = False,
    fp8_weights: bool = False,
    alternate_unet: str | None = None,
    can_generate: bool = True,
) -> HostCapabilities:
    """Refuse what cannot work; under medvram allow UNet-only training (conditioning is computed first)."""
    reasons: list[str] = []
    can_train = True
    if lowvram:
        can_train = False
        reasons.append(
            "the WebUI runs with --lowvram, which moves UNet blocks off the GPU between forward and "
            "backward; restart without --lowvram to train"
        )
    if fp8_weights:
        can_train = False
        reasons.append(
            "the model's weights are stored in fp8 (Settings → Optimizations → FP8 weight); "
            "turn it off and reload the model to train"
        )
    if alternate_unet:
        can_train = False
        reasons.append(f"an alternate UNet ({alternate_unet}) replaces the model's own; set SD UNet to None to train")
    can_train_text_encoder = can_train and not medvram
    if medvram and can_train:
        reasons.append("--medvram swaps the text encoder out while the UNet runs, so only the UNet can be trained")
    return HostCapabilities(
        can_train=can_train, can_train_text_encoder=can_train_text_encoder, can_generate=can_generate, reasons=reasons
    )
