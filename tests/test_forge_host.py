"""On Forge and reForge installing Train Tools does no harm: our ``<lora:…>`` takeover registers as on A1111
(on Forge through Forge's patcher: ``test_forge_loader.py``; reForge: ``test_reforge_loader.py``), and with the
setting "Built-in" a generation is exactly as without us. Forge trains once its checkpoint is loaded
(``test_forge_training.py``); reForge refuses training with the reason."""

from __future__ import annotations

import logging

import pytest
from forge import (
    FORGE_ROOT,
    REFORGE_ROOT,
    FakeInitialModel,
    add_checkpoint,
    fake_forge,
    reforge_model,
    select_checkpoint,
)
from webui import load_script

PLACEHOLDER_FORGE = (
    "Forge has not loaded the checkpoint yet (it loads on the first generation): generate one image, then train"
)
REASON_REFORGE = "training on reForge is not supported yet: "


def _checkpoint(model, sd_models):
    model.sd_checkpoint_info = sd_models.CheckpointInfo("/m/tiny.safetensors", "tiny", shorthash="abcdef1234")
    model.sd_model_hash = "abcdef1234"
    return model


@pytest.fixture
def forge(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(FORGE_ROOT, monkeypatch) as forge:
        from modules import paths, shared

        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "webui" / "models" / "Lora"))
        forge.engine = add_checkpoint(forge, make_ldm_model("sd1"))
        select_checkpoint(forge.engine)
        forge.tensors = lambda: _tensors(forge.engine)
        yield forge


def _tensors(engine) -> dict:
    """Every tensor Forge holds for the model, by name, read live (a move replaces the tensor objects)."""
    return {
        f"{part}.{key}": tensor
        for part, module in engine.modules_for_tests().items()
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]
    }


@pytest.fixture
def reforge(make_ldm_model, monkeypatch):
    with fake_forge(REFORGE_ROOT, monkeypatch) as forge:
        from modules import sd_models, shared

        forge.engine = shared.sd_model = _checkpoint(reforge_model(make_ldm_model("sd1")), sd_models)
        forge.tensors = lambda: dict([*forge.engine.named_parameters(), *forge.engine.named_buffers()])
        yield forge


def _snapshot(tensors) -> dict:
    """Every tensor's bytes, dtype, device and inference flag, by name (read inside inference mode, as Forge would)."""
    import torch

    with torch.inference_mode():
        return {
            key: (
                tensor.is_inference(),
                tensor.dtype,
                tensor.device,
                tensor.detach()
                .to("cpu", copy=True)
                .contiguous()
                .numpy()
                .tobytes(),  # a copy: .numpy() would pin the storage
            )
            for key, tensor in tensors().items()
        }


def _generate(prompt: str):
    from modules import processing

    p = processing.StableDiffusionProcessingTxt2Img(prompt=prompt, seed=3, steps=2, width=64, height=64)
    processed = processing.process_images(p)
    return processed.images[0].tobytes(), processed.infotexts[0], dict(p.comments)


def _client(callbacks):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    callbacks.app_started_callback(None, app)
    return TestClient(app)


def _start_webui():
    """What the WebUI does after loading scripts: Settings, before_ui, the tabs, app_started."""
    from modules import script_callbacks

    script_callbacks.ui_settings_callback()
    script_callbacks.before_ui_callback()
    tabs = script_callbacks.ui_tabs_callback()
    return tabs, _client(script_callbacks)


PROMPTS = ("a cat", "a cat <lora:x:0.8>")


def test_detects_forge_reforge_and_a1111_from_what_the_webui_exposes(make_ldm_model, monkeypatch):
    from webui import install_fake_webui, reset_fake_webui

    install_fake_webui()
    reset_fake_webui()
    from modules import shared

    from lora_ext.hosts.detect import WebUI, detect_webui

    shared.sd_model = make_ldm_model("sd1")
    assert detect_webui() is WebUI.A1111
    with fake_forge(FORGE_ROOT, monkeypatch):
        assert detect_webui() is WebUI.FORGE
    with fake_forge(REFORGE_ROOT, monkeypatch):
        assert detect_webui() is WebUI.REFORGE
        reforge = reforge_model(make_ldm_model("sd1"))
    assert detect_webui() is WebUI.A1111  # nothing of the fake Forge is left behind
    # without the packages, the model's own layout decides
    shared.sd_model = FakeInitialModel()
    assert detect_webui() is WebUI.FORGE
    shared.sd_model = reforge
    assert detect_webui() is WebUI.REFORGE
    reset_fake_webui()


def test_on_forge_the_script_registers_the_takeover_over_forge_s_patcher_and_its_setting(forge):
    from modules import extra_networks, script_callbacks, shared

    from lora_ext.hosts.forge_loader import ForgeLoraTakeover

    module = load_script()
    takeover = module.host.lora_takeover
    assert isinstance(takeover, ForgeLoraTakeover)
    ours = {name: [c.callback for c in callbacks] for name, callbacks in script_callbacks.callback_map.items()}
    assert ours["callbacks_model_loaded"] == [takeover.model_loaded]
    assert ours["callbacks_script_unloaded"] == [takeover.unload]
    _start_webui()
    assert extra_networks.extra_network_registry["lora"] is takeover.network
    assert extra_networks.extra_network_aliases["lyco"] is takeover.network
    assert takeover.builtin is forge.networks.extra_network_lora
    assert "train_tools_lora_loader" in shared.opts.data_labels
    assert "train_tools_tagger_dir" in shared.opts.data_labels


def test_with_the_setting_built_in_a_forge_generation_is_exactly_as_without_us(forge, caplog):
    from modules import script_callbacks, shared

    from lora_ext.hosts.a1111_loader import SETTING_LOADER

    before = _snapshot(forge.tensors)
    script_callbacks.before_ui_callback()  # Forge alone; its first generation loads the model
    baseline = [_generate(prompt) for prompt in PROMPTS]
    assert baseline[0][0] != baseline[1][0] and "Lora hashes: x: forge" in baseline[1][1]
    shared.sd_model = FakeInitialModel()  # a fresh start, now with Train Tools
    forge.networks.activations.clear()
    load_script()
    with caplog.at_level(logging.DEBUG):
        _start_webui()
        shared.opts.set(SETTING_LOADER, "Built-in")
        ours = [_generate(prompt) for prompt in PROMPTS]
        script_callbacks.script_unloaded_callback()
    assert ours == baseline  # same images, same infotext ("Lora hashes" from Forge), no error in the comments
    assert all(not comments for _, _, comments in ours)
    assert forge.networks.activations == [{}, {"x": 0.8}]
    assert not [record for record in caplog.records if record.name.startswith("lora_ext")]
    after = _snapshot(forge.tensors)
    assert after == before  # every tensor: still an inference tensor, same bytes
    assert all(inference for inference, *_ in after.values())


def test_forge_host_route_refuses_training_until_forge_has_loaded_the_checkpoint_then_can_train(forge):
    load_script()
    tabs, client = _start_webui()
    first = client.get("/train-tools/v1/host")
    assert first.status_code == 200
    assert first.json()["can_train"] is False and first.json()["name"] == "no checkpoint loaded yet"
    assert first.json()["reasons"] == [PLACEHOLDER_FORGE]
    # the Train section says so; the dataset side keeps working
    ((blocks, _, _),) = tabs
    html = {block.elem_id: getattr(block, "value", None) for block in blocks.blocks.values() if block.elem_id}
    assert "Training is not possible: " + PLACEHOLDER_FORGE in html["train_tools_capabilities"]
    assert client.post("/train-tools/v1/projects", json={"name": "p"}).status_code == 200
    refused = client.post("/train-tools/v1/projects/p/versions/v1/train", json={"preset": "fast-test"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Training is not possible: " + PLACEHOLDER_FORGE  # Forge's reason, not A1111's
    _generate(PROMPTS[1])  # Forge loads the checkpoint now
    after = client.get("/train-tools/v1/host").json()
    assert after["name"] == "tiny" and after["family"] == "sd1" and after["short_hash"] == "abcdef1234"
    assert after["can_train"] is True and after["reasons"] == []


def test_on_reforge_the_built_in_setting_is_reforge_s_own_lora_and_training_is_refused(reforge, caplog):
    from modules import extra_networks, shared

    from lora_ext.hosts.a1111_loader import SETTING_LOADER
    from lora_ext.hosts.reforge import ReForgeLoraTakeover

    before = _snapshot(reforge.tensors)
    module = load_script()
    assert isinstance(module.host.lora_takeover, ReForgeLoraTakeover)
    with caplog.at_level(logging.DEBUG):
        _, client = _start_webui()
        assert extra_networks.extra_network_registry["lora"] is module.host.lora_takeover.network
        shared.opts.set(SETTING_LOADER, "Built-in")
        results = [_generate(prompt) for prompt in (*PROMPTS, PROMPTS[0])]
    assert reforge.networks.activations == [{}, {"x": 0.8}, {}] and "Lora hashes: x: forge" in results[1][1]
    assert all(not comments for _, _, comments in results)
    assert not [record for record in caplog.records if record.name.startswith("lora_ext")]
    assert _snapshot(reforge.tensors) == before  # reForge's own patcher put its backup back
    host = client.get("/train-tools/v1/host").json()
    assert host["name"] == "tiny" and host["can_train"] is False
    assert len(host["reasons"]) == 1 and host["reasons"][0].startswith(REASON_REFORGE)


def test_the_tab_s_model_line_follows_forge_s_lazy_load_at_the_next_poll(forge):
    """Forge loads the checkpoint at the first generation, not through our page: the page's poll shows it."""
    from lora_ext.ui import live, model_line

    script = load_script()
    ctx = script.context
    before = model_line.shown(ctx)
    assert "no checkpoint loaded yet" in before["model_line"] and "generate one image" in before["capabilities"]
    assert live.poll(ctx, "", "", before["model_seen"]) == {}  # nothing changed: an idle poll is empty
    _generate(PROMPTS[1])  # Forge loads the checkpoint now
    after = live.poll(ctx, "", "", before["model_seen"])
    assert "**Model:** tiny" in after["model_line"] and "family `sd1`" in after["model_line"]
    assert "Training is not possible" not in after["capabilities"]
    assert live.poll(ctx, "", "", after["model_seen"]) == {}
