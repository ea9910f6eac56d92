"""Training through the REST API keeps the user's work: resume continues the saved run, a second run keeps
the first one's LoRA, each saved file's card is its own render, and a dataset is checked before a run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from lora_ext.app.context import Context, Workspace

PREFIX = "/train-tools/v1"
VERSION = f"{PREFIX}/projects/cat/versions/v1"
FAST = {"preset": "fast-test", "sample_prompts": ""}


@pytest.fixture
def api(make_standalone_host, tmp_path: Path):
    """(client, context) over a tiny diffusers host, with project "cat" holding two captioned images."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import build_router

    host = make_standalone_host("sd1")
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"))
    app = FastAPI()
    app.include_router(build_router(lambda: host, {}, context=ctx))
    client = TestClient(app)
    assert client.post(f"{PREFIX}/projects", json={"name": "cat"}).status_code == 200
    sources = tmp_path / "incoming"
    sources.mkdir()
    for name, colour in (("red.png", (220, 30, 30)), ("blue.png", (30, 30, 220))):
        Image.new("RGB", (64, 64), colour).save(sources / name)
    added = client.post(f"{VERSION}/ingest", json={"paths": [str(sources)]})
    assert added.status_code == 200 and len(added.json()["added"]) == 2
    saved = client.put(f"{VERSION}/captions", json={"captions": {"red.png": "red, cat", "blue.png": "blue, cat"}})
    assert saved.status_code == 200
    return client, ctx


def _finished(client, deadline: float = 300) -> dict:
    """The status once the current job has ended (polled as a REST client would)."""
    ends = time.monotonic() + deadline
    while time.monotonic() < ends:
        status = client.get(f"{PREFIX}/train/status").json()
        if not status["running"]:
            return status
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def _train(client, **body) -> dict:
    started = client.post(f"{VERSION}/train", json={**FAST, **body})
    assert started.status_code == 200, started.text
    return started.json()


def _cancel_at(ctx: Context, client, step: int, **body) -> dict:
    """Start a run and cancel it through the API once it has made ``step`` steps (the run waits there)."""
    host = ctx.host
    reached, release = threading.Event(), threading.Event()
    report = host.report_progress

    def hold(done: int, total: int, text: str) -> None:
        report(done, total, text)
        if done == step:
            reached.set()
            release.wait(60)

    host.report_progress = hold
    try:
        _train(client, **body)
        assert reached.wait(120)
        assert client.post(f"{PREFIX}/train/cancel").json()["cancelled"]
    finally:
        release.set()
    host.report_progress = report
    status = _finished(client)
    assert status["result"]["status"] == "cancelled" and status["result"]["steps"] == step
    return status


def test_resume_after_editing_the_form_continues_the_saved_run_and_keeps_its_settings(api) -> None:
    client, ctx = api
    version = ctx.version("cat", "v1")
    _cancel_at(ctx, client, 3, max_steps=6, rank=4, seed=5)
    settings_file = version.config / "train.toml"
    settings_before = settings_file.read_bytes()

    # The form now says other things (another project's leftovers, say): 2 steps at rank 16.
    resumed = client.post(f"{VERSION}/train", json={"resume": True, "max_steps": 2, "rank": 16, "seed": 42})
    assert resumed.status_code == 200, resumed.text
    answer = resumed.json()
    assert answer["resumed"] and answer["output_name"] == "cat_v1"
    assert {(item["setting"], item["form"], item["saved"]) for item in answer["differences"]} == {
        ("max_steps", 2, 6),
        ("rank", 16, 4),
        ("seed", 42, 5),
    }
    assert answer["settings"]["max_steps"] == 6 and answer["settings"]["rank"] == 4
    assert "not the form's: max_steps 2 → 6" in answer["notes"][0]

    status = _finished(client)
    result = status["result"]
    assert (result["status"], result["steps"], result["total_steps"]) == ("finished", 6, 6)
    with safe_open(result["path"], "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_steps"] == "6" and metadata["ss_network_dim"] == "4"
    assert settings_file.read_bytes() == settings_before  # the form's settings were not written anywhere
    # Exactly the run it continued: the same as training those settings without a stop.
    ctx.store.duplicate_version("cat", "v1", "v2")
    straight = client.post(
        f"{PREFIX}/projects/cat/versions/v2/train", json={**FAST, "max_steps": 6, "rank": 4, "seed": 5}
    )
    assert straight.status_code == 200, straight.text
    uninterrupted = load_file(_finished(client)["result"]["path"])
    resumed_tensors = load_file(result["path"])
    assert uninterrupted.keys() == resumed_tensors.keys()
    assert all(uninterrupted[key].equal(value) for key, value in resumed_tensors.items())
    (run,) = client.get(f"{VERSION}/runs").json()
    assert (run["output_name"], run["status"], run["resumed"], run["steps"]) == ("cat_v1", "finished", 1, 6)
    assert [item["name"] for item in run["files"]] == ["cat_v1.safetensors"] and not run["resumable"]

    # Finished: nothing to resume, and the finished file is never written again by a resume.
    before = Path(result["path"]).read_bytes()
    refused = client.post(f"{VERSION}/train", json={"resume": True})
    assert refused.status_code == 409 and "no stopped run to resume" in refused.json()["detail"]
    assert Path(result["path"]).read_bytes() == before


def test_a_new_run_beside_a_stopped_one_leaves_it_resumable(api) -> None:
    client, ctx = api
    _cancel_at(ctx, client, 2, max_steps=5)
    second = _train(client, max_steps=1)
    assert second["output_name"] == "cat_v1-2" and not second["resumed"]
    assert _finished(client)["result"]["status"] == "finished"
    runs = client.get(f"{VERSION}/runs").json()
    assert [(run["output_name"], run["status"], run["resumable"]) for run in runs] == [
        ("cat_v1-2", "finished", False),
        ("cat_v1", "cancelled", True),
    ]
    resumed = client.post(f"{VERSION}/train", json={"resume": True}).json()
    assert resumed["output_name"] == "cat_v1" and resumed["differences"] == []
    assert _finished(client)["result"]["steps"] == 5


def test_training_one_version_twice_keeps_both_loras_and_lists_each_run_with_its_own_files(api) -> None:
    client, ctx = api
    lora_dir = ctx.host.lora_dir
    first = _train(client, max_steps=2, save_every_n_steps=1)
    assert first["output_name"] == "cat_v1" and first["notes"] == []
    _finished(client)
    first_bytes = (lora_dir / "cat_v1.safetensors").read_bytes()

    second = _train(client, max_steps=3, save_every_n_steps=1)
    assert second["output_name"] == "cat_v1-2"
    assert second["notes"] == ["cat_v1 is kept from an earlier run: this run saves as cat_v1-2"]
    # During the run the version's Result shows the new run only.
    assert _finished(client)["result"]["path"] == str(lora_dir / "cat_v1-2.safetensors")
    assert (lora_dir / "cat_v1.safetensors").read_bytes() == first_bytes

    runs = client.get(f"{VERSION}/runs").json()
    assert [run["output_name"] for run in runs] == ["cat_v1-2", "cat_v1"]
    assert [item["name"] for item in runs[0]["files"]] == [
        "cat_v1-2-step00000001.safetensors",
        "cat_v1-2-step00000002.safetensors",
        "cat_v1-2.safetensors",
    ]
    assert [item["name"] for item in runs[1]["files"]] == ["cat_v1-step00000001.safetensors", "cat_v1.safetensors"]
    assert [run["settings"]["max_steps"] for run in runs] == [3, 2]
    assert all(run["started_at"] and run["finished_at"] and run["status"] == "finished" for run in runs)
    assert ctx.store.read_manifest("cat", "v1")["output_name"] == "cat_v1-2"  # the Result section's default
    listed = {item["name"] for item in client.get(f"{PREFIX}/loras").json()}
    assert {"cat_v1", "cat_v1-2"} <= listed


def test_each_epoch_file_s_card_is_that_epoch_s_own_sample(api) -> None:
    client, ctx = api
    _train(
        client,
        epochs=2,
        save_every_n_epochs=1,
        sample_every_n_epochs=1,
        sample_prompts="cat --w 64 --h 64 --s 2 --d 3",
    )
    assert _finished(client)["result"]["status"] == "finished"
    samples = ctx.version("cat", "v1").run_dir("cat_v1") / "samples"
    lora_dir = ctx.host.lora_dir

    def pixels(path: Path) -> bytes:
        with Image.open(path) as image:
            return image.convert("RGB").tobytes()

    (epoch1,) = samples.glob("e000001_*_00.png")
    (epoch2,) = samples.glob("e000002_*_00.png")
    assert pixels(lora_dir / "cat_v1-000001.preview.png") == pixels(epoch1)
    assert pixels(lora_dir / "cat_v1.preview.png") == pixels(epoch2)  # the final file: the last epoch's render


def test_an_empty_dataset_is_refused_before_anything_is_written(api) -> None:
    client, ctx = api
    assert client.post(f"{PREFIX}/projects/cat/versions", json={"name": "empty"}).status_code == 200
    refused = client.post(f"{PREFIX}/projects/cat/versions/empty/train", json={**FAST, "max_steps": 1})
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "The dataset has no images to train on. "
        "(add images in the Dataset section (at its top level or in N_name folders))"
    )
    paths = ctx.version("cat", "empty")
    assert not (paths.config / "train.toml").exists() and ctx.jobs.current is None
    assert "output_name" not in ctx.store.read_manifest("cat", "empty")


def test_images_without_a_caption_are_named_with_the_caption_they_train_with(api) -> None:
    client, ctx = api
    (ctx.version("cat", "v1").dataset / "blue.txt").write_text("", encoding="utf-8")
    started = _train(client, max_steps=1)
    assert started["warnings"] == ["1 image(s) have no caption and train with an empty caption: blue.png"]
    _finished(client)
    with_trigger = _train(client, max_steps=1, trigger_word="sks")
    assert with_trigger["warnings"] == ['1 image(s) have no caption and train with the caption "sks": blue.png']
    path = _finished(client)["result"]["path"]
    with safe_open(path, "pt") as handle:
        frequency = handle.metadata()["ss_tag_frequency"]
    # kohya counts the caption files' tags: blue.png adds none (it used to add the folder's internal name,
    # "dataset", as its caption); the trigger word is put first when the caption is drawn.
    assert json.loads(frequency) == {"dataset": {"red": 1, "cat": 1}}


def test_the_status_route_answers_json_after_a_grid(api) -> None:
    client, ctx = api
    _train(client, max_steps=1)
    _finished(client)
    started = client.post(f"{VERSION}/grid", json={"prompts": ["cat"], "steps": 2, "weights": [0, 1]})
    assert started.status_code == 200
    status = _finished(client)
    assert status["name"] == "Epoch grid" and "error" not in status
    cells = status["result"]["cells"]
    assert [(cell["row"], cell["column"]) for cell in cells] == [(0, 0), (0, 1)]
    for cell in cells:  # saved beside the run, so a REST client can fetch what the page showed
        with Image.open(cell["path"]) as saved:
            assert saved.size == (64, 64)
    assert Path(status["result"]["folder"]).parent == ctx.version("cat", "v1").run_dir("cat_v1") / "grids"
    json.dumps(client.get(f"{PREFIX}/jobs/current").json())


def test_a_run_from_before_records_stays_listed_with_its_settings_after_a_new_run(api) -> None:
    client, ctx = api
    _train(client, max_steps=1, rank=3)
    _finished(client)
    import shutil

    shutil.rmtree(ctx.version("cat", "v1").run_dir("cat_v1"))  # as an older version left it: no record, no folder
    (legacy,) = client.get(f"{VERSION}/runs").json()
    assert (legacy["output_name"], legacy["status"], legacy["settings"]["rank"]) == ("cat_v1", "finished", 3)
    assert _train(client, max_steps=1)["output_name"] == "cat_v1-2"
    _finished(client)
    runs = client.get(f"{VERSION}/runs").json()
    assert [(run["output_name"], run["settings"]["rank"]) for run in runs] == [("cat_v1-2", 4), ("cat_v1", 3)]


def test_a_stopped_run_resumes_after_its_project_was_renamed(api) -> None:
    client, ctx = api
    _cancel_at(ctx, client, 1, max_steps=3)
    ctx.store.rename_project("cat", "kitten")
    ctx.forget()
    resumed = client.post(f"{PREFIX}/projects/kitten/versions/v1/train", json={"resume": True})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["output_name"] == "cat_v1"  # the run keeps its name (and its LoRA file's)
    status = _finished(client)
    assert "error" not in status, status.get("error")
    assert (status["result"]["status"], status["result"]["steps"]) == ("finished", 3)


def test_a_project_or_version_is_moved_to_the_trash_only_when_no_job_works_on_it(api) -> None:
    client, ctx = api
    release = threading.Event()
    job = ctx.jobs.start("Training", lambda job: release.wait(60), subject=("cat", "v1"))
    try:
        for route in (VERSION, f"{PREFIX}/projects/CAT"):  # a project's name matches ignoring case
            refused = client.delete(route)
            assert refused.status_code == 409 and "Training is still running on cat" in refused.json()["detail"]
        assert client.get(f"{PREFIX}/projects").json() == [{"name": "cat", "versions": ["v1"]}]
    finally:
        release.set()
        assert job.finished_event.wait(60)
    assert client.delete(f"{PREFIX}/projects/dog").status_code == 404
    assert client.delete(f"{PREFIX}/projects/cat/versions/v9").status_code == 404
    gone = client.delete(VERSION)
    assert gone.status_code == 200 and Path(gone.json()["trash"], "dataset", "red.png").is_file()  # restorable
    assert client.get(f"{PREFIX}/projects").json() == [{"name": "cat", "versions": []}]
    assert client.delete(f"{PREFIX}/projects/Cat").json()["project"] == "cat"
    assert client.get(f"{PREFIX}/projects").json() == []
