"""Injection: hooks only, names unchanged, exact hand-back after success, cancel and errors."""

from __future__ import annotations

import copy

import pytest
import torch
from train_support import fingerprint, host_roots, make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.config import TrainConfig
from lora_ext.training.events import TrainEvents
from lora_ext.training.inject import attached
from lora_ext.training.network import NetworkSpec, build_network
from lora_ext.training.run import train_lora


def small_config(dataset, **changes) -> TrainConfig:
    return tiny_train_config(dataset, max_steps=3, unet_lr=1e-3, text_encoder_lr=1e-3, save_dtype="fp16").replace(
        **changes
    )


def _randomise(network, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.loras.values():
            module.up.copy_(torch.randn(module.up.shape, generator=generator) * 0.1)


def _unet_output(host, conditioning, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, 4, 8, 8), generator=generator)
    return host.predict(latents, torch.tensor([500]), conditioning)


def test_cancel_hands_the_model_back_and_keeps_a_resumable_state(make_ldm_host, tmp_path):
    host = make_ldm_host("sd2", "v")
    make_dataset(tmp_path / "data")
    before = fingerprint(*host_roots(host))
    events = TrainEvents(on_progress=lambda info: events.request_stop() if info.step == 1 else None)
    result = train_lora(
        host, small_config(tmp_path / "data", network_type="locon"), events, out=tmp_path / "out" / "c.safetensors"
    )
    assert result.status == "cancelled" and result.steps == 1 and result.path is None
    assert result.state_path is not None and result.state_path.is_file()
    assert not (tmp_path / "out" / "c.safetensors").exists()
    assert fingerprint(*host_roots(host)) == before


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
def test_an_error_mid_run_hands_the_model_back(make_ldm_host, tmp_path, layout):
    host = make_ldm_host(layout)
    make_dataset(tmp_path / "data")
    before = fingerprint(*host_roots(host))

    def explode(info):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_lora(
            host,
            small_config(tmp_path / "data", gradient_checkpointing=True),
            TrainEvents(on_progress=explode),
            out=tmp_path / "e.safetensors",
        )
    assert fingerprint(*host_roots(host)) == before
    assert not (tmp_path / "e.safetensors").exists()


@pytest.mark.parametrize("layout", ["sd1", "sd2", "sdxl"])
def test_zero_initialised_network_changes_nothing_and_names_stay(make_ldm_host, layout):
    host = make_ldm_host(layout)
    names = [name for root in host_roots(host) for name, _ in root.named_modules()]
    conditioning = host.encode_prompts(["a cat"])
    reference = _unet_output(host, conditioning)
    network = build_network(host.parts(), layout, NetworkSpec(rank=4, alpha=2.0, conv_rank=4))
    with torch.no_grad(), attached(network, host.parts()):
        assert torch.equal(_unet_output(host, host.encode_prompts(["a cat"])), reference)
        assert [name for root in host_roots(host) for name, _ in root.named_modules()] == names


def test_open_clip_qkv_loras_equal_merging_into_the_fused_in_proj(make_ldm_host):
    host = make_ldm_host("sd2")
    network = build_network(host.parts(), "sd2", NetworkSpec(rank=4, alpha=2.0, train_unet=False))
    assert network.fused_targets, "OpenCLIP attention gets q/k/v/out LoRAs"
    _randomise(network)
    merged = copy.deepcopy(host.sd_model)
    with torch.no_grad():
        for target in network.fused_targets:
            name = next(n for n, m in host.sd_model.named_modules() if m is target.module)
            attention = merged.get_submodule(name)
            chunks = dict(zip(("q", "k", "v"), attention.in_proj_weight.chunk(3), strict=True))
            deltas = [network.loras[target.lora_names[p]].delta_weight(chunks[p]) for p in ("q", "k", "v")]
            attention.in_proj_weight += torch.cat(deltas)
            out = attention.out_proj.weight
            out += network.loras[target.lora_names["out"]].delta_weight(out)
        for target in network.hook_targets:  # the MLP layers
            name = next(n for n, m in host.sd_model.named_modules() if m is target.module)
            layer = merged.get_submodule(name)
            layer.weight += network.loras[target.lora_name].delta_weight(layer.weight)
    with torch.no_grad(), attached(network, host.parts()):
        hooked = host.sd_model.get_learned_conditioning(["a cat"])
    expected = merged.get_learned_conditioning(["a cat"])
    assert not torch.allclose(expected, host.sd_model.get_learned_conditioning(["a cat"]))
    torch.testing.assert_close(hooked, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
def test_lora_gradients_survive_non_reentrant_checkpointing(make_ldm_host, layout):
    host = make_ldm_host(layout)
    wake_zero_layers(host)
    network = build_network(host.parts(), layout, NetworkSpec(rank=2, alpha=2.0, train_text_encoder=False))
    _randomise(network)
    with torch.no_grad():
        conditioning = host.encode_prompts(["a cat"])
    grads = []
    for checkpointing in (False, True):
        network.zero_grad()
        with attached(network, host.parts(), gradient_checkpointing=checkpointing):
            _unet_output(host, conditioning).pow(2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in network.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)
    assert all("forward" not in m.__dict__ for m in host.unet.modules())


def test_checkpointing_recomputes_with_the_same_dropout_masks(make_ldm_host):
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    spec = NetworkSpec(rank=2, alpha=2.0, dropout=0.3, rank_dropout=0.3, train_text_encoder=False)
    network = build_network(host.parts(), "sd1", spec)
    _randomise(network)
    network.train()
    with torch.no_grad():
        conditioning = host.encode_prompts(["a cat"])
    grads = []
    for checkpointing in (False, True):
        network.zero_grad()
        network.reseed(5)
        with attached(network, host.parts(), gradient_checkpointing=checkpointing):
            _unet_output(host, conditioning).pow(2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in network.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)
