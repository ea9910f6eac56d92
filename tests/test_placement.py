"""ΔW that lands on part of a weight: OpenCLIP's transposed ``text_projection`` and 9-channel inpaint ``conv_in``."""

from __future__ import annotations

import torch
from loader_helpers import all_roots, loader_for, snapshot
from lora_files import adapter_tensors, spell, write_lora
from safetensors.torch import load_file, save_file
from torch import nn

from lora_ext.cli import main
from lora_ext.loading.prompt import LoraToken

PROJECTION = "lora_te2_text_projection"
CONV_IN = "lora_unet_input_blocks_0_0"


def _delta(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    down, up = tensors["lora_down.weight"], tensors["lora_up.weight"]
    return float(tensors["alpha"]) / down.shape[0] * (up.flatten(1) @ down.flatten(1)).reshape(up.shape[0], -1)


def test_text_projection_delta_is_added_transposed_on_open_clip(make_ldm_host):
    host = make_ldm_host("sdxl")
    projection = host.parts().text_encoders[1].root.model.text_projection
    original = projection.detach().clone()
    hf_weight = original.t()  # what a LoRA trainer saw: the (out, in) Linear of CLIPTextModelWithProjection
    tensors = adapter_tensors("lora", hf_weight, seed=3)
    write_lora(host.lora_dir / "proj.safetensors", spell(PROJECTION, tensors))
    loader = loader_for(host)
    report = loader.apply([LoraToken("proj", te=0.5)])
    assert report.files[0].applied and report.files[0].matched == 1 and not report.files[0].unmatched_keys
    expected = (hf_weight.double() + 0.5 * _delta(tensors).double()).t()
    torch.testing.assert_close(projection.detach().double(), expected, rtol=1e-6, atol=1e-6)
    loader.restore()
    assert torch.equal(projection.detach(), original)


def test_text_projection_is_a_plain_linear_in_diffusers_naming(make_standalone_host):
    host = make_standalone_host("sdxl")
    linear = host.parts().text_encoders[1].root.text_projection
    original = linear.weight.detach().clone()
    tensors = adapter_tensors("lora", original, seed=4)
    write_lora(host.lora_dir / "proj.safetensors", spell(PROJECTION, tensors))
    loader_for(host).apply([LoraToken("proj")])
    torch.testing.assert_close(linear.weight.detach(), original + _delta(tensors), rtol=1e-5, atol=1e-6)


def test_merge_transposes_the_text_projection_of_an_sdxl_checkpoint(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sdxl", torch.float32)
    key = "conditioner.embedders.1.model.text_projection"
    tensors = adapter_tensors("lora", base[key].t(), seed=5)
    lora = write_lora(tmp_path / "proj.safetensors", spell(PROJECTION, tensors))
    out = tmp_path / "out.safetensors"
    assert main(["merge", str(base_path), "--lora", f"{lora}:0.5", "--out", str(out)]) == 0, capsys.readouterr().err
    merged = load_file(str(out))
    torch.testing.assert_close(merged[key], base[key] + 0.5 * _delta(tensors).t(), rtol=1e-5, atol=1e-6)


def _make_inpaint(unet: nn.Module) -> nn.Conv2d:
    """Widen conv_in to 9 input channels (latent, mask, masked-image latent), as an inpainting UNet has."""
    old = unet.input_blocks[0][0]
    new = nn.Conv2d(9, old.out_channels, 3, padding=1)
    with torch.no_grad():
        new.weight[:, :4] = old.weight
        new.weight[:, 4:] = torch.randn_like(new.weight[:, 4:]) * 0.1
        new.bias.copy_(old.bias)
    unet.input_blocks[0][0] = new
    return new


def test_a_four_channel_conv_in_lora_patches_the_latent_channels_of_an_inpaint_model(make_ldm_host):
    host = make_ldm_host("sd1")
    conv = _make_inpaint(host.parts().unet)
    before = snapshot(*all_roots(host))
    original = conv.weight.detach().clone()
    tensors = adapter_tensors("lora", original[:, :4], seed=6)  # trained on the 4-channel base model
    write_lora(host.lora_dir / "c.safetensors", spell(CONV_IN, tensors))
    loader = loader_for(host)
    report = loader.apply([LoraToken("c", unet=0.8)])
    assert report.files[0].applied and not report.files[0].shape_mismatches
    patched = conv.weight.detach()
    expected = original[:, :4] + 0.8 * _delta(tensors).reshape(original[:, :4].shape)
    torch.testing.assert_close(patched[:, :4], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(patched[:, 4:], original[:, 4:])  # mask and masked-image channels untouched
    loader.restore()
    assert snapshot(*all_roots(host)) == before


def test_a_conv_in_lora_with_other_channels_is_still_a_shape_mismatch(make_ldm_host):
    host = make_ldm_host("sd1")
    conv = _make_inpaint(host.parts().unet)
    tensors = adapter_tensors("lora", conv.weight.detach()[:, :3], seed=7)  # 3 input channels: fits nothing
    other = adapter_tensors("lora", torch.zeros(32, 32), seed=8)
    state = {**spell(CONV_IN, tensors), **spell("lora_unet_input_blocks_1_1_proj_in", other)}
    write_lora(host.lora_dir / "bad.safetensors", state)
    report = loader_for(host).apply([LoraToken("bad")])
    assert report.files[0].shape_mismatches == [CONV_IN]


def test_merge_pads_a_conv_in_lora_into_a_nine_channel_checkpoint(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sd1", torch.float32)
    key = "model.diffusion_model.input_blocks.0.0.weight"
    weight = base[key]
    wide = torch.cat([weight, torch.randn(weight.shape[0], 5, *weight.shape[2:])], dim=1)
    inpaint = tmp_path / "inpaint.safetensors"
    save_file({**base, key: wide}, str(inpaint))
    tensors = adapter_tensors("lora", weight, seed=9)
    lora = write_lora(tmp_path / "c.safetensors", spell(CONV_IN, tensors))
    out = tmp_path / "out.safetensors"
    assert main(["merge", str(inpaint), "--lora", str(lora), "--out", str(out)]) == 0, capsys.readouterr().err
    merged = load_file(str(out))[key]
    torch.testing.assert_close(merged[:, :4], weight + _delta(tensors).reshape(weight.shape), rtol=1e-5, atol=1e-6)
    assert torch.equal(merged[:, 4:], wide[:, 4:])
