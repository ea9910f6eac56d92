"""``<lora:…>`` on the fake Forge: our takeover hands Forge patches (``add_patches``) and Forge's own
``LoraLoader`` merges them; the result equals our own merge, Forge restores the weights, and training after a
patched generation hands the model and Forge's patch state back exactly."""

from __future__ import annotations

import copy

import pytest
import torch
from fastapi import FastAPI
from forge import FORGE_ROOT, add_checkpoint, fake_forge, select_checkpoint
from loader_helpers import assert_a_replaced_file_is_seen_at_once, assert_one_line_per_cause, break_loader
from lora_files import adapter_tensors, spell, write_lora
from webui import load_script

UNET_MODULE = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"  # block IN01
TE_MODULE = "transformer.text_model.encoder.layers.0.self_attn.q_proj"
TE_PREFIX = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
LBW = "1,0.25,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0.5"  # BASE (text encoder), IN01 = 0.25, …, OUT11 = 0.5


def _kohya(module: str) -> str:
    return "lora_unet_" + module.replace(".", "_")


@pytest.fixture
def forge(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(FORGE_ROOT, monkeypatch) as forge:
        from modules import paths, script_callbacks, shared

        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
        lora_dir = tmp_path / "webui" / "models" / "Lora"
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(lora_dir))
        forge.tiny = make_ldm_model("sd1")
        forge.engine = add_checkpoint(forge, copy.deepcopy(forge.tiny))
        select_checkpoint(forge.engine)
        forge.lora_dir = lora_dir
        _write_loras(forge.tiny, lora_dir)
        forge.script = load_script()
        script_callbacks.ui_settings_callback()
        script_callbacks.before_ui_callback()
        script_callbacks.app_started_callback(None, FastAPI())  # ours registers <lora:…> here, after the built-in
        yield forge
        script_callbacks.script_unloaded_callback()


def _write_loras(tiny, lora_dir) -> None:
    unet = tiny.model.diffusion_model
    out_module = next(
        name for name, _ in unet.named_modules() if name.startswith("output_blocks.") and name.endswith("attn1.to_q")
    )
    q = unet.get_submodule(UNET_MODULE).weight
    out = unet.get_submodule(out_module).weight
    te = getattr(tiny.cond_stage_model, "wrapped", tiny.cond_stage_model).get_submodule(TE_MODULE).weight
    write_lora(lora_dir / "a.safetensors", spell(_kohya(UNET_MODULE), adapter_tensors("lora", q, seed=1)))
    write_lora(lora_dir / "h.safetensors", spell(_kohya(UNET_MODULE), adapter_tensors("loha", q, seed=2)))
    write_lora(lora_dir / "k.safetensors", spell(_kohya(out_module), adapter_tensors("lokr_full", out, seed=3)))
    both = {
        **spell(_kohya(UNET_MODULE), adapter_tensors("lora", q, seed=4)),
        **spell(_kohya(out_module), adapter_tensors("loha", out, seed=5)),
        **spell(TE_PREFIX, adapter_tensors("lora", te, seed=6)),
    }
    write_lora(lora_dir / "both.safetensors", both)


def _generate(prompt: str):
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, seed=3, steps=2, width=64, height=64)
    return processing.process_images(p)


def _weights(forge) -> dict[str, torch.Tensor]:
    """The UNet's and text encoder's weights as Forge holds them now, by ldm / HF name."""
    objects = forge.engine.forge_objects_original
    unet = objects.unet.model.diffusion_model
    te = objects.clip.cond_stage_model.clip_l
    return {
        **{f"unet.{k}": v.detach().clone() for k, v in unet.named_parameters()},
        **{f"te.{k}": v.detach().clone() for k, v in te.named_parameters()},
    }


def _our_merge(forge, prompt: str) -> dict[str, torch.Tensor]:
    """The same prompt merged by our own loader (exact in-place merge) into a copy of the same checkpoint."""
    from lora_ext.hosts.ldm import LdmHost
    from lora_ext.loading.loader import NetworkLoader

    model = copy.deepcopy(forge.tiny)
    host = LdmHost(model, forge.lora_dir)
    NetworkLoader.for_host(host).prompt_hook(prompt)
    te = getattr(model.cond_stage_model, "wrapped", model.cond_stage_model)
    return {
        **{f"unet.{k}": v.detach() for k, v in model.model.diffusion_model.named_parameters()},
        **{f"te.{k}": v.detach() for k, v in te.named_parameters()},
    }


def _patch_types(patcher) -> set[str]:
    return {
        value[1][0] for patches in patcher.lora_patches.values() for entries in patches.values() for value in entries
    }


@pytest.mark.parametrize(
    ("prompt", "unet_types", "te_types"),
    [
        ("a cat <lora:a:0.7>", {"lora"}, None),  # Forge's own lora type
        ("a cat <lora:h:0.5> <lora:k:-0.8>", {"loha", "lokr"}, None),  # LoHa, LoKr: Forge's own types too
        ("a cat <lora:both:0.6:0.3>", {"lora", "loha"}, {"lora"}),  # te 0.6, unet 0.3
        (f"a cat <lora:both:1:lbw={LBW}> <lora:a:0.4>", {"lora", "loha"}, {"lora"}),
    ],
)
def test_lora_through_forge_patches_equals_our_merge_and_forge_restores_afterwards(forge, prompt, unet_types, te_types):
    clean = _weights(forge)
    processed = _generate(prompt)
    assert processed.images and processed.comments == ""
    objects = forge.engine.forge_objects_after_applying_lora
    assert objects.unet is not forge.engine.forge_objects_original.unet  # a patched clone, as Forge's built-in
    assert _patch_types(objects.unet) == unet_types
    if te_types is None:
        assert objects.clip is forge.engine.forge_objects_original.clip
    else:
        assert _patch_types(objects.clip.patcher) == te_types
    assert forge.engine.current_lora_hash.startswith("train_tools:")
    merged, expected = _weights(forge), _our_merge(forge, prompt)
    changed = [key for key in clean if not torch.equal(merged[key], clean[key])]
    assert changed and (te_types is not None) == any(key.startswith("te.") for key in changed)
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert forge.networks.activations == []  # Forge's built-in was never asked

    _generate("a cat")  # no token: Forge's LoraLoader.refresh puts its backups back
    assert forge.engine.current_lora_hash == "[]"
    after = _weights(forge)
    assert all(torch.equal(after[key], clean[key]) for key in clean)


def test_lora_hashes_and_warnings_are_ours_and_an_unchanged_request_is_not_patched_again(forge):
    import hashlib

    processed = _generate("a cat <lora:a:0.7> <lora:missing:1>")
    # Forge's form: the whole file's sha256 (what it writes itself and looks a pasted infotext up by)
    whole_file = hashlib.sha256((forge.lora_dir / "a.safetensors").read_bytes()).hexdigest()[:12]
    assert f"Lora hashes: a: {whole_file}" in processed.infotexts[0]
    assert "LoRA not found: missing" in processed.comments
    patched = forge.engine.forge_objects_after_applying_lora.unet
    loader = forge.engine.forge_objects.unet.model.lora_loader
    loaded_hash = loader.loaded_hash
    again = _generate("a cat <lora:a:0.7> <lora:missing:1>")
    assert "LoRA not found: missing" in again.comments and "Lora hashes: a: " in again.infotexts[0]
    assert forge.engine.forge_objects_after_applying_lora.unet is patched  # same request: same clone
    assert loader.loaded_hash == loaded_hash
    _generate("a cat <lora:a:0.5>")  # another weight: other patches, another cache key for Forge
    assert forge.engine.forge_objects_after_applying_lora.unet is not patched
    assert loader.loaded_hash != loaded_hash


def test_the_setting_built_in_hands_the_token_to_forge_s_lora_and_back(forge):
    from modules import extra_networks, shared

    from lora_ext.hosts.a1111_loader import SETTING_LOADER

    assert forge.script.host.lora_takeover is not None
    assert extra_networks.extra_network_registry["lora"] is forge.script.host.lora_takeover.network
    clean = _weights(forge)
    _generate("a cat <lora:a:0.7>")
    shared.opts.set(SETTING_LOADER, "Built-in")
    assert forge.engine.current_lora_hash == "[]"  # our patches are gone from the engine at once
    assert forge.engine.forge_objects_after_applying_lora.unet is forge.engine.forge_objects_original.unet
    processed = _generate("a cat <lora:x:0.8>")
    assert forge.networks.activations[-1] == {"x": 0.8} and "Lora hashes: x: forge" in processed.infotexts[0]
    assert all(torch.equal(value, clean[key]) for key, value in _weights(forge).items())  # ours restored by Forge
    shared.opts.set(SETTING_LOADER, "Train Tools")
    _generate("a cat <lora:a:0.7>")
    assert forge.networks.loaded_networks == []  # the built-in made inert
    assert forge.engine.current_lora_hash.startswith("train_tools:")
    merged, expected = _weights(forge), _our_merge(forge, "a cat <lora:a:0.7>")
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_training_after_a_patched_generation_trains_the_clean_base_and_hands_everything_back(forge, tmp_path):
    from test_forge_training import _config, _state
    from train_support import make_dataset

    from lora_ext.training.run import train_lora

    clean = _weights(forge)
    _generate("a cat <lora:both:0.6:0.3>")
    before = _state(forge.engine)
    host = forge.script.host
    seen = []
    real_predict = host.predict

    def predict(*args):  # the UNet holds the checkpoint's own weights while training
        unet = forge.engine.forge_objects.unet.model.diffusion_model
        seen.append(torch.equal(unet.get_submodule(UNET_MODULE).weight.detach(), clean[f"unet.{UNET_MODULE}.weight"]))
        return real_predict(*args)

    host.predict = predict
    config = _config(make_dataset(tmp_path / "data", 1), max_steps=2, train_text_encoder=True)
    assert train_lora(host, config).status == "finished"
    assert seen and all(seen)
    assert _state(forge.engine) == before  # every tensor and Forge's patch state, ours included


def test_on_sdxl_the_unet_and_first_text_encoder_patches_equal_our_merge(forge, make_ldm_model):
    from modules import shared

    forge.tiny = make_ldm_model("sdxl")
    forge.engine = add_checkpoint(forge, copy.deepcopy(forge.tiny), name="xl", engine="sdxl")
    select_checkpoint(forge.engine)
    unet = forge.tiny.model.diffusion_model
    module = next(name for name, _ in unet.named_modules() if name.endswith("attn2.to_k"))
    te = forge.tiny.conditioner.embedders[0].wrapped.get_submodule(TE_MODULE).weight
    tensors = {
        **spell(_kohya(module), adapter_tensors("loha", unet.get_submodule(module).weight, seed=7)),
        **spell(TE_PREFIX.replace("lora_te_", "lora_te1_"), adapter_tensors("lora", te, seed=8)),
    }
    write_lora(forge.lora_dir / "xl.safetensors", tensors)
    clean = _weights(forge)
    processed = _generate("a cat <lora:xl:0.9:0.6>")
    assert shared.sd_model is forge.engine and processed.comments == ""
    merged, expected = _weights(forge), _our_merge_sdxl(forge, "a cat <lora:xl:0.9:0.6>")
    assert {key.split(".")[0] for key in clean if not torch.equal(merged[key], clean[key])} == {"unet", "te"}
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-5, atol=1e-6, msg=key)


def _our_merge_sdxl(forge, prompt: str) -> dict[str, torch.Tensor]:
    from lora_ext.hosts.ldm import LdmHost
    from lora_ext.loading.loader import NetworkLoader

    model = copy.deepcopy(forge.tiny)
    NetworkLoader.for_host(LdmHost(model, forge.lora_dir)).prompt_hook(prompt)
    te = model.conditioner.embedders[0].wrapped
    return {
        **{f"unet.{k}": v.detach() for k, v in model.model.diffusion_model.named_parameters()},
        **{f"te.{k}": v.detach() for k, v in te.named_parameters()},
    }


@pytest.mark.parametrize(("engine", "storage"), [("flux", None), ("sd1", "nf4"), ("sd1", "gguf")])
def test_flux_and_a_unet_stored_as_nf4_or_gguf_are_left_to_forge_s_built_in(forge, engine, storage):
    from modules import extra_networks, processing

    model = add_checkpoint(forge, copy.deepcopy(forge.tiny), name="other", engine=engine, storage_dtype=storage)
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=model, prompt="a cat")
    forge.script.host.lora_takeover.activate(p, [extra_networks.ExtraNetworkParams(items=["a", "0.8"])])
    assert forge.networks.activations == [{"a": 0.8}]
    assert p.comments == {} and model.current_lora_hash == str([("a", 0.8)])  # the built-in's own state


def test_an_error_while_patching_never_leaves_the_previous_prompt_s_lora_on_the_engine(forge, monkeypatch):
    from lora_ext.loading.loader import NetworkLoader
    from lora_ext.loading.prompt import LoraToken

    _generate("a cat <lora:a:0.7>")
    engine = forge.engine
    assert engine.current_lora_hash.startswith("train_tools:")

    def broken(self, specs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(NetworkLoader, "patch_list", broken)
    with pytest.raises(RuntimeError, match="out of memory"):  # the WebUI shows it and generates anyway
        forge.script.host.lora_takeover.apply(engine, [LoraToken("h", 1.0)])
    assert engine.current_lora_hash == "[]"
    assert engine.forge_objects.unet is engine.forge_objects_original.unet
    assert engine.forge_objects_after_applying_lora.unet is engine.forge_objects_original.unet


def test_switching_forge_s_online_mode_patches_again_in_that_mode(forge, monkeypatch):
    from lora_ext.hosts import forge_loader
    from lora_ext.loading.prompt import LoraToken

    _generate("a cat <lora:a:0.7>")
    offline = forge.engine.current_lora_hash
    assert not forge.engine.forge_objects.unet.has_online_lora()
    # fp8 storage + Forge's online switch
    monkeypatch.setattr(forge_loader.ForgeLoraTakeover, "online_mode", staticmethod(lambda sd_model: True))
    forge.script.host.lora_takeover.apply(forge.engine, [LoraToken("a", 0.7)])  # the same prompt
    assert forge.engine.current_lora_hash != offline
    assert forge.engine.forge_objects.unet.has_online_lora()


def test_a_repeated_request_is_not_resolved_again_until_a_file_changes_or_its_blocks_are_random(forge, monkeypatch):
    """Forge calls our takeover on every generation: the same prompt reuses the patch list (its warnings too)."""
    import os

    from safetensors.torch import load_file

    from lora_ext.loading.loader import NetworkLoader

    resolved = []
    resolve_all = NetworkLoader._resolve_all
    monkeypatch.setattr(
        NetworkLoader, "_resolve_all", lambda self, *args: resolved.append(args) or resolve_all(self, *args)
    )
    odd = forge.lora_dir / "odd.safetensors"
    write_lora(odd, {**load_file(str(forge.lora_dir / "a.safetensors")), "weird_key": torch.zeros(2)})
    first = _generate("a cat <lora:odd:0.7>")
    patched = forge.engine.forge_objects_after_applying_lora.unet
    again = _generate("a cat <lora:odd:0.7>")
    assert len(resolved) == 1
    assert "1 keys unmatched" in first.comments and "1 keys unmatched" in again.comments
    assert "Lora hashes: odd: " in again.infotexts[0]
    assert forge.engine.forge_objects_after_applying_lora.unet is patched
    # the file rewritten: resolved and patched again, with its new values
    q = forge.tiny.model.diffusion_model.get_submodule(UNET_MODULE).weight
    write_lora(odd, spell(_kohya(UNET_MODULE), adapter_tensors("lora", q, seed=9)))
    os.utime(odd, ns=(os.stat(odd).st_mtime_ns + 10**9,) * 2)
    changed = _generate("a cat <lora:odd:0.7>")
    assert len(resolved) == 2 and changed.comments == ""
    assert forge.engine.forge_objects_after_applying_lora.unet is not patched
    # random block weights are drawn again for every generation
    random = "a cat <lora:odd:1:lbw=" + ",".join(["1"] + ["R"] * 16) + ">"
    _generate(random)
    _generate(random)
    assert len(resolved) == 4


CONV_MODULE = "input_blocks.1.0.in_layers.2"  # a 3×3 conv


@pytest.mark.parametrize(
    ("fmt", "module", "forge_type"),
    [
        ("loha", UNET_MODULE, "loha"),
        ("loha", CONV_MODULE, "loha"),
        ("loha_tucker", CONV_MODULE, "loha"),
        ("lokr_full", UNET_MODULE, "lokr"),
        ("lokr_w1_lowrank", UNET_MODULE, "lokr"),
        ("lokr_w2_lowrank", CONV_MODULE, "lokr"),
        ("lokr_both_lowrank", UNET_MODULE, "lokr"),
        ("lokr_tucker", CONV_MODULE, "lokr"),
        ("locon_tucker", CONV_MODULE, "lora"),  # with its mid
        ("ia3_out", UNET_MODULE, "diff"),
        ("oft", UNET_MODULE, "diff"),
        ("dora_in", UNET_MODULE, "diff"),
    ],
)
def test_each_lycoris_format_goes_to_forge_as_its_own_type_or_a_diff_and_equals_our_merge(
    forge, fmt, module, forge_type
):
    """LoHa and LoKr stay factored in Forge's patches (no fp32 ΔW per weight kept in RAM); the rest are diffs."""
    weight = forge.tiny.model.diffusion_model.get_submodule(module).weight
    write_lora(forge.lora_dir / "f.safetensors", spell(_kohya(module), adapter_tensors(fmt, weight, seed=11)))
    prompt = "a cat <lora:f:0.8:lbw=" + ",".join(["1", "0.7"] + ["1"] * 15) + ">"  # IN01 (both modules) at 0.7
    processed = _generate(prompt)
    assert processed.comments == ""
    assert _patch_types(forge.engine.forge_objects_after_applying_lora.unet) == {forge_type}
    merged, expected = _weights(forge), _our_merge(forge, prompt)
    key = f"unet.{module}.weight"
    assert not torch.equal(merged[key], forge.tiny.model.diffusion_model.get_submodule(module).weight)
    for name, value in expected.items():
        torch.testing.assert_close(merged[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_a_failing_loader_hands_the_generation_to_forge_s_builtin_and_logs_one_line(forge, monkeypatch, caplog):
    from lora_ext.loading.loader import NetworkLoader

    _generate("a cat <lora:a:0.7>")  # ours first: its patches must not survive the fault
    break_loader(monkeypatch, NetworkLoader, "patch_list")
    with caplog.at_level("ERROR"):
        for _ in range(2):
            processed = _generate("a cat <lora:a:0.7>")
            assert forge.engine.current_lora_hash == str([("a", 0.7)])  # Forge's built-in patched it
            patches = forge.engine.forge_objects_after_applying_lora.unet.lora_patches
            assert [key[0] for key in patches] == ["a"]
    assert forge.networks.activations == [{"a": 0.7}, {"a": 0.7}]
    assert "Lora hashes: a: forge" in processed.infotexts[0]
    assert_one_line_per_cause(caplog)


def test_a_lora_replaced_on_disk_under_the_same_token_gives_the_new_conditioning_at_once(forge):
    te = forge.tiny.cond_stage_model
    weight = getattr(te, "wrapped", te).get_submodule(TE_MODULE).weight

    def write(name, seed):
        tensors = adapter_tensors("lora", weight, seed=seed)
        write_lora(forge.lora_dir / f"{name}.safetensors", spell(TE_PREFIX, tensors))

    assert_a_replaced_file_is_seen_at_once(_generate, write)
