"""The fakes keep the contracts of the WebUIs they stand for (``tests/contracts/``): every check that the opt-in
real-WebUI tests run inside the real WebUI (``tests/real_webui/``) passes against the fake here, and a check
fails when the WebUI differs."""

from __future__ import annotations

import copy

import pytest
from contracts import forge as forge_contract
from contracts import neo as neo_contract
from contracts import run
from fastapi import FastAPI
from forge import FORGE_ROOT, add_checkpoint, fake_forge, select_checkpoint
from webui import load_script


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
