"""Every registered format through the same behaviours (STYLE §8)."""

from __future__ import annotations

import json

import pytest
import torch
from lora_files import adapter_tensors, spell
from torch import nn

from lora_ext.formats import FORMATS, parse_module
from lora_ext.formats.base import Dropouts, LayerOp
from lora_ext.formats.dora import DoraAdapter
from lora_ext.formats.lora import LoraAdapter
from lora_ext.loading.patcher import AppliedPatches, ParamPatch

SAMPLES = {  # a representative file layout per registered format
    "lora": "lora",
    "loha": "loha",
    "lokr": "lokr_w2_lowrank",
    "glora": "glora_new",
    "oft": "oft",
    "ia3": "ia3_out",
    "full": "full",
    "norm": "norm",
}
ALL = [*FORMATS, DoraAdapter]


def _layer(name: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.LayerNorm(32) if name == "norm" else nn.Linear(32, 32)


def _sample(cls) -> tuple[nn.Module, object]:
    if cls is DoraAdapter:
        layer = _layer("lora")
        return layer, parse_module(adapter_tensors("dora_out", layer.weight.detach()))
    layer = _layer(cls.name)
    return layer, parse_module(adapter_tensors(SAMPLES[cls.name], layer.weight.detach()))


def test_every_registered_format_has_a_sample():
    assert {cls.name for cls in FORMATS} == set(SAMPLES)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_format_round_trips_through_its_state_dict(cls):
    layer, adapter = _sample(cls)
    assert isinstance(adapter, cls)
    again = parse_module(adapter.to_state_dict())
    base = layer.weight.detach().float()
    assert type(again) is type(adapter)
    torch.testing.assert_close(again.delta_weight(base, 0.7), adapter.delta_weight(base, 0.7))
    assert adapter.delta_weight(base, 0.7).abs().max() > 1e-4


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_zero_initialised_adapter_is_a_no_op(cls):
    layer = _layer(cls.name if cls is not DoraAdapter else "lora")
    adapter = cls.initial(layer.weight.detach(), rank=4, generator=torch.Generator().manual_seed(1))
    delta = adapter.delta_weight(layer.weight.detach().float(), 1.0)
    torch.testing.assert_close(delta, torch.zeros_like(delta), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_merge_then_restore_returns_original_weights(cls, dtype):
    layer, adapter = _sample(cls)
    layer = layer.to(dtype)
    original = layer.weight.detach().clone()
    patches = AppliedPatches()
    patches.apply([(layer.weight, [ParamPatch(adapter, 1.0, source="a")])])
    expected = (original.float() + adapter.delta_weight(original.float(), 1.0)).to(dtype)
    assert torch.equal(layer.weight.detach(), expected)
    assert not torch.equal(layer.weight.detach(), original)
    patches.restore()
    assert torch.equal(layer.weight.detach(), original)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_trainable_module_reproduces_the_adapter(cls):
    layer, adapter = _sample(cls)
    module = adapter.trainable()
    module.multiplier = 0.7
    base = layer.weight.detach().float()
    torch.testing.assert_close(module.delta_weight(base), adapter.delta_weight(base, 0.7))
    module.delta_weight(base).sum().backward()
    assert any(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("cls", [cls for cls in ALL if cls.name != "norm"], ids=lambda c: c.name)
def test_trainable_forward_adds_what_merging_adds(cls):
    layer, adapter = _sample(cls)
    module = adapter.trainable(LayerOp.of(layer))
    module.multiplier = 0.7
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(4))
    base, plain = layer.weight.detach().clone(), layer(x).detach()
    AppliedPatches().apply([(layer.weight, [ParamPatch(adapter, 0.7, source="a")])])
    added = module(x, base)
    assert added.abs().max() > 1e-3
    torch.testing.assert_close(plain + added, layer(x).detach(), atol=1e-4, rtol=1e-4)


def test_locon_trainable_forward_is_the_merged_convolution():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1)
    adapter = LoraAdapter.initial(conv.weight.detach(), rank=3, alpha=1.5, generator=torch.Generator().manual_seed(2))
    adapter = LoraAdapter(down=adapter.down, up=torch.randn(8, 3, 1, 1), network_alpha=adapter.network_alpha)
    module = adapter.trainable(LayerOp.of(conv), Dropouts(dropout=0.5, rank_dropout=0.5, module_dropout=0.5))
    module.eval()  # dropouts only act in training
    x = torch.randn(2, 6, 9, 9, generator=torch.Generator().manual_seed(3))
    delta = adapter.delta_weight(conv.weight.detach())
    expected = torch.nn.functional.conv2d(x, delta, None, 2, 1)
    torch.testing.assert_close(module(x, conv.weight.detach()), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module.delta_weight(conv.weight.detach()), delta)


def test_trainable_lora_loads_a_saved_module_with_its_alpha():
    base = torch.zeros(8, 4)
    saved = LoraAdapter(down=torch.randn(2, 4), up=torch.randn(8, 2), network_alpha=0.5).to_state_dict()
    module = LoraAdapter.initial(base, rank=2, alpha=2.0, generator=torch.Generator().manual_seed(0)).trainable()
    assert module.load(saved)
    assert module.frozen().alpha == 0.5
    assert torch.equal(module.to_state_dict()["lora_up.weight"], saved["lora_up.weight"])
    assert not module.load({"lora_down.weight": torch.randn(3, 4), "lora_up.weight": torch.randn(8, 3)})
    assert torch.equal(module.to_state_dict()["lora_down.weight"], saved["lora_down.weight"])


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
def test_bypass_and_merged_outputs_match(dtype, tolerance):
    layer = _layer("lora").to(dtype)
    adapter = parse_module(adapter_tensors("lora", layer.weight.detach()))
    assert isinstance(adapter, LoraAdapter)
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(3)).to(dtype)
    bypass = adapter.bypass(layer(x).float(), x, 0.8)
    AppliedPatches().apply([(layer.weight, [ParamPatch(adapter, 0.8, source="a")])])
    torch.testing.assert_close(layer(x).float(), bypass, atol=tolerance, rtol=tolerance)


def test_parse_module_does_not_modify_the_dict():
    tensors = adapter_tensors("dora_out", torch.randn(32, 32))
    before = dict(tensors)
    parse_module(tensors)
    assert tensors.keys() == before.keys() and all(tensors[k] is before[k] for k in before)


def test_peft_files_take_alpha_from_adapter_metadata():
    from lora_ext.formats.parse import parse_lora

    tensors = spell(
        "unet.down_blocks.0.attentions.0.proj_in", adapter_tensors("lora_noalpha", torch.zeros(32, 32)), "peft"
    )
    plain = parse_lora(tensors, {})
    configured = parse_lora(tensors, {"lora_adapter_metadata": json.dumps({"r": 4, "lora_alpha": 2})})
    (adapter,) = plain.adapters.values()
    (scaled,) = configured.adapters.values()
    base = torch.zeros(32, 32)
    torch.testing.assert_close(scaled.delta_weight(base), 0.5 * adapter.delta_weight(base))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_single_non_finite_value_is_found_in_any_dtype(dtype, bad):
    from lora_ext.errors import FileFormatError
    from lora_ext.formats.parse import check_finite

    tensors = {"a.lora_down.weight": torch.ones(4, 8, dtype=dtype), "b.lora_up.weight": torch.ones(8, 4, dtype=dtype)}
    tensors["b.lora_up.weight"][3, 1] = bad
    with pytest.raises(FileFormatError, match="'b.lora_up.weight'"):
        check_finite(tensors, "x.safetensors")


def test_finite_values_whose_sum_overflows_are_accepted():
    from lora_ext.formats.parse import check_finite

    huge = torch.full((4, 4), 3e38, dtype=torch.float32)  # finite, but the fp32 sum overflows to inf
    assert not torch.isfinite(huge.sum())
    check_finite({"a.lora_up.weight": huge, "a.alpha": torch.tensor(4, dtype=torch.int64)}, "x.safetensors")
