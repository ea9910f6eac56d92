"""Each format's ΔW on the tiny real models equals an independent formula (ldm and diffusers naming, fp16/fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loader_helpers import loader_for
from lora_files import CONV3_FORMATS, LINEAR_FORMATS, adapter_tensors, expected_delta, spell, write_lora

from lora_ext.hosts.ldm import LdmHost
from lora_ext.hosts.standalone import StandaloneHost
from lora_ext.loading.prompt import LoraToken

TE_MULTIPLIER, UNET_MULTIPLIER = 0.6, 0.9
# (part, module in the host's naming, kohya-style file prefix, dotted file prefix)
LDM_TARGETS = {
    "linear": (
        "unet",
        "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    ),
    "conv1x1": (
        "unet",
        "input_blocks.1.1.proj_in",
        "lora_unet_down_blocks_0_attentions_0_proj_in",
        "unet.down_blocks.0.attentions.0.proj_in",
    ),
    "conv3x3": (
        "unet",
        "input_blocks.1.0.in_layers.2",
        "lora_unet_down_blocks_0_resnets_0_conv1",
        "unet.down_blocks.0.resnets.0.conv1",
    ),
    "norm": (
        "unet",
        "input_blocks.1.1.norm",
        "lora_unet_down_blocks_0_attentions_0_norm",
        "unet.down_blocks.0.attentions.0.norm",
    ),
    "te": (
        "te0",
        "transformer.text_model.encoder.layers.0.mlp.fc1",
        "lora_te_text_model_encoder_layers_0_mlp_fc1",
        "text_encoder.text_model.encoder.layers.0.mlp.fc1",
    ),
}
DIFFUSERS_MODULES = {
    "linear": "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "conv1x1": "down_blocks.0.attentions.0.proj_in",
    "conv3x3": "down_blocks.0.resnets.0.conv1",
    "norm": "down_blocks.0.attentions.0.norm",
    "te": "text_model.encoder.layers.0.mlp.fc1",
}
SETUPS = [("ldm", torch.float32), ("ldm", torch.float16), ("diffusers", torch.float32), ("diffusers", torch.float16)]


@pytest.fixture(scope="module")
def _models(tokenizer_dir):
    """One model per (naming, dtype) for the whole module: every test restores what it patched (and checks it)."""
    return {}


@pytest.fixture
def make_host(_models, tokenizer_dir, tmp_path):
    from tiny_models import TinySdModel

    from lora_ext.demo import build_tiny_pipeline

    def make(naming: str, dtype: torch.dtype):
        key = (naming, dtype)
        if key not in _models:
            torch.manual_seed(1234)
            model = TinySdModel("sd1", tokenizer_dir) if naming == "ldm" else build_tiny_pipeline("sd1")
            model = model.to(dtype=dtype) if naming == "diffusers" else model.to(dtype)
            _models[key] = (model, {k: v.clone() for k, v in _root(model).state_dict().items()})
        model = _models[key][0]
        used.append(key)
        if naming == "ldm":
            return LdmHost(model, lora_dir=tmp_path / "Lora")
        return StandaloneHost(model, name="tiny", lora_dir=tmp_path / "Lora")

    used: list = []
    yield make
    for key in used:  # a failed test must not leak patched weights into the next one
        model, original = _models[key]
        _root(model).load_state_dict(original)


def _root(model) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        return model
    return torch.nn.ModuleList([model.unet, model.text_encoder])


def _module(host, naming: str, slot: str) -> torch.nn.Module:
    part, ldm_name, _, _ = LDM_TARGETS[slot]
    name = ldm_name if naming == "ldm" else DIFFUSERS_MODULES[slot]
    parts = host.parts()
    root = parts.unet if part == "unet" else parts.text_encoders[0].root
    return root.get_submodule(name)


def _check(host, naming: str, dtype: torch.dtype, plan: dict[str, str], dotted: bool) -> None:
    """Write one file with ``plan`` (slot → format), apply it, compare every target with the formula."""
    state, expectations = {}, []
    for seed, (slot, fmt) in enumerate(plan.items()):
        module = _module(host, naming, slot)
        before = module.weight.detach().clone()
        tensors = adapter_tensors(fmt, before.float(), seed=seed)
        prefix = LDM_TARGETS[slot][3 if dotted else 2]
        lora_style = dotted and fmt in ("lora", "lora_noalpha", "dora_peft")
        if fmt == "dora_peft":
            tensors = {**tensors, "dora_scale": tensors["dora_scale"]}
        state.update(spell(prefix, tensors, "peft" if lora_style else "kohya"))
        multiplier = TE_MULTIPLIER if slot == "te" else UNET_MULTIPLIER
        expectations.append((module, before, expected_delta(fmt, tensors, before.float(), multiplier)))
    write_lora(host.lora_dir / "subject.safetensors", state)
    loader = loader_for(host)
    report = loader.apply([LoraToken("subject", te=TE_MULTIPLIER, unet=UNET_MULTIPLIER)])
    assert report.files[0].applied, report.warnings
    assert report.files[0].matched == len(plan)
    atol, rtol = (1e-6, 1e-5) if dtype == torch.float32 else (1e-4, 1e-3)
    for module, before, delta in expectations:
        assert np.abs(delta).max() > 1e-3  # the patch must be visible at this precision
        expected = torch.from_numpy(before.double().numpy() + delta).to(dtype)
        after = module.weight.detach()
        torch.testing.assert_close(after.float(), expected.float(), atol=atol, rtol=rtol)
    loader.restore()
    for module, before, _ in expectations:
        assert torch.equal(module.weight.detach(), before)


@pytest.mark.parametrize("naming,dtype", SETUPS, ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("fmt", LINEAR_FORMATS)
def test_linear_format_delta_matches_formula(make_host, naming, dtype, fmt):
    host = make_host(naming, dtype)
    _check(host, naming, dtype, {"linear": fmt, "te": fmt}, dotted=naming == "diffusers")


@pytest.mark.parametrize("naming,dtype", SETUPS[:3], ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("fmt", CONV3_FORMATS)
def test_conv_format_delta_matches_formula(make_host, naming, dtype, fmt):
    host = make_host(naming, dtype)
    _check(host, naming, dtype, {"conv3x3": fmt, "conv1x1": "lora" if fmt != "full" else "full"}, dotted=False)


@pytest.mark.parametrize("naming", ["ldm", "diffusers"])
def test_norm_format_patches_weight_and_bias(make_host, naming):
    host = make_host(naming, torch.float32)
    module = _module(host, naming, "norm")
    bias_before = module.bias.detach().clone()
    tensors = adapter_tensors("norm", module.weight.detach())
    write_lora(host.lora_dir / "subject.safetensors", spell(LDM_TARGETS["norm"][2], tensors))
    loader = loader_for(host)
    loader.apply([LoraToken("subject", te=1.0, unet=0.5)])
    torch.testing.assert_close(module.bias.detach(), bias_before + 0.5 * tensors["b_norm"])
    loader.restore()
    assert torch.equal(module.bias.detach(), bias_before)
    _check(make_host(naming, torch.float32), naming, torch.float32, {"norm": "norm"}, dotted=False)


def test_lokr_with_both_factors_full_ignores_alpha(make_host):
    host = make_host("ldm", torch.float32)
    module = _module(host, "ldm", "linear")
    before = module.weight.detach().clone()
    tensors = adapter_tensors("lokr_full", before)
    tensors["alpha"] = torch.tensor(123.0)
    write_lora(host.lora_dir / "subject.safetensors", spell(LDM_TARGETS["linear"][2], tensors))
    loader_for(host).apply([LoraToken("subject")])
    expected = before + torch.kron(tensors["lokr_w1"], tensors["lokr_w2"])
    torch.testing.assert_close(module.weight.detach(), expected)


def test_dyn_truncates_rank_and_keeps_alpha_over_full_rank(make_host):
    host = make_host("ldm", torch.float32)
    module = _module(host, "ldm", "linear")
    before = module.weight.detach().clone()
    tensors = adapter_tensors("lora", before, rank=8)
    write_lora(host.lora_dir / "dy.safetensors", spell(LDM_TARGETS["linear"][2], tensors))
    loader_for(host).apply([LoraToken("dy", te=1.0, unet=1.0, dyn=2)])
    scale = float(tensors["alpha"]) / 8
    expected = before + scale * tensors["lora_up.weight"][:, :2] @ tensors["lora_down.weight"][:2]
    torch.testing.assert_close(module.weight.detach(), expected)


def test_bf16_alpha_and_tensors_are_read(make_host):
    host = make_host("ldm", torch.float32)
    module = _module(host, "ldm", "linear")
    before = module.weight.detach().clone()
    tensors = {k: v.to(torch.bfloat16) for k, v in adapter_tensors("lora", before).items()}
    write_lora(host.lora_dir / "b.safetensors", spell(LDM_TARGETS["linear"][2], tensors))
    loader_for(host).apply([LoraToken("b")])
    up, down = tensors["lora_up.weight"].float(), tensors["lora_down.weight"].float()
    torch.testing.assert_close(module.weight.detach(), before + float(tensors["alpha"]) / 4 * up @ down)


@pytest.mark.parametrize("file_dims", [2, 4])
def test_lora_shape_is_reshaped_to_a_1x1_conv_or_linear_target(make_host, file_dims):
    """SD1's proj_in is a 1×1 conv, SD2/SDXL's a Linear: files of either shape apply to both."""
    host = make_host("ldm", torch.float32)
    conv = _module(host, "ldm", "conv1x1")  # (32, 32, 1, 1)
    linear = _module(host, "ldm", "linear")  # (32, 32)
    state, expected = {}, []
    for seed, (slot, module) in enumerate((("conv1x1", conv), ("linear", linear))):
        shape = (32, 32) if file_dims == 2 else (32, 32, 1, 1)
        tensors = adapter_tensors("lora", torch.zeros(shape), seed=seed)
        state.update(spell(LDM_TARGETS[slot][2], tensors))
        delta = (
            float(tensors["alpha"]) / 4 * tensors["lora_up.weight"].flatten(1) @ tensors["lora_down.weight"].flatten(1)
        )
        expected.append((module, module.weight.detach() + delta.reshape(module.weight.shape)))
    write_lora(host.lora_dir / "shape.safetensors", state)
    loader = loader_for(host)
    assert loader.apply([LoraToken("shape")]).files[0].matched == 2
    for module, weight in expected:
        torch.testing.assert_close(module.weight.detach(), weight)
    loader.restore()
