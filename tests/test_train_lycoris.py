"""LoHa, LoKr and DoRA are trained with the same format classes that load them, and read like LoRA files.

Each trained file: every module is found by our loader (0 unmatched keys) and merges into what the
hooked network computed; every module's tensors carry the LyCORIS key names A1111's built-in and
ComfyUI read, under the same kohya module names as our LoRA files; and each module's ΔW equals the
independent loop formula of ``tests/lora_files.py`` (the A1111 / ComfyUI / LyCORIS conventions),
DoRA decomposed per input column as A1111 does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_files import expected_delta
from safetensors import safe_open
from safetensors.torch import load_file
from train_support import make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.formats.keys import group_keys
from lora_ext.host import SizeCondition
from lora_ext.training.inject import attached
from lora_ext.training.network import NetworkSpec, build_network
from lora_ext.training.run import _param_groups, train_lora
from lora_ext.training.save import save_lora

SIZE = [SizeCondition((64, 64), (0, 0), (64, 64))]
KEYS = {
    "loha": [{"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "alpha"}],
    "lokr": [{"lokr_w1", "lokr_w2_a", "lokr_w2_b", "alpha"}, {"lokr_w1", "lokr_w2", "alpha"}],
    "lora": [{"lora_down.weight", "lora_up.weight", "alpha"}],
    "locon": [{"lora_down.weight", "lora_up.weight", "alpha"}],
}
NETWORKS = [("loha", False), ("lokr", False), ("lora", True), ("loha", True)]
HOSTS = [("ldm", "sd1"), ("ldm", "sd2"), ("ldm", "sdxl"), ("diffusers", "sdxl")]


def _spec(algorithm: str, dora: bool) -> NetworkSpec:
    return NetworkSpec(rank=2, alpha=1.5, conv_rank=2, conv_alpha=3.0, algorithm=algorithm, dora=dora, lokr_factor=4)


def _trained_like(network, seed: int = 0) -> None:
    """Move every parameter off its initial value, as training does (a fresh adapter's ΔW is zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _outputs(host) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        conditioning = host.encode_prompts(["a red cat, outdoors"], SIZE)
        latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
        return conditioning.crossattn, host.predict(latents, torch.tensor([400]), conditioning)


def _host(make_ldm_host, make_standalone_host, naming, family):
    host = make_ldm_host(family) if naming == "ldm" else make_standalone_host(family)
    wake_zero_layers(host)
    return host


@pytest.mark.parametrize(("algorithm", "dora"), NETWORKS)
@pytest.mark.parametrize(("naming", "family"), HOSTS)
def test_trained_file_is_read_whole_by_the_loader_and_merges_as_it_trained(
    make_ldm_host, make_standalone_host, naming, family, algorithm, dora
):
    from lora_ext.loading.loader import NetworkLoader

    host = _host(make_ldm_host, make_standalone_host, naming, family)
    network = build_network(host.parts(), family, _spec(algorithm, dora))
    _trained_like(network)
    network.eval()
    base = _outputs(host)
    with attached(network, host.parts()):
        hooked = _outputs(host)
    assert not torch.allclose(hooked[1], base[1])
    save_lora(host.lora_dir / "ly.safetensors", network.kohya_state_dict(), {"ss_output_name": "ly"})
    loader = NetworkLoader.for_host(host)
    loader.prompt_hook("<lora:ly:1>")
    report = loader.last_report.files[0]
    try:
        assert report.matched == len(network.loras) and not report.unmatched_keys
        merged = _outputs(host)
    finally:
        loader.restore()
    for got, want, before in zip(merged, hooked, base, strict=True):
        effect = float((want - before).norm())
        assert float((got - want).norm()) <= 1e-3 * max(effect, 1e-6), (float((got - want).norm()), effect)


def _dora_in(inner: np.ndarray, base: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """A1111's ``apply_weight_decompose``: the norm of W + ΔW per input column, loops in float64."""
    merged = (base + inner).reshape(base.shape[0], base.shape[1], -1)
    out = np.empty_like(merged)
    for column in range(merged.shape[1]):
        out[:, column] = magnitude.reshape(-1)[column] * merged[:, column] / np.sqrt((merged[:, column] ** 2).sum())
    return (out.reshape(base.shape) - base).astype(np.float64)


def _bases(network) -> dict[str, torch.Tensor]:
    """Each module's base weight: the hooked layer's, or its slice of OpenCLIP's fused projection."""
    bases = {target.lora_name: target.module.weight.detach().float() for target in network.hook_targets}
    for target in network.fused_targets:
        q, k, v = target.module.in_proj_weight.detach().float().chunk(3)
        slices = {"q": q, "k": k, "v": v, "out": target.module.out_proj.weight.detach().float()}
        bases.update({name: slices[projection] for projection, name in target.lora_names.items()})
    return bases


@pytest.mark.parametrize(("algorithm", "dora"), NETWORKS)
@pytest.mark.parametrize(("naming", "family"), [("ldm", "sd2"), ("diffusers", "sdxl")])
def test_every_saved_module_has_the_lycoris_keys_and_the_independent_formulas_delta(
    make_ldm_host, make_standalone_host, tmp_path, naming, family, algorithm, dora
):
    host = _host(make_ldm_host, make_standalone_host, naming, family)
    network = build_network(host.parts(), family, _spec(algorithm, dora))
    _trained_like(network, seed=3)
    path = save_lora(tmp_path / "f.safetensors", network.kohya_state_dict(), {"ss_output_name": "f"})
    modules = group_keys(load_file(str(path))).modules
    plain = build_network(host.parts(), family, NetworkSpec(rank=2, alpha=1.0, conv_rank=2))
    assert set(modules) == set(plain.loras)  # the names our LoCon files have, which every loader maps
    bases = _bases(network)
    network.eval()
    for name, tensors in modules.items():
        names = set(tensors) - {"dora_scale"}
        assert names in KEYS[algorithm], (name, sorted(tensors))
        base = bases[name]
        inner = {key: value for key, value in tensors.items() if key != "dora_scale"}
        want = expected_delta(algorithm if algorithm != "lora" else "lora", inner, base)
        if dora:
            magnitude = tensors["dora_scale"]
            assert magnitude.shape == (1, base.shape[1], *([1] * (base.dim() - 2))), name  # per input column
            want = _dora_in(want, base.double().numpy(), magnitude.double().numpy())
        got = network.loras[name].delta_weight(base).detach().double().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6 * max(1.0, np.abs(want).max()), err_msg=name)


def test_lokr_lays_its_factors_out_as_lycoris():
    from lora_ext.formats.lokr import LokrAdapter, factorization

    assert factorization(640) == (20, 32) and factorization(640, 8) == (8, 80) and factorization(7) == (1, 7)
    small = LokrAdapter.initial(torch.zeros(640, 320), rank=4, factor=8, generator=torch.Generator().manual_seed(0))
    assert small.w1.shape == (8, 8) and small.w2a.shape == (80, 4) and small.w2b.shape == (4, 40)
    full = LokrAdapter.initial(torch.zeros(640, 320), rank=16, generator=torch.Generator().manual_seed(0))
    assert full.w2 is not None and full.w2a is None and full.rank is None and full.scale == 1.0  # 16 ≥ 32 / 2
    conv = LokrAdapter.initial(torch.zeros(64, 32, 3, 3), rank=2, factor=4, generator=torch.Generator().manual_seed(0))
    assert conv.w1.shape == (4, 4) and conv.w2b.shape == (2, 8 * 9)
    assert not conv.delta_weight(torch.zeros(64, 32, 3, 3)).any()


def test_loraplus_trains_the_output_factors_faster(make_ldm_host, tmp_path):
    host = make_ldm_host("sd1")
    for algorithm, dora, output in (("lora", False, "up"), ("loha", False, "w2a"), ("lora", True, "inner.up")):
        network = build_network(host.parts(), "sd1", _spec(algorithm, dora))
        config = tiny_train_config(tmp_path, unet_lr=1e-4, text_encoder_lr=5e-5, loraplus_lr_ratio=16.0)
        groups = _param_groups(network, config)
        assert [group["lr"] for group in groups] == pytest.approx([1e-4, 1.6e-3, 5e-5, 8e-4])
        first = next(iter(network.loras.values()))
        faster = {id(p) for p in groups[1]["params"]}
        assert id(first.get_parameter(output)) in faster
        assert sum(len(group["params"]) for group in groups) == len(list(network.parameters()))


@pytest.mark.parametrize(
    ("changes", "module", "algo"),
    [
        ({"network_type": "loha", "conv_rank": 2}, "lycoris.kohya", "loha"),
        ({"network_type": "lokr", "conv_rank": 0, "lokr_factor": 4}, "lycoris.kohya", "lokr"),
        ({"network_type": "lora", "dora": True, "loraplus_lr_ratio": 4.0}, "lycoris.kohya", "lora"),
    ],
)
def test_a_lycoris_training_saves_a_file_the_loader_reads_whole(make_ldm_host, tmp_path, changes, module, algo):
    from lora_ext.loading.loader import NetworkLoader

    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    dataset = make_dataset(tmp_path / "data", count=1)
    config = tiny_train_config(dataset, unet_lr=1e-2, text_encoder_lr=1e-3, **changes)
    path = train_lora(host, config, out=host.lora_dir / "trained.safetensors").path
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_module"] == module
    assert '"algo": "' + algo + '"' in metadata["ss_network_args"]
    loader = NetworkLoader.for_host(host)
    loader.prompt_hook("<lora:trained:1>")
    try:
        report = loader.last_report.files[0]
        assert report.matched > 0 and not report.unmatched_keys
    finally:
        loader.restore()
