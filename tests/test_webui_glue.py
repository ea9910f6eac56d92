"""scripts/train_tools.py on the fake WebUI: tab, settings, API with --api-auth, host adapter."""

from __future__ import annotations

import pytest
from webui import WEBUI_GRADIOS, load_script, reset_fake_webui


@pytest.fixture
def webui(make_ldm_model):
    reset_fake_webui()
    from modules import script_callbacks, sd_models, shared

    model = make_ldm_model("sd1")
    model.sd_checkpoint_info = sd_models.CheckpointInfo(
        "/m/tiny.safetensors", "tiny", shorthash="abcdef1234", hash="1234abcd"
    )
    model.sd_model_hash = "abcdef1234"
    shared.sd_model = model
    yield shared, script_callbacks
    reset_fake_webui()


def test_script_registers_tab_settings_and_api(webui):
    shared, callbacks = webui
    load_script()
    callbacks.ui_settings_callback()
    assert shared.opts.train_tools_lora_loader == "Train Tools"
    assert shared.opts.data_labels["train_tools_lora_loader"].section[0] == "train_tools"
    tabs = callbacks.ui_tabs_callback()
    assert [(title, elem_id) for _, title, elem_id in tabs] == [("Train Tools", "train_tools")]


def _client(callbacks):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    callbacks.app_started_callback(None, app)
    return TestClient(app)


def test_api_answers_with_the_loaded_model(webui):
    _, callbacks = webui
    load_script()
    response = _client(callbacks).get("/train-tools/v1/host")
    assert response.status_code == 200
    assert response.json()["family"] == "sd1" and response.json()["short_hash"] == "abcdef1234"


def test_api_refuses_without_auth_when_api_auth_is_set(webui):
    shared, callbacks = webui
    shared.cmd_opts.api_auth = "alice:secret,bob:pw"
    load_script()
    client = _client(callbacks)
    assert client.get("/train-tools/v1/host").status_code == 401
    assert client.get("/train-tools/v1/host", auth=("alice", "wrong")).status_code == 401
    assert client.get("/train-tools/v1/host", auth=("bob", "pw")).status_code == 200


def test_either_login_of_the_webui_opens_the_api(webui, tmp_path):
    """``--api-auth`` guards the WebUI's API, ``--gradio-auth`` / ``--gradio-auth-path`` its page: our routes take
    any of them (a user in both may use either password), and nobody else."""
    shared, callbacks = webui
    logins = tmp_path / "logins.txt"
    logins.write_text("carol:c1,dave:d1\n\nerin:e:with:colons\n", encoding="utf-8")
    shared.cmd_opts.api_auth = "alice:secret"
    shared.cmd_opts.gradio_auth = "alice:other,bob:pw"
    shared.cmd_opts.gradio_auth_path = str(logins)
    load_script()
    client = _client(callbacks)
    assert client.get("/train-tools/v1/host").status_code == 401
    for login in [("alice", "secret"), ("alice", "other"), ("bob", "pw"), ("carol", "c1"), ("erin", "e:with:colons")]:
        assert client.get("/train-tools/v1/host", auth=login).status_code == 200, login
    for login in [("alice", "pw"), ("bob", "secret"), ("mallory", ""), ("erin", "e")]:
        assert client.get("/train-tools/v1/host", auth=login).status_code == 401, login


def test_a1111_host_follows_the_live_model_and_refuses_lowvram(webui, make_ldm_model):
    shared, _ = webui
    from lora_ext.hosts.a1111 import A1111Host

    host = A1111Host()
    assert host.info.family == "sd1" and host.info.name == "tiny"
    shared.sd_model = make_ldm_model("sdxl")
    assert host.info.family == "sdxl"
    assert host.capabilities().can_train
    shared.cmd_opts.lowvram = True
    capabilities = host.capabilities()
    assert not capabilities.can_train and "--lowvram" in capabilities.reasons[0]


def test_a1111_host_answers_capabilities_with_the_shared_rule(webui, monkeypatch):
    shared, _ = webui
    from modules import devices, sd_unet

    from lora_ext.host import training_capabilities
    from lora_ext.hosts.a1111 import A1111Host

    class TrtUnet:  # what the TensorRT extension leaves in sd_unet.current_unet
        pass

    host = A1111Host()
    shared.cmd_opts.medvram = True
    assert host.capabilities() == training_capabilities(medvram=True)
    monkeypatch.setattr(devices, "fp8", True)
    monkeypatch.setattr(sd_unet, "current_unet", TrtUnet())
    refused = host.capabilities()
    assert refused == training_capabilities(medvram=True, fp8_weights=True, alternate_unet="TrtUnet")
    assert not refused.can_train and "TrtUnet" in refused.reasons[1]


def test_a1111_host_without_model_says_so(webui):
    shared, _ = webui
    from lora_ext.errors import HostUnavailable
    from lora_ext.hosts.a1111 import A1111Host

    shared.sd_model = None
    with pytest.raises(HostUnavailable):
        _ = A1111Host().info


def test_a1111_generate_goes_through_process_images(webui):
    from modules import processing

    from lora_ext.host import GenerationRequest
    from lora_ext.hosts.a1111 import A1111Host

    images = A1111Host().generate(GenerationRequest(prompt="a cat", width=64, height=64, steps=2, seed=1))
    assert images[0].size == (64, 64)
    assert processing.process_log[-1]["prompt"] == "a cat"


def test_tab_builds_under_the_webuis_gradio(webui):
    """A1111 and reForge run gradio 3.41.2, Forge 4.40.0 (`make test-g4` runs this file there)."""
    import gradio as gr

    _, callbacks = webui
    load_script()
    blocks, _, _ = callbacks.ui_tabs_callback()[0]
    assert gr.__version__ in WEBUI_GRADIOS
    assert isinstance(blocks, gr.Blocks)


def test_script_wires_the_lora_takeover_into_the_host(webui):
    from lora_ext.hosts.a1111_loader import LoraTakeover

    _, callbacks = webui
    module = load_script()
    assert isinstance(module.host.lora_takeover, LoraTakeover)
    names = [c.callback.__name__ for c in callbacks.callback_map["callbacks_model_loaded"]]
    assert "model_loaded" in names
    assert any(c.callback.__name__ == "unload" for c in callbacks.callback_map["callbacks_script_unloaded"])


def test_a1111_generate_reports_the_sampler_s_steps_from_the_webui_s_state(webui, monkeypatch):
    """The WebUI's samplers count in ``shared.state``; a grid's and a preview's progress line reads them."""
    import time

    from modules import processing, shared

    from lora_ext.host import GenerationRequest
    from lora_ext.hosts.a1111 import A1111Host

    original = processing.process_images

    def stepping(p):
        shared.state.sampling_steps = 3
        for step in range(1, 4):
            shared.state.sampling_step = step
            time.sleep(0.4)
        return original(p)

    monkeypatch.setattr(processing, "process_images", stepping)
    seen: list[tuple[int, int]] = []
    request = GenerationRequest(prompt="a cat", width=64, height=64, steps=3, seed=1, on_step=lambda *s: seen.append(s))
    A1111Host().generate(request)
    assert (3, 3) in seen and seen == sorted(set(seen))


def test_cancelling_a_job_in_the_webui_presses_its_interrupt(webui):
    """Cancel stops a render at its next sampler step: the job's cancel interrupts ``shared.state``."""
    import threading
    import time

    from modules import shared

    from lora_ext.app.jobs import JobRunner
    from lora_ext.hosts.a1111 import A1111Host

    inside = threading.Event()

    def work(job) -> bool:
        inside.set()
        while not shared.state.interrupted:
            time.sleep(0.01)
        return job.cancelled()

    job = JobRunner().start("Epoch grid", work, A1111Host())
    assert inside.wait(10)
    job.cancel()
    assert job.finished_event.wait(10) and job.error is None and job.result is True
