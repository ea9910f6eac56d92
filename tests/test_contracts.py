"""The fakes keep the contracts of the WebUIs they stand for (``tests/contracts/``): every check that the opt-in
real-WebUI tests run inside the real WebUI (``tests/real_webui/``) passes against the fake here, and a check
fails when the WebUI differs."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from contracts import a1111 as a1111_contract
from contracts import forge as forge_contract
from contracts import neo as neo_contract
from contracts import reforge as reforge_contract
from contracts import run
from fastapi import FastAPI
from forge import FORGE_ROOT, REFORGE_ROOT, add_checkpoint, fake_forge, reforge_model, select_checkpoint
from webui import install_fake_webui, load_script, reset_fake_webui


def _failures(results: dict[str, str]) -> dict[str, str]:
    return {name: outcome for name, outcome in results.items() if outcome != "ok"}


def _loaded(forge, model) -> None:
    """Our script started as the WebUI starts it, and the checkpoint loaded by a first generation."""
    from modules import processing, script_callbacks

    engine = add_checkpoint(forge, copy.deepcopy(model))
    select_checkpoint(engine)
    load_script()
    script_callbacks.ui_settings_callback()
    script_callbacks.before_ui_callback()
    script_callbacks.app_started_callback(None, FastAPI())
    processing.process_images(processing.StableDiffusionProcessingTxt2Img(prompt="a cat", steps=2, width=64, height=64))


def test_the_fake_forge_keeps_forge_s_contract(make_ldm_model, monkeypatch):
    with fake_forge(FORGE_ROOT, monkeypatch) as forge:
        _loaded(forge, make_ldm_model("sd1"))
        results = run(forge_contract.CHECKS)
    assert _failures(results) == {}
    assert len(results) == len(forge_contract.CHECKS)


@pytest.mark.parametrize("check", ["transformer_blocks_add_residuals_in_place", "patch_types_merge_as_our_delta"])
def test_a_contract_check_fails_when_the_webui_differs(make_ldm_model, monkeypatch, check):
    """The checks can fail: a Forge whose blocks add out of place, or whose merge ignores a patch."""
    with fake_forge(FORGE_ROOT, monkeypatch) as forge:
        _loaded(forge, make_ldm_model("sd1"))
        if check == "transformer_blocks_add_residuals_in_place":
            from backend.nn import unet
            from ldm.modules.attention import BasicTransformerBlock

            monkeypatch.setattr(unet.BasicTransformerBlock, "_forward", BasicTransformerBlock._forward)
        else:
            from backend.patcher import lora

            real = lora.merge_lora_to_weight
            monkeypatch.setattr(
                lora, "merge_lora_to_weight", lambda patches, weight, *a, **k: real(patches[:0], weight, *a, **k)
            )
        outcome = run([getattr(forge_contract, check)])[check]
    assert outcome != "ok"


def test_the_fake_neo_keeps_neo_s_contract(make_ldm_model, monkeypatch):
    with fake_forge(FORGE_ROOT, monkeypatch, neo=True) as forge:
        _loaded(forge, make_ldm_model("sd1"))
        results = run(neo_contract.CHECKS)
    assert _failures(results) == {}
    assert len(results) == len(neo_contract.CHECKS)


def _started_with(model) -> None:
    """Our script started as an A1111-shell WebUI starts it, with ``model`` loaded, and one generation."""
    from modules import processing, script_callbacks, sd_models, shared

    model.sd_checkpoint_info = sd_models.CheckpointInfo("/m/tiny.safetensors", "tiny", "abcdef1234", "0123abcd")
    model.sd_model_hash = "abcdef1234"
    shared.sd_model = model
    load_script()
    script_callbacks.model_loaded_callback(model)
    script_callbacks.ui_settings_callback()
    script_callbacks.before_ui_callback()
    script_callbacks.app_started_callback(None, FastAPI())
    processing.process_images(processing.StableDiffusionProcessingTxt2Img(prompt="a cat", steps=2, width=64, height=64))


@pytest.fixture
def a1111(make_ldm_model, tmp_path, monkeypatch):
    """The fake A1111 v1.10.1 with its built-in Lora, our script started and an SD1 checkpoint loaded."""
    install_fake_webui()
    reset_fake_webui()
    import extensions_builtin_lora_fake as builtin
    from modules import shared

    monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "Lora"))
    builtin.install()  # built-ins load first, so their callbacks come first
    _started_with(make_ldm_model("sd1"))
    yield
    from modules import script_callbacks

    script_callbacks.script_unloaded_callback()
    sys.modules.pop("networks", None)
    reset_fake_webui()


def test_the_fake_webui_keeps_a1111_s_contract(a1111):
    results = run(a1111_contract.CHECKS)
    assert _failures(results) == {}
    assert len(results) == len(a1111_contract.CHECKS)


@pytest.mark.parametrize(
    "check",
    [
        "txt2img_takes_what_we_pass_and_closes_without_with",
        "lora_hashes_are_the_tensor_data_hash",
        "the_builtin_restores_its_backup_in_place_and_idles_without_networks",
        "hooks_on_its_layers_train_through_conditioning_and_apply_model",
        "saved_ui_defaults_key_by_label_and_leave_out_do_not_save_to_config",
    ],
)
def test_an_a1111_check_fails_when_the_webui_differs(a1111, monkeypatch, check):
    """A processing object that is a context manager (the old fake), Forge's whole-file ``Lora hashes``, a built-in
    that merges at every forward, a conditioning made under ``no_grad``, saved defaults that ignore
    ``do_not_save_to_config``: each is caught."""
    import extensions_builtin_lora_fake as builtin
    from modules import hashes, processing, shared

    if check == "txt2img_takes_what_we_pass_and_closes_without_with":
        monkeypatch.setattr(processing.StableDiffusionProcessing, "__enter__", lambda self: self, raising=False)
    elif check == "lora_hashes_are_the_tensor_data_hash":
        whole_file = hashes.sha256  # Forge's: the whole file, whatever the flag says
        monkeypatch.setattr(
            hashes, "sha256", lambda filename, title, use_addnet_hash=False: whole_file(filename, title)
        )
    elif check == "the_builtin_restores_its_backup_in_place_and_idles_without_networks":

        def merges_always(module, _inputs=None):
            with torch.no_grad():
                module.weight.add_(0.0)

        monkeypatch.setattr(builtin.networks, "network_apply_weights", merges_always)
    elif check == "saved_ui_defaults_key_by_label_and_leave_out_do_not_save_to_config":
        from modules import ui_loadsave

        class IgnoresTheMark(ui_loadsave.UiLoadsave):
            def add_block(self, block, path=""):
                block.do_not_save_to_config = False
                super().add_block(block, path)

        monkeypatch.setattr(ui_loadsave, "UiLoadsave", IgnoresTheMark)
    else:
        model = shared.sd_model
        real = model.get_learned_conditioning
        monkeypatch.setattr(model, "get_learned_conditioning", torch.no_grad()(real))
    checks = {function.__name__: function for function in a1111_contract.CHECKS}
    outcome = run([checks[check]])[check]
    assert outcome != "ok"


@pytest.fixture
def reforge(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(REFORGE_ROOT, monkeypatch):
        from modules import shared

        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "Lora"))
        _started_with(reforge_model(make_ldm_model("sd1")))
        yield
        from modules import script_callbacks

        script_callbacks.script_unloaded_callback()


def test_the_fake_reforge_keeps_reforge_s_contract(reforge):
    results = run(reforge_contract.CHECKS)
    assert _failures(results) == {}
    assert len(results) == len(reforge_contract.CHECKS)


@pytest.mark.parametrize("check", ["the_patchers_share_one_backup_that_unpatch_empties", "the_builtin_s_no_lora_state"])
def test_a_reforge_check_fails_when_the_webui_differs(reforge, monkeypatch, check):
    """Clones with backups of their own, or a built-in that leaves a patched clone for "no LoRA": each is caught."""
    from ldm_patched.modules.model_patcher import ModelPatcher

    if check == "the_patchers_share_one_backup_that_unpatch_empties":
        real = ModelPatcher.clone

        def clone_with_own_backup(self):
            n = real(self)
            n.backup = dict(self.backup)
            return n

        monkeypatch.setattr(ModelPatcher, "clone", clone_with_own_backup)
    else:
        import networks

        real = networks.extra_network_lora.activate

        def leaves_a_clone(p, params_list):
            real(p, params_list)
            from modules import shared

            after = shared.sd_model.forge_objects_after_applying_lora
            after.unet = after.unet.clone()

        monkeypatch.setattr(networks.extra_network_lora, "activate", leaves_a_clone)
    outcome = run([getattr(reforge_contract, check)])[check]
    assert outcome != "ok"
