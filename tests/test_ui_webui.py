"""The tab and the REST API inside the (fake) WebUI: built under gradio 3.41.2, registered, answering,
refusing without auth when ``--api-auth`` is set, and long jobs holding the WebUI's queue lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from ui_fixtures import write_images, write_tagger
from webui import WEBUI_GRADIOS, load_script, reset_fake_webui

from lora_ext.config import AUTO_PRESET


@pytest.fixture
def webui(make_ldm_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reset_fake_webui()
    from modules import paths, script_callbacks, sd_models, shared

    monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
    monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "webui" / "models" / "Lora"))
    model = make_ldm_model("sd1")
    model.sd_checkpoint_info = sd_models.CheckpointInfo(
        "/m/tiny.safetensors", "tiny", shorthash="abcdef1234", hash="1234abcd"
    )
    model.sd_model_hash = "abcdef1234"
    shared.sd_model = model
    yield shared, script_callbacks
    reset_fake_webui()


def _elem_ids(blocks) -> set[str]:
    return {block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)}


def test_tab_settings_and_sections_register_in_the_webui(webui) -> None:
    import gradio as gr

    shared, callbacks = webui
    load_script()
    callbacks.ui_settings_callback()
    for key in ("train_tools_lora_loader", "train_tools_tagger_dir", "train_tools_default_preset"):
        assert key in shared.opts.data_labels
    ((blocks, title, elem_id),) = callbacks.ui_tabs_callback()
    assert gr.__version__ in WEBUI_GRADIOS and isinstance(blocks, gr.Blocks)
    assert (title, elem_id) == ("Train Tools", "train_tools")
    ids = _elem_ids(blocks)
    for wanted in (
        "train_tools",
        "train_tools_create_project",
        "train_tools_drop",
        "train_tools_run_tagging",
        "train_tools_chips",
        "train_tools_undo",
        "train_tools_start_training",
        "train_tools_loss_plot",
        "train_tools_lora_token",
        "train_tools_compare",
    ):
        assert wanted in ids, wanted
    assert "**Model:** tiny (family `sd1`" in blocks.blocks[_find(blocks, "train_tools_model")].value


def _find(blocks, elem_id: str) -> int:
    return next(key for key, block in blocks.blocks.items() if getattr(block, "elem_id", None) == elem_id)


def _client(callbacks):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    callbacks.app_started_callback(None, app)
    return TestClient(app)


ROUTES = [
    ("get", "/train-tools/v1/host", None),
    ("get", "/train-tools/v1/projects", None),
    ("post", "/train-tools/v1/projects", {"name": "x"}),
    ("post", "/train-tools/v1/projects/x/versions", {"name": "v2"}),
    ("get", "/train-tools/v1/projects/x/versions/v1", None),
    ("post", "/train-tools/v1/projects/x/versions/v1/ingest", {"paths": []}),
    ("post", "/train-tools/v1/projects/x/versions/v1/tag", {}),
    ("post", "/train-tools/v1/projects/x/versions/v1/train", {}),
    ("get", "/train-tools/v1/train/status", None),
    ("post", "/train-tools/v1/train/cancel", None),
    ("get", "/train-tools/v1/jobs/current", None),
    ("get", "/train-tools/v1/loras", None),
    ("get", "/train-tools/v1/loras/some-name", None),
]


@pytest.mark.parametrize("flag", ["api_auth", "gradio_auth"])
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_api_route_refuses_without_auth_when_any_password_is_set(webui, method: str, path: str, body, flag):
    """``--api-auth`` or ``--gradio-auth`` alone: either way no route of ours answers without the login."""
    shared, callbacks = webui
    setattr(shared.cmd_opts, flag, "alice:secret")
    load_script()
    client = _client(callbacks)
    call = getattr(client, method)
    kwargs = {"json": body} if body is not None else {}
    assert call(path, **kwargs).status_code == 401
    assert call(path, auth=("alice", "wrong"), **kwargs).status_code == 401
    assert call(path, auth=("alice", "secret"), **kwargs).status_code != 401


def _wait_for_job(client, auth=None, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get("/train-tools/v1/jobs/current", auth=auth).json()
        if not status["running"]:
            return status
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def test_api_runs_the_flow_projects_ingest_tag_train_and_lists_the_lora(webui, tmp_path: Path) -> None:
    shared, callbacks = webui
    shared.opts.train_tools_tagger_dir = str(tmp_path / "taggers")
    write_tagger(tmp_path / "taggers")
    load_script()
    client = _client(callbacks)
    assert client.post("/train-tools/v1/projects", json={"name": "犬"}).json() == {"name": "犬", "versions": ["v1"]}
    assert client.post("/train-tools/v1/projects", json={"name": "a/b"}).status_code == 400
    images = [str(path) for path in write_images(tmp_path / "drop")]
    ingested = client.post("/train-tools/v1/projects/犬/versions/v1/ingest", json={"paths": images}).json()
    assert ingested["summary"].startswith("2 image(s) added, 1 skipped")
    assert ingested["skipped"][0]["source"].endswith("broken.png")
    started = client.post("/train-tools/v1/projects/犬/versions/v1/tag", json={"model": "tiny-tagger"})
    assert started.status_code == 200 and started.json()["name"] == "Auto-tagging"
    tagged = _wait_for_job(client)
    assert tagged["result"]["tagged"] == 2, tagged
    captions = client.get("/train-tools/v1/projects/犬/versions/v1").json()["captions"]
    assert "red theme" in captions["red.png"]
    body = {"preset": "fast-test", "max_steps": 2, "output_name": "dog"}
    started = client.post("/train-tools/v1/projects/犬/versions/v1/train", json=body).json()
    assert started["output_name"] == "dog"
    trained = _wait_for_job(client, timeout=300)
    assert trained["result"]["status"] == "finished", trained
    assert trained["training"]["step"] == 2
    (entry,) = client.get("/train-tools/v1/loras").json()
    assert entry["name"] == "dog" and entry["prompt"] == "<lora:dog:0.8>"
    inspected = client.get("/train-tools/v1/loras/dog").json()
    assert inspected["base_model"] == "sd1" and inspected["modules"] > 0
    assert client.get("/train-tools/v1/loras/nothing").status_code == 404
    # The run's working folder stays with the version: the WebUI's Lora tab shows every sub-folder as a button.
    lora_dir = tmp_path / "webui" / "models" / "Lora"
    assert [path.name for path in lora_dir.iterdir() if path.is_dir()] == []
    version = tmp_path / "webui" / "outputs" / "train_tools" / "projects" / "犬" / "versions" / "v1"
    assert (version / "outputs" / "dog" / "loss.csv").is_file()


def test_api_refuses_a_second_job_and_unknown_options(webui, tmp_path: Path) -> None:
    _, callbacks = webui
    load_script()
    client = _client(callbacks)
    client.post("/train-tools/v1/projects", json={"name": "p"})
    bad = client.post("/train-tools/v1/projects/p/versions/v1/tag", json={"model": "x", "colour": "red"})
    assert bad.status_code == 409 and "unknown tagging options: colour" in bad.json()["detail"]
    bad = client.post("/train-tools/v1/projects/p/versions/v1/train", json={"rank": "lots"})
    assert bad.status_code == 409 and "rank" in bad.json()["detail"]


def test_ui_jobs_hold_the_queue_lock_and_stop_on_interrupt(webui) -> None:
    from modules import call_queue

    from lora_ext.app.jobs import JobRunner
    from lora_ext.hosts.a1111 import A1111Host

    shared, _ = webui
    inside = threading.Event()

    def work(job) -> int:
        inside.set()
        steps = 0
        while not job.cancelled():
            job.report(steps, 100, "working")
            steps += 1
            time.sleep(0.01)
        return steps

    job = JobRunner().start("Test generation", work, A1111Host())
    assert inside.wait(10)
    assert call_queue.queue_lock.locked() and shared.state.job.startswith("train_tools")
    shared.state.interrupt()  # the WebUI's Interrupt button
    assert job.finished_event.wait(10) and job.error is None
    assert not call_queue.queue_lock.locked() and shared.state.job == ""


def test_default_preset_and_memory_settings_fill_the_training_form(webui) -> None:
    shared, callbacks = webui
    load_script()
    callbacks.ui_settings_callback()
    shared.opts.train_tools_default_preset = "fast-test"
    shared.opts.train_tools_gradient_checkpointing = True
    shared.opts.train_tools_cache_latents_to_disk = False
    ((blocks, _, _),) = callbacks.ui_tabs_callback()
    values = {block.elem_id: getattr(block, "value", None) for block in blocks.blocks.values() if block.elem_id}
    assert values["train_tools_preset"] == "fast-test"
    assert values["train_tools_cfg_resolution"] == 64 and values["train_tools_cfg_rank"] == 4
    assert values["train_tools_cfg_gradient_checkpointing"] is True
    assert values["train_tools_cfg_cache_latents_to_disk"] is False


def test_the_plan_measures_on_the_model_only_while_no_generation_holds_the_queue_lock(webui) -> None:
    """A WebUI generation holds ``queue_lock``; the plan's probes (weights on meta for a moment, real steps)
    must not run beside it, and while a probe runs a generation waits."""
    from modules import call_queue

    from lora_ext.hosts.a1111 import A1111Host

    host = A1111Host()
    with call_queue.queue_lock:  # a generation of the WebUI's own
        with host.model_at_rest() as free:
            assert free is False
    with host.model_at_rest() as free:
        assert free is True and call_queue.queue_lock.locked()
        assert not call_queue.queue_lock.acquire(blocking=False)  # a generation would wait
    assert not call_queue.queue_lock.locked()


def test_the_webui_s_saved_defaults_change_no_value_of_the_tab(webui, tmp_path: Path) -> None:
    """The WebUI saves each input's value at its first start (``ui-config.json``, keyed by the tab and the label
    alone) and gives it back at every start. The real A1111 gave the training form's Repeats the export's 0 that
    way (every plan then failed: ``default_repeats must be at least 1``) and its Batch size the tagger's 8; and a
    changed default preset would never reach the form. The tab's values are Train Tools' own."""
    import json

    from modules.ui_loadsave import UiLoadsave

    shared, callbacks = webui
    load_script()
    callbacks.ui_settings_callback()
    config = tmp_path / "ui-config.json"
    # What a Train Tools whose tab had two inputs per label left there.
    config.write_text(json.dumps({"train_tools/Batch size/value": 8, "train_tools/Repeats/value": 0}), "utf-8")
    for preset in ("fast-test", AUTO_PRESET):  # a start, then one after the default preset changed
        shared.opts.train_tools_default_preset = preset
        ((blocks, _, elem_id),) = callbacks.ui_tabs_callback()
        before = {key: block.value for key, block in blocks.blocks.items() if hasattr(block, "value")}
        loadsave = UiLoadsave(str(config))
        loadsave.add_block(blocks, elem_id)
        loadsave.dump_defaults()
        changed = {
            getattr(blocks.blocks[key], "elem_id", None) or getattr(blocks.blocks[key], "label", key): (value, after)
            for key, value in before.items()
            if (after := blocks.blocks[key].value) != value
        }
        assert changed == {}, preset
        assert before[_find(blocks, "train_tools_cfg_default_repeats")] >= 1


def test_a_plan_s_measurement_enters_a_training_session_under_the_lock_it_holds(webui) -> None:
    """The plan holds the queue lock (``model_at_rest``) while it times steps, and the timing runs in a training
    session, which takes the lock too: the WebUI's lock is not reentrant, and on the real Forge Neo the first plan
    waited for itself, with every generation after it."""
    from modules import call_queue

    from lora_ext.hosts.a1111 import A1111Host

    host = A1111Host()
    entered = threading.Event()

    def measure() -> None:
        with host.model_at_rest() as free:
            assert free
            with host.exclusive("training"):
                entered.set()

    thread = threading.Thread(target=measure, daemon=True)
    thread.start()
    thread.join(60)
    assert entered.is_set(), "the measurement waits for the lock its own plan holds"
    assert not call_queue.queue_lock.locked()
    with host.exclusive("training"):  # another thread's: takes the lock
        assert call_queue.queue_lock.locked()
