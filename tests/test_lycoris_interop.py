"""LoHa, LoKr and DoRA files trained here, read by LyCORIS itself (the ``lycoris-lora`` package that kohya's
sd-scripts trains and merges these formats with).

For every module of our file, LyCORIS recognises the format we trained, builds its own module from our tensors on
the same layer, and adds what ours adds (its training-time bypass, op(x, ΔW) with its alpha/rank); its ``merge``
finds every module's layer by kohya's name in the model's tree. DoRA: LyCORIS's ``merge`` builds its modules with
the per-output-row norm, while A1111 and ComfyUI read our per-input-column ``dora_scale`` by its shape; the DoRA
case runs LyCORIS's own functions with that axis (``wd_on_out=False``).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from train_support import wake_zero_layers

from lora_ext.formats.keys import group_keys
from lora_ext.training.network import NetworkSpec, build_network
from lora_ext.training.save import save_lora

lycoris_utils = pytest.importorskip("lycoris.utils", reason="lycoris-lora is in requirements/test.txt")

SPEC = {"rank": 2, "alpha": 1.5, "conv_rank": 2, "conv_alpha": 3.0, "lokr_factor": 4}


def _trained(host, family: str, algorithm: str, dora: bool = False):
    network = build_network(host.parts(), family, NetworkSpec(algorithm=algorithm, dora=dora, **SPEC))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in network.parameters():  # off the initial values, as training moves them
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    network.eval()
    return network


def _expected(network) -> dict[str, torch.Tensor]:
    """Base + our ΔW for every module hooked to a layer of its own."""
    return {
        target.lora_name: target.module.weight.detach().float()
        + network.loras[target.lora_name].delta_weight(target.module.weight.detach().float()).detach()
        for target in network.hook_targets
    }


MODULE_CLASS = {"loha": "LohaModule", "lokr": "LokrModule", "lora": "LoConModule"}


def _layer_input(layer: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    if isinstance(layer, torch.nn.Conv2d):
        return torch.randn((1, layer.in_channels, 8, 8), generator=generator)
    return torch.randn((3, layer.in_features), generator=generator)


def _our_output(network, target, x: torch.Tensor) -> torch.Tensor:
    layer = target.module
    delta = network.loras[target.lora_name].delta_weight(layer.weight.detach().float()).detach()
    if isinstance(layer, torch.nn.Conv2d):
        return torch.nn.functional.conv2d(x, delta, stride=layer.stride, padding=layer.padding)
    return torch.nn.functional.linear(x, delta)


@pytest.mark.parametrize("algorithm", ["loha", "lokr", "lora"])
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_lycoris_reads_every_module_of_our_file_and_computes_our_delta(
    make_standalone_host, make_ldm_host, tmp_path, capsys, family, algorithm
):
    from lycoris.modules import get_module, make_module

    # kohya's SD1 names follow diffusers' module tree, its SDXL names SGM's (the ldm tree); LyCORIS walks that tree.
    host = make_standalone_host("sd1") if family == "sd1" else make_ldm_host("sdxl")
    wake_zero_layers(host)
    network = _trained(host, family, algorithm)
    path = save_lora(tmp_path / "f.safetensors", network.kohya_state_dict(), {"ss_output_name": "f"})
    state = load_file(str(path))
    names = set(group_keys(state).modules)
    assert names == set(network.loras)

    # Read: LyCORIS recognises every module of the file as the format we trained (no key left over).
    kinds = {name: get_module(state, name)[0] for name in names}
    assert {name for name, kind in kinds.items() if kind is None or kind.__name__ != MODULE_CLASS[algorithm]} == set()

    # Compute: LyCORIS's module, built from our tensors on the same layer, adds what ours adds (its training-time
    # bypass: op(x, ΔW) with its scale).
    checked = 0
    for target in network.hook_targets:
        kind, params = get_module(state, target.lora_name)
        module = make_module(kind, params, target.lora_name, target.module).eval()
        x = _layer_input(target.module)
        with torch.no_grad():
            theirs = module.bypass_forward_diff(x, scale=1.0)
            ours = _our_output(network, target, x)
        error = float((theirs - ours).abs().max())
        assert error <= 1e-5 * max(1e-3, float(ours.abs().max())), (target.lora_name, error)
        checked += 1
    assert checked == len(network.hook_targets) > 0

    # Place: LyCORIS's merge finds each module's layer by kohya's name in the model's own tree. (Its merged values
    # are not compared: lycoris-lora 4.1.3 applies LoHa's alpha/rank twice when merging, unlike its own forward,
    # A1111 and ComfyUI.) SDXL's second text encoder is OpenCLIP in the ldm tree, which LyCORIS cannot name.
    parts = host.parts()
    encoders = [  # Hugging Face's CLIPTextModel itself (the WebUI wraps it as ``.transformer``)
        getattr(part.root, "transformer", part.root) if part.kind != "open_clip" else torch.nn.Module()
        for part in parts.text_encoders
    ]
    elsewhere = {name for name in names if name.startswith("lora_te2_")} if family == "sdxl" else set()
    lycoris_utils.merge(encoders, parts.unet, state, scale=1.0)
    assert f"{len(names) - len(elsewhere)} Modules been merged" in capsys.readouterr().out


@pytest.mark.parametrize("inner", ["lora", "loha", "lokr"])
def test_dora_files_merge_through_lycoris_functions_with_the_input_axis(make_standalone_host, tmp_path, inner):
    from lycoris.functional import locon, loha, lokr
    from lycoris.functional.general import weight_decompose

    host = make_standalone_host("sd1")
    wake_zero_layers(host)
    network = _trained(host, "sd1", inner, dora=True)
    path = save_lora(tmp_path / "d.safetensors", network.kohya_state_dict(), {"ss_output_name": "d"})
    modules = group_keys(load_file(str(path))).modules
    expected = _expected(network)
    for target in network.hook_targets:
        tensors = {key: value.float() for key, value in modules[target.lora_name].items()}
        base = target.module.weight.detach().float()
        if inner == "lora":
            down, up = tensors["lora_down.weight"], tensors["lora_up.weight"]
            delta = locon.diff_weight(down, up, None, gamma=1.0).reshape(base.shape)
            rank = down.shape[0]
        elif inner == "loha":
            w1a, w1b, w2a, w2b = (tensors[f"hada_{k}"] for k in ("w1_a", "w1_b", "w2_a", "w2_b"))
            delta = loha.diff_weight(w1b, w1a, w2b, w2a, None, None, gamma=1.0).reshape(base.shape)
            rank = w1b.shape[0]
        else:  # LyCORIS's LoKr takes alpha and divides by the rank itself (1 when w2 is whole)
            w2, w2a, w2b = tensors.get("lokr_w2"), tensors.get("lokr_w2_a"), tensors.get("lokr_w2_b")
            gamma = float(tensors["alpha"]) if w2a is not None else 1.0
            delta = lokr.diff_weight(tensors["lokr_w1"], None, None, w2, w2a, w2b, None, gamma=gamma)
            delta, rank = delta.reshape(base.shape), None
        alpha = float(tensors["alpha"]) if "alpha" in tensors else None
        scale = alpha / rank if (alpha is not None and rank) else 1.0
        merged = weight_decompose(base + delta * scale, tensors["dora_scale"], 1.0, wd_on_out=False)
        want = expected[target.lora_name]
        error = float((merged - want).abs().max())
        assert error <= 1e-5 * max(1.0, float(want.abs().max())), (target.lora_name, error)
    assert network.hook_targets
