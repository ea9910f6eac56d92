"""A saved file, applied by our loader the way A1111 maps keys, reproduces the trained network exactly."""

from __future__ import annotations

import pytest
import torch
from train_support import wake_zero_layers

from lora_ext.host import SizeCondition
from lora_ext.training.inject import attached
from lora_ext.training.network import NetworkSpec, build_network
from lora_ext.training.save import save_lora

SIZE = [SizeCondition((64, 64), (0, 0), (64, 64))]


def _outputs(host) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        conditioning = host.encode_prompts(["a red cat, outdoors"], SIZE)
        latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
        return conditioning.crossattn, host.predict(latents, torch.tensor([400]), conditioning)


@pytest.mark.parametrize(
    ("naming", "family", "conv"),
    [("ldm", "sd1", 0), ("ldm", "sd2", 4), ("ldm", "sdxl", 4), ("diffusers", "sd1", 4), ("diffusers", "sdxl", 4)],
)
def test_saved_file_applied_by_the_loader_matches_the_hooked_network(
    make_ldm_host, make_standalone_host, naming, family, conv
):
    from lora_ext.loading.loader import NetworkLoader

    host = make_ldm_host(family) if naming == "ldm" else make_standalone_host(family)
    wake_zero_layers(host)
    network = build_network(host.parts(), family, NetworkSpec(rank=4, alpha=2.0, conv_rank=conv, conv_alpha=4.0))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in network.loras.values():
            module.up.copy_(torch.randn(module.up.shape, generator=generator) * 0.05)
    network.eval()
    base = _outputs(host)
    with attached(network, host.parts()):
        hooked = _outputs(host)
    assert not torch.allclose(hooked[1], base[1])
    save_lora(host.lora_dir / "rt.safetensors", network.kohya_state_dict(), {"ss_output_name": "rt"})
    loader = NetworkLoader.for_host(host)
    loader.prompt_hook("<lora:rt:1>")
    report = loader.last_report.files[0]
    try:
        assert report.matched == len(network.loras) and not report.unmatched_keys
        merged = _outputs(host)
    finally:
        loader.restore()
    # Merged and hooked differ only in fp32 rounding (W·x + ΔW·x against (W + ΔW)·x); how much depends on the
    # CPU's kernels (up to ~3e-5 of the output's norm through the UNet on AVX-512), so the bound is relative
    # to what the LoRA changes: a wrong scale or a missed module moves the output by a large part of it.
    for got, want, before in zip(merged, hooked, base, strict=True):
        effect = float((want - before).norm())
        assert effect > 0 or torch.equal(got, want)
        assert float((got - want).norm()) <= 1e-3 * max(effect, 1e-6), (float((got - want).norm()), effect)
