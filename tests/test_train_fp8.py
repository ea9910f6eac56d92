"""Frozen UNet weights in fp8 during training: the same maths as fp8-rounded weights, no upcast copy kept for
backward, and the model handed back bit for bit."""

from __future__ import annotations

import copy

import torch
from train_support import fingerprint, host_roots, make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.host import SizeCondition
from lora_ext.training.fp8 import FP8, convertible, fp8_weights
from lora_ext.training.inject import attached
from lora_ext.training.network import NetworkSpec, build_network
from lora_ext.training.run import train_lora

SIZE = [SizeCondition((64, 64), (0, 0), (64, 64))]


def _step(host, network) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One forward + backward through the hooked network: (prediction, the LoRA gradients)."""
    network.zero_grad(set_to_none=True)
    conditioning = host.encode_prompts(["a red cat"], SIZE)
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    prediction = host.predict(latents, torch.tensor([400]), conditioning)
    prediction.pow(2).mean().backward()
    return prediction.detach(), [p.grad.clone() for p in network.parameters() if p.grad is not None]


def _rounded_to_fp8(unet: torch.nn.Module) -> None:
    first = next(unet.parameters())
    with torch.no_grad():
        for module in unet.modules():
            if convertible(module) and module.weight is not first:
                module.weight.copy_(module.weight.to(FP8).to(module.weight.dtype))


def test_fp8_layers_compute_as_fp8_rounded_weights_and_the_model_comes_back_exactly(make_ldm_host):
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    reference = make_ldm_host("sd1")
    reference.sd_model.load_state_dict(copy.deepcopy(host.sd_model.state_dict()))
    _rounded_to_fp8(reference.parts().unet)
    spec = NetworkSpec(rank=2, alpha=1.0, conv_rank=2, train_text_encoder=False)
    network, twin = build_network(host.parts(), "sd1", spec), build_network(reference.parts(), "sd1", spec)
    with torch.no_grad():
        for a, b in zip(network.parameters(), twin.parameters(), strict=True):
            a.add_(torch.randn(a.shape, generator=torch.Generator().manual_seed(a.numel())) * 0.1)
            b.copy_(a)
    before = fingerprint(*host_roots(host))
    with attached(network, host.parts()), fp8_weights(host.parts().unet) as converted:
        assert converted.layers and all(module.weight.dtype == FP8 for module, _, _ in converted.layers)
        got, grads = _step(host, network)
    with attached(twin, reference.parts()):
        want, want_grads = _step(reference, twin)
    assert torch.equal(got, want)
    for a, b in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert fingerprint(*host_roots(host)) == before


def test_backward_keeps_the_fp8_weights_not_upcast_copies(make_ldm_host):
    host = make_ldm_host("sd1")
    network = build_network(host.parts(), "sd1", NetworkSpec(rank=2, alpha=1.0, train_text_encoder=False))
    saved: list[torch.Tensor] = []
    with attached(network, host.parts()), fp8_weights(host.parts().unet) as converted:
        weights8 = [module.weight.detach().clone() for module, _, _ in converted.layers]
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            _step(host, network)
    assert sum(t.dtype == FP8 for t in saved) >= len(weights8) // 2  # the fp8 weights are what backward keeps

    def upcast_copy(tensor: torch.Tensor) -> bool:
        return tensor.dtype != FP8 and any(
            w.shape == tensor.shape and torch.equal(w.to(tensor.dtype), tensor) for w in weights8
        )

    assert not any(upcast_copy(t.detach()) for t in saved)


def test_a_training_with_fp8_base_saves_a_lora_and_hands_the_model_back(make_ldm_host, tmp_path):
    host = make_ldm_host("sdxl")
    wake_zero_layers(host)
    before = fingerprint(*host_roots(host))
    data = make_dataset(tmp_path / "data", count=1)
    config = tiny_train_config(data, fp8_base=True, gradient_checkpointing=True, unet_lr=1e-2, max_steps=2)
    result = train_lora(host, config, out=tmp_path / "o" / "x.safetensors")
    assert result.status == "finished"
    assert fingerprint(*host_roots(host)) == before
