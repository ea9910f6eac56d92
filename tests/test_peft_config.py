"""PEFT scale settings: ``adapter_config.json`` beside the file or diffusers' ``lora_adapter_metadata``."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from loader_helpers import loader_for
from lora_files import adapter_tensors, spell, write_lora

from lora_ext.formats.parse import parse_lora
from lora_ext.formats.peft_config import PeftSettings
from lora_ext.loading.prompt import LoraToken

Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
K = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"
TE_Q = "text_model.encoder.layers.0.self_attn.q_proj"
RANK = 4


def _unscaled(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return tensors["lora_up.weight"] @ tensors["lora_down.weight"]


def _peft_folder(host, config: dict, name: str = "my_style") -> dict[str, torch.Tensor]:
    """A PEFT ``save_pretrained`` folder in the Lora dir; returns the module tensors by module name."""
    unet = host.parts().unet
    modules = {
        name: adapter_tensors("lora_noalpha", unet.get_submodule(name).weight.detach(), rank=RANK, seed=i)
        for i, name in enumerate((Q, K))
    }
    state = {}
    for module, tensors in modules.items():
        state.update(spell(f"base_model.model.{module}", tensors, "peft"))
    folder = host.lora_dir / name
    write_lora(folder / "adapter_model.safetensors", state)
    (folder / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return modules


@pytest.mark.parametrize("rslora", [False, True])
def test_a_peft_folder_is_found_by_its_name_and_scaled_per_module(make_standalone_host, rslora):
    host = make_standalone_host("sd1")
    unet = host.parts().unet
    originals = {name: unet.get_submodule(name).weight.detach().clone() for name in (Q, K)}
    config = {"r": RANK, "lora_alpha": 8, "alpha_pattern": {"attn1.to_q": 2}, "use_rslora": rslora}
    modules = _peft_folder(host, config)
    report = loader_for(host).apply([LoraToken("my_style")])
    assert report.files[0].applied and report.files[0].matched == 2, report.warnings
    divisor = math.sqrt(RANK) if rslora else RANK
    for name, alpha in ((Q, 2), (K, 8)):
        expected = originals[name] + alpha / divisor * _unscaled(modules[name])
        torch.testing.assert_close(unet.get_submodule(name).weight.detach(), expected, rtol=1e-5, atol=1e-6)


def test_a_damaged_adapter_config_skips_the_lora_with_one_line(make_standalone_host):
    host = make_standalone_host("sd1")
    unet = host.parts().unet
    before = unet.get_submodule(Q).weight.detach().clone()
    _peft_folder(host, {"lora_alpha": 8})
    (host.lora_dir / "my_style" / "adapter_config.json").write_text("{not json", encoding="utf-8")
    report = loader_for(host).apply([LoraToken("my_style")])
    assert not report.files[0].applied
    assert any("adapter_config.json" in w and "\n" not in w for w in report.warnings)
    assert torch.equal(unet.get_submodule(Q).weight.detach(), before)


def test_diffusers_metadata_scales_each_component_by_its_own_alpha():
    unet = adapter_tensors("lora_noalpha", torch.zeros(16, 16), rank=RANK, seed=1)
    te = adapter_tensors("lora_noalpha", torch.zeros(16, 16), rank=RANK, seed=2)
    state = {**spell(f"unet.{Q}", unet, "peft"), **spell(f"text_encoder.{TE_Q}", te, "peft")}
    metadata = {
        "lora_adapter_metadata": json.dumps({"unet.r": RANK, "unet.lora_alpha": 2, "text_encoder.lora_alpha": 8})
    }
    parsed = parse_lora(state, metadata)
    base = torch.zeros(16, 16)
    torch.testing.assert_close(parsed.adapters[f"unet.{Q}"].delta_weight(base), 2 / RANK * _unscaled(unet))
    torch.testing.assert_close(parsed.adapters[f"text_encoder.{TE_Q}"].delta_weight(base), 8 / RANK * _unscaled(te))


def test_a_per_key_alpha_in_the_file_wins_over_the_config():
    tensors = adapter_tensors("lora", torch.zeros(16, 16), rank=RANK, seed=3)  # carries alpha = rank/2
    parsed = parse_lora(spell(f"unet.{Q}", tensors), {"lora_adapter_metadata": json.dumps({"lora_alpha": 100})})
    expected = float(tensors["alpha"]) / RANK * _unscaled(tensors)
    torch.testing.assert_close(parsed.adapters[f"unet.{Q}"].delta_weight(torch.zeros(16, 16)), expected)


@pytest.mark.parametrize(
    ("pattern", "module", "matches"),
    [
        ("attn1.to_q", f"base_model.model.{Q}", True),
        ("to_q", f"base_model.model.{Q}", True),
        ("o_q", f"base_model.model.{Q}", False),  # a dotted tail, not any suffix
        (r"down_blocks\.0\..*to_q", Q, True),
        ("attn1.to_q[", f"x.{Q}[", True),  # an invalid regex is compared literally
        ("attn1.to_q[", f"x.{Q}", False),
    ],
)
def test_alpha_patterns_match_a_dotted_tail_of_the_module_name(pattern, module, matches):
    settings = PeftSettings.from_mapping({"lora_alpha": 1, "alpha_pattern": {pattern: 5}})
    assert (settings.config_for(module).alpha_for(module) == 5) is matches


def test_editing_the_adapter_config_reloads_the_lora(make_standalone_host):
    host = make_standalone_host("sd1")
    weight = host.parts().unet.get_submodule(K).weight
    original = weight.detach().clone()
    modules = _peft_folder(host, {"lora_alpha": 8})
    loader = loader_for(host)
    loader.apply([LoraToken("my_style")])
    config = host.lora_dir / "my_style" / "adapter_config.json"
    config.write_text(json.dumps({"lora_alpha": 2}), encoding="utf-8")
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    loader.apply([LoraToken("my_style")])
    expected = original + 2 / RANK * _unscaled(modules[K])
    torch.testing.assert_close(weight.detach(), expected, rtol=1e-5, atol=1e-6)
