"""The A1111 takeover of ``<lora:…>`` on the fake WebUI with a fake built-in Lora that merges lazily."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from loader_helpers import assert_a_replaced_file_is_seen_at_once, assert_one_line_per_cause, break_loader
from lora_files import adapter_tensors, spell
from webui import install_fake_webui, reset_fake_webui

PREFIX = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q"
MODULE = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"


@pytest.fixture
def webui(make_ldm_model, tmp_path):
    install_fake_webui()
    reset_fake_webui()
    import extensions_builtin_lora_fake as builtin
    from lora_files import write_lora
    from modules import script_callbacks, shared

    from lora_ext.hosts.a1111 import A1111Host, register_settings
    from lora_ext.hosts.a1111_loader import register_callbacks

    networks = builtin.install()  # built-ins load first, so their callbacks come first
    model = make_ldm_model("sd1")
    shared.sd_model = model
    lora_dir = tmp_path / "Lora"
    shared.cmd_opts.lora_dir = str(lora_dir)
    weight = model.model.diffusion_model.get_submodule(MODULE).weight
    original = weight.detach().clone()
    deltas = {}
    for seed, name in enumerate(("a", "b")):
        tensors = adapter_tensors("lora", original, seed=seed)
        write_lora(lora_dir / f"{name}.safetensors", spell(PREFIX, tensors))
        deltas[name] = float(tensors["alpha"]) / 4 * tensors["lora_up.weight"] @ tensors["lora_down.weight"]
    host = A1111Host()
    takeover = register_callbacks(lambda: host)
    script_callbacks.model_loaded_callback(model)  # WebUI start: model load, before_ui, UI, app_started
    script_callbacks.before_ui_callback()
    register_settings()  # the UI's on_ui_settings pass, before app_started (as in the WebUI)
    script_callbacks.app_started_callback(None, None)
    yield SimpleNamespace(
        takeover=takeover,
        networks=networks,
        model=model,
        weight=weight,
        original=original,
        deltas=deltas,
        shared=shared,
    )
    script_callbacks.script_unloaded_callback()
    sys.modules.pop("networks", None)


def _generate(prompt: str):
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, seed=1, steps=2, width=64, height=64)
    return processing.process_images(p)


def _set_loader(webui, value: str) -> None:
    from lora_ext.hosts.a1111_loader import SETTING_LOADER

    webui.shared.opts.set(SETTING_LOADER, value)


def test_train_tools_owns_lora_although_the_builtin_registered_later_in_before_ui(webui):
    from modules import extra_networks

    assert extra_networks.extra_network_registry["lora"] is webui.takeover.network
    assert extra_networks.extra_network_aliases["lyco"] is webui.takeover.network
    assert webui.takeover.builtin is webui.networks.extra_network_lora


def test_generation_applies_our_merge_and_writes_lora_hashes(webui):
    from lora_ext.formats.hashes import addnet_hash

    processed = _generate("a cat <lora:a:0.5>")
    torch.testing.assert_close(webui.weight.detach(), webui.original + 0.5 * webui.deltas["a"])
    assert webui.networks.apply_count == 0 and webui.networks.extra_network_lora.activations == 0
    lora_path = webui.takeover.loader.resolve("a").path
    assert f"Lora hashes: a: {addnet_hash(lora_path)[:12]}" in processed.infotexts[0]
    _generate("a cat")
    assert torch.equal(webui.weight.detach(), webui.original)


def test_builtin_merges_are_restored_before_our_first_merge(webui):
    _set_loader(webui, "Built-in")
    _generate("x <lora:a:1>")
    assert webui.networks.apply_count > 0
    torch.testing.assert_close(webui.weight.detach(), webui.original + webui.deltas["a"])
    _set_loader(webui, "Train Tools")
    _generate("x <lora:b:1>")
    torch.testing.assert_close(webui.weight.detach(), webui.original + webui.deltas["b"])  # not a + b
    assert webui.networks.loaded_networks == []
    assert all(getattr(m, "network_current_names", ()) == () for m in webui.model.modules())
    _generate("x")
    assert torch.equal(webui.weight.detach(), webui.original)  # our backup was of the original


def test_switching_back_to_builtin_restores_ours_first(webui):
    _generate("x <lora:a:1>")
    assert not torch.equal(webui.weight.detach(), webui.original)
    _set_loader(webui, "Built-in")
    assert torch.equal(webui.weight.detach(), webui.original)
    _generate("x <lora:b:1>")
    assert webui.networks.extra_network_lora.activations > 0
    torch.testing.assert_close(webui.weight.detach(), webui.original + webui.deltas["b"])
    module = webui.model.model.diffusion_model.get_submodule(MODULE)
    assert torch.equal(module.network_weights_backup, webui.original)


def test_model_change_and_script_unload_restore(webui):
    from modules import extra_networks, script_callbacks

    _generate("x <lora:a:1>")
    script_callbacks.model_loaded_callback(webui.model)
    assert torch.equal(webui.weight.detach(), webui.original)
    _generate("x <lora:b:1>")
    assert not torch.equal(webui.weight.detach(), webui.original)
    webui.takeover.unload()
    assert torch.equal(webui.weight.detach(), webui.original)
    assert extra_networks.extra_network_registry["lora"] is webui.networks.extra_network_lora


def test_bad_tokens_are_shown_and_generation_goes_on(webui):
    processed = _generate("x <lora:missing:1> <lora:a:abc> <lora:b:1>")
    assert processed.images
    assert "LoRA not found: missing" in processed.comments and "'abc' is not a number" in processed.comments
    torch.testing.assert_close(webui.weight.detach(), webui.original + webui.deltas["b"])


def test_backups_are_kept_between_generations_and_freed_when_the_setting_goes_off(webui):
    from lora_ext.hosts.a1111_loader import SETTING_KEEP_BACKUPS

    _generate("x <lora:a:1>")
    _generate("x")
    patches = webui.takeover.loader.patches
    assert torch.equal(webui.weight.detach(), webui.original) and patches.backed_up > 0
    _generate("x <lora:b:1>")
    assert webui.takeover.loader.last_report.stats.backed_up == 0  # merged from the kept backup
    webui.shared.opts.set(SETTING_KEEP_BACKUPS, False)
    assert patches.backed_up == len(patches) > 0  # only the patched weights keep theirs
    _generate("x")
    assert patches.backed_up == 0 and torch.equal(webui.weight.detach(), webui.original)


def test_switching_to_builtin_frees_our_backups(webui):
    _generate("x <lora:a:1>")
    _set_loader(webui, "Built-in")
    assert webui.takeover.loader.patches.backed_up == 0


def test_a_lora_deleted_between_generations_is_a_comment_and_the_other_still_applies(webui):
    _generate("x <lora:a:1> <lora:b:1>")
    torch.testing.assert_close(webui.weight.detach(), webui.original + webui.deltas["a"] + webui.deltas["b"])
    webui.takeover.loader.resolve("b").path.unlink()
    processed = _generate("x <lora:a:1> <lora:b:1>")
    assert processed.images
    assert "b.safetensors" in processed.comments and "error activating" not in processed.comments
    torch.testing.assert_close(webui.weight.detach(), webui.original + webui.deltas["a"])
    assert "Lora hashes: a: " in processed.infotexts[0] and "b: " not in processed.infotexts[0]


def test_non_finite_weights_are_refused_like_abc_and_touch_no_weight(webui):
    for value in ("nan", "inf", "1e309", "te=inf", "1:unet=nan", "1:dyn=inf"):
        processed = _generate(f"x <lora:a:{value}>")
        assert processed.images and "is not a" in processed.comments and value in processed.comments
        assert torch.equal(webui.weight.detach(), webui.original), value


def test_the_webuis_split_items_become_a_spec_as_they_are_never_rejoined(webui):
    """A script's ``ExtraNetworkParams(items=[name, multiplier])`` (as the built-in adds ``sd_lora``): the name
    keeps its ``:`` and the float stays a weight, as the built-in reads ``positional``; re-joining split it."""
    import shutil
    from pathlib import Path

    from modules import extra_networks, processing

    lora_dir = Path(webui.shared.cmd_opts.lora_dir)
    shutil.copy(lora_dir / "a.safetensors", lora_dir / "v2:final.safetensors")
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", seed=1, steps=2, width=64, height=64)
    webui.takeover.activate(p, [extra_networks.ExtraNetworkParams(items=["v2:final", 0.5])])
    assert p.comments == {}
    torch.testing.assert_close(webui.weight.detach(), webui.original + 0.5 * webui.deltas["a"])


def test_api_info_carries_lora_hashes_as_a_string_hashing_only_used_files(webui, monkeypatch):
    import json

    from lora_ext.formats.hashes import addnet_hash, lora_short_hash

    hashed = []
    loader = webui.takeover._loader()
    monkeypatch.setattr(
        loader, "_lora_hash", lambda path, meta: hashed.append(path.name) or lora_short_hash(path, meta)
    )
    expected = f"a: {addnet_hash(webui.shared.cmd_opts.lora_dir + '/a.safetensors')[:12]}"
    for _ in range(2):
        info = json.loads(_generate("a cat <lora:a:0.5>").js())  # what /sdapi/v1/txt2img returns as "info"
        assert info["extra_generation_params"]["Lora hashes"] == expected
    assert hashed == ["a.safetensors"]  # b is never hashed, a once (cached by file identity)
    info = json.loads(_generate("a cat").js())
    assert "Lora hashes" not in info["extra_generation_params"]
    webui.shared.opts.sd_lora = "a"  # added to every prompt, without a token: the WebUI never calls deactivate
    info = json.loads(_generate("a cat").js())
    assert info["extra_generation_params"]["Lora hashes"] == expected


TE_MODULE = "transformer.text_model.encoder.layers.0.self_attn.q_proj"
TE_PREFIX = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


def _write_te_lora(webui, path, seed: int) -> None:
    from lora_files import write_lora

    encoder = getattr(webui.model.cond_stage_model, "wrapped", webui.model.cond_stage_model)
    base = encoder.get_submodule(TE_MODULE).weight.detach()
    tensors = adapter_tensors("lora", base, seed=seed)
    write_lora(path, spell(TE_PREFIX, tensors))


def test_a_lora_replaced_on_disk_under_the_same_token_gives_the_new_image_at_once(webui):
    """The WebUI caches conditioning by prompt text (``persistent_cond_cache``): a text-encoder LoRA replaced on
    disk between two generations of the same prompt must not reuse the old conditioning with the new weights."""
    lora_dir = webui.takeover._loader().lora_dirs()[0]
    assert_a_replaced_file_is_seen_at_once(
        _generate, lambda name, seed: _write_te_lora(webui, lora_dir / f"{name}.safetensors", seed)
    )


def test_a_failing_loader_hands_the_generation_to_the_builtin_and_logs_one_line(webui, monkeypatch, caplog):
    """Whatever fails in our loader, the user's LoRA still applies (the built-in's), with one log line per cause."""
    expected = webui.original + 0.5 * webui.deltas["a"]
    break_loader(monkeypatch, webui.takeover)
    with caplog.at_level("ERROR"):
        for _ in range(2):
            processed = _generate("a cat <lora:a:0.5>")
            torch.testing.assert_close(webui.weight.detach(), expected)  # the built-in merged it
            assert [n.name for n in webui.networks.loaded_networks] == ["a"]
    assert webui.networks.apply_count > 0 and "Lora hashes" in processed.infotexts[0]
    assert_one_line_per_cause(caplog)
    monkeypatch.undo()
    _generate("a cat")  # ours again: the built-in's merge is undone, nothing of either is left
    assert torch.equal(webui.weight.detach(), webui.original)
