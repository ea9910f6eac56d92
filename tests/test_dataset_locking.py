"""Two writers at once never lose one's work: parallel caption saves (page handler, stale snapshots, REST),
the dataset lock across two processes, and a refused second training that writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from test_dataset_support import write_image

from lora_ext.app.context import Context, Workspace
from lora_ext.dataset.editor import Editor
from lora_ext.dataset.files import CaptionsChangedOnDisk, CaptionStore
from lora_ext.errors import DatasetError
from lora_ext.ui import editor_section

THREADS = 20
NO_FILTER = {"filter_positive": "", "positive_logic": "AND", "filter_negative": "", "negative_logic": "OR"}
REPO = Path(__file__).resolve().parents[1]


def _run_together(work: Callable[[int], object]) -> tuple[list[object], list[BaseException]]:
    """Run ``work(0..THREADS-1)`` in as many threads released at the same instant."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - collected and asserted on below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results, errors


def _images(dataset: Path, count: int = THREADS) -> list[str]:
    names = [f"img{index:02d}.png" for index in range(count)]
    for index, name in enumerate(names):
        write_image(dataset / name, (index * 10, 0, 0))
        (dataset / name).with_suffix(".txt").write_text("original", "utf-8")
    return names


def _captions(dataset: Path, names: list[str]) -> list[str]:
    return [(dataset / name).with_suffix(".txt").read_text("utf-8").strip() for name in names]


def _assert_backups_unique(store: CaptionStore, names: list[str]) -> None:
    """Every caption's previous text is in exactly one backup: none was overwritten by another save's."""
    recorded = [path for info in store.list_backups() for path in info.files]
    assert sorted(recorded) == sorted(Path(name).with_suffix(".txt").name for name in names)
    numbers = [info.number for info in store.list_backups()]
    assert len(numbers) == len(set(numbers))


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    context = Context(lambda: None, Workspace(tmp_path / "projects", tmp_path / "tagger"))
    context.store.create_project("cat")
    return context


def test_twenty_parallel_page_saves_of_different_edits_keep_every_edit(ctx: Context) -> None:
    paths = ctx.version("cat", "v1")
    names = _images(paths.dataset)

    def edit_and_save(index: int) -> object:
        loaded = ", ".join(ctx.session("cat", "v1").editor.table.tags(names[index]))  # what the box was loaded from
        box = {"selected_key": names[index], "caption": f"edit {index}", "caption_base": loaded}
        editor_section.set_caption(ctx, "cat", "v1", **box, **NO_FILTER)
        return editor_section.save(ctx, "cat", "v1", overwrite=False, **NO_FILTER)

    _, errors = _run_together(edit_and_save)
    assert errors == []
    assert _captions(paths.dataset, names) == [f"edit {index}" for index in range(THREADS)]
    assert not ctx.session("cat", "v1").editor.is_dirty
    _assert_backups_unique(CaptionStore(paths.dataset, paths.captions_state), names)


def test_twenty_saves_from_stale_snapshots_each_write_only_their_own_edit(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    names = _images(dataset)
    stores = [CaptionStore(dataset, tmp_path / "state") for _ in range(THREADS)]
    editors = [Editor(store.load().table) for store in stores]  # all loaded before anyone saves

    def edit_and_save(index: int) -> object:
        editors[index].set_caption(names[index], f"edit {index}")
        return stores[index].save(editors[index].table)

    results, errors = _run_together(edit_and_save)
    assert errors == []
    assert _captions(dataset, names) == [f"edit {index}" for index in range(THREADS)]
    assert sorted(result.written for result in results) == sorted((Path(n).with_suffix(".txt").name,) for n in names)
    _assert_backups_unique(stores[0], names)


def test_parallel_saves_of_the_same_caption_keep_one_and_refuse_the_rest(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    names = _images(dataset, 1)
    stores = [CaptionStore(dataset, tmp_path / "state") for _ in range(THREADS)]
    editors = [Editor(store.load().table) for store in stores]

    def edit_and_save(index: int) -> object:
        editors[index].set_caption(names[0], f"edit {index}")
        return stores[index].save(editors[index].table)

    results, errors = _run_together(edit_and_save)
    assert len(errors) == THREADS - 1 and all(isinstance(error, CaptionsChangedOnDisk) for error in errors)
    (winner,) = [index for index, result in enumerate(results) if result is not None]
    assert _captions(dataset, names) == [f"edit {winner}"]


def test_twenty_parallel_rest_saves_keep_every_edit(ctx: Context) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import build_router

    app = FastAPI()
    app.include_router(build_router(lambda: None, {}, context=ctx))
    client = TestClient(app)
    paths = ctx.version("cat", "v1")
    names = _images(paths.dataset)
    ctx.session("cat", "v1")  # the page has the version open: it is refreshed, not overwritten

    def put(index: int) -> object:
        body = {"captions": {names[index]: f"edit {index}"}}
        return client.put("/train-tools/v1/projects/cat/versions/v1/captions", json=body)

    responses, errors = _run_together(put)
    assert errors == []
    assert [response.status_code for response in responses] == [200] * THREADS, responses[0].text
    assert _captions(paths.dataset, names) == [f"edit {index}" for index in range(THREADS)]
    assert ctx.session("cat", "v1").editor.table.tags(names[3]) == ("edit 3",)
    _assert_backups_unique(CaptionStore(paths.dataset, paths.captions_state), names)
    unknown = client.put("/train-tools/v1/projects/cat/versions/v1/captions", json={"captions": {"nope.png": "x"}})
    assert unknown.status_code == 400 and "not in this dataset" in unknown.json()["detail"]


HOLDER = """
import sys
from lora_ext.dataset.files import CaptionStore
from lora_ext.locking import dataset_lock

dataset, state = sys.argv[1], sys.argv[2]
with dataset_lock(dataset):
    print("locked", flush=True)
    sys.stdin.readline()
    CaptionStore(dataset, state).update({"img00.png": "from the other process"})
print("released", flush=True)
"""


def test_the_dataset_lock_holds_across_two_processes(tmp_path: Path) -> None:
    from lora_ext.locking import dataset_lock

    dataset = tmp_path / "dataset"
    names = _images(dataset, 2)
    store = CaptionStore(dataset, tmp_path / "state")
    editor = Editor(store.load().table)  # a snapshot taken before the other process writes
    editor.set_caption(names[1], "from this process")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(dataset), str(tmp_path / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(DatasetError, match="is busy"):
            with dataset_lock(dataset, timeout=0.2):
                pass
        saved: list[object] = []
        saver = threading.Thread(target=lambda: saved.append(store.save(editor.table)))
        saver.start()
        saver.join(0.5)
        assert saver.is_alive()  # waiting for the other process's lock
        assert _captions(dataset, names) == ["original", "original"]
        child.stdin.write("go\n")
        child.stdin.flush()
        saver.join(60)
        assert child.wait(60) == 0 and child.stdout.readline().strip() == "released"
    finally:
        child.kill()
    assert not saver.is_alive() and saved[0].written == ("img01.txt",)
    assert _captions(dataset, names) == ["from the other process", "from this process"]


def test_a_refused_second_training_writes_nothing(make_standalone_host, tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import build_router

    host = make_standalone_host("sd1")
    context = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"))
    context.store.create_project("cat")
    paths = context.version("cat", "v1")
    paths.config.mkdir(parents=True, exist_ok=True)
    (paths.config / "train.toml").write_text("# the settings of the last training\n", "utf-8")
    watched = [paths.config / "train.toml", paths.manifest]
    before = [(path.read_bytes(), path.stat().st_mtime_ns) for path in watched]
    release = threading.Event()
    running = context.jobs.start("Training", lambda job: release.wait(60), uses_model=True)
    try:
        app = FastAPI()
        app.include_router(build_router(lambda: host, {}, context=context))
        refused = TestClient(app).post(
            "/train-tools/v1/projects/cat/versions/v1/train", json={"preset": "fast-test", "output_name": "other"}
        )
        assert refused.status_code == 409 and "still running" in refused.json()["detail"]
    finally:
        release.set()
        running.finished_event.wait(60)
    assert [(path.read_bytes(), path.stat().st_mtime_ns) for path in watched] == before


def test_a_rest_save_waits_for_the_page_s_unsaved_edits_and_one_guard_refuses_everything_else(ctx: Context) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import build_router
    from lora_ext.app import captions, tagging

    app = FastAPI()
    app.include_router(build_router(lambda: None, {}, context=ctx))
    client = TestClient(app)
    paths = ctx.version("cat", "v1")
    names = _images(paths.dataset)
    session = ctx.session("cat", "v1")
    session.editor.set_caption(names[0], "page edit")
    refused = client.put("/train-tools/v1/projects/cat/versions/v1/captions", json={"captions": {names[1]: "api"}})
    assert refused.status_code == 400 and "unsaved changes" in refused.json()["detail"]
    assert _captions(paths.dataset, names[:2]) == ["original", "original"]
    with pytest.raises(DatasetError, match="unsaved changes"):
        tagging.start_tagging(ctx, "cat", "v1", "any", None, None)
    assert captions.save_captions(ctx, "cat", "v1").written  # the page's save, then the REST one
    saved = client.put("/train-tools/v1/projects/cat/versions/v1/captions", json={"captions": {names[1]: "api"}})
    assert saved.status_code == 200
    assert _captions(paths.dataset, names[:2]) == ["page edit", "api"]
    assert ctx.session("cat", "v1").editor.table.tags(names[1]) == ("api",)  # the page shows it
