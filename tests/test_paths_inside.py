"""Paths stay inside their folders: output names are names, and links inside a dataset are never followed
out of it — not for writing captions, tagging, ingestion or export, and not for showing a caption's text."""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_dataset_support import image_bytes, write_image

from lora_ext.app import train_settings
from lora_ext.commands.train import add_arguments, build_config
from lora_ext.config import TrainConfig, load_config
from lora_ext.dataset.export import export_zip
from lora_ext.dataset.files import CaptionStore
from lora_ext.dataset.ingest import IngestOptions, ingest
from lora_ext.dataset.names import validate_name
from lora_ext.dataset.projects import ProjectStore
from lora_ext.errors import ConfigError, DatasetError
from lora_ext.training.run import output_path_for

SECRET = "secret words from outside\n"
BAD_OUTPUT_NAMES = ["../x", "a/b", "a\\b", "/etc/evil", "..", "x" * 300, "con"]


# --- output_name ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_OUTPUT_NAMES)
def test_an_output_name_that_is_not_a_plain_name_is_refused_by_the_config(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig(output_name=name)
    assert "output name" in caught.value.user_message and len(caught.value.one_line()) < 200


def test_japanese_output_names_keep_working_and_are_tidied() -> None:
    assert TrainConfig(output_name=" 猫のスタイル v1 ").output_name == "猫のスタイル v1"
    assert TrainConfig.from_dict({"output_name": "ねこ"}).output_name == "ねこ"


def test_a_settings_file_and_the_form_cannot_set_a_path_as_output_name(tmp_path: Path) -> None:
    preset = tmp_path / "preset.toml"
    preset.write_text('output_name = "../../escape"\nrank = 4\n', "utf-8")
    with pytest.raises(ConfigError):
        load_config(preset)
    with pytest.raises(ConfigError):
        train_settings.build_config({"output_name": "sub/dir"}, str(tmp_path), "fallback")


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--model", "demo", "--dataset", "data", *argv])


def test_cli_output_name_override_is_checked_but_out_stays_the_users_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        build_config(_cli_args("--out", str(tmp_path / "a.safetensors"), "output_name=../x"), "sd1")
    elsewhere = tmp_path / "anywhere" / "odd:name.safetensors"
    config = build_config(_cli_args("--out", str(elsewhere)), "sd1")
    host = SimpleNamespace(lora_dir=tmp_path / "Lora")
    assert output_path_for(host, config, str(elsewhere)) == elsewhere
    validate_name(config.output_name)


def test_the_default_output_is_never_a_link_out_of_the_lora_folder(tmp_path: Path) -> None:
    lora_dir, outside = tmp_path / "Lora", tmp_path / "outside.safetensors"
    lora_dir.mkdir()
    outside.write_bytes(b"precious")
    (lora_dir / "mine.safetensors").symlink_to(outside)
    host = SimpleNamespace(lora_dir=lora_dir)
    assert output_path_for(host, TrainConfig(output_name="ok"), None) == lora_dir / "ok.safetensors"
    with pytest.raises(DatasetError):
        output_path_for(host, TrainConfig(output_name="mine"), None)
    escaping = TrainConfig(dataset_dir=str(tmp_path / "a:b"))  # no output name: the folder's name, made valid
    assert output_path_for(host, escaping, None).parent == lora_dir


def test_resolve_inside_refuses_dotdot_absolute_and_links_out(tmp_path: Path) -> None:
    from lora_ext.paths import resolve_inside

    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (root / "alias").symlink_to(root / "inner")  # a link that stays inside is fine
    (root / "out").symlink_to(tmp_path)
    assert resolve_inside(root, "alias/x.txt") == root / "alias" / "x.txt"
    for bad in ("../x", "/etc/passwd", "out/x.txt", "out"):
        with pytest.raises(DatasetError):
            resolve_inside(root, bad)


# --- captions that are links -------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> SimpleNamespace:
    """A dataset whose a.txt links to a secret file and whose 10_cat folder links to a folder elsewhere."""
    dataset, outside = tmp_path / "dataset", tmp_path / "outside"
    write_image(dataset / "a.png")
    write_image(dataset / "b.png")
    (dataset / "b.txt").write_text("plain\n", "utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, "utf-8")
    (dataset / "a.txt").symlink_to(secret)
    write_image(outside / "c.png")
    (outside / "c.txt").write_text(SECRET, "utf-8")
    (dataset / "10_cat").symlink_to(outside, target_is_directory=True)
    return SimpleNamespace(dataset=dataset, outside=outside, secret=secret, state=tmp_path / "state")


def _untouched(linked: SimpleNamespace) -> None:
    assert linked.secret.read_text("utf-8") == SECRET
    assert (linked.outside / "c.txt").read_text("utf-8") == SECRET
    assert sorted(path.name for path in linked.outside.iterdir()) == ["c.png", "c.txt"]
    assert (linked.dataset / "a.txt").is_symlink()


def test_a_linked_caption_is_never_shown_and_a_save_never_writes_through_it(linked: SimpleNamespace) -> None:
    store = CaptionStore(linked.dataset, linked.state)
    loaded = store.load()
    assert loaded.table.as_dict() == {"10_cat/c.png": (), "a.png": (), "b.png": ("plain",)}
    assert any("a.txt" in notice and "links outside" in notice for notice in loaded.notices)
    assert any("10_cat/c.txt" in notice for notice in loaded.notices)
    for key in ("a.png", "10_cat/c.png"):
        table = loaded.table.with_rows({loaded.table.index_of(key): ("edited",)})
        with pytest.raises(DatasetError):
            store.save(table, overwrite_external=True)
        _untouched(linked)
    assert store.list_backups() == ()  # the backup would have held the secret text
    saved = store.save(loaded.table.with_rows({loaded.table.index_of("b.png"): ("changed",)}))
    assert saved.written == ("b.txt",)
    assert SECRET.strip() not in "".join(str(store.read_backup(number)) for number in [saved.backup])
    _untouched(linked)


def test_a_journal_naming_a_file_outside_is_not_replayed(linked: SimpleNamespace) -> None:
    linked.state.mkdir()
    victim = linked.dataset.parent / "victim.txt"
    victim.write_text("keep me\n", "utf-8")
    journal = '{"backup": 1, "entries": [{"target": "../victim.txt", "text": "pwned"}]}'
    (linked.state / "save-journal.json").write_text(journal, "utf-8")
    with pytest.raises(DatasetError):
        CaptionStore(linked.dataset, linked.state).load()
    assert victim.read_text("utf-8") == "keep me\n"


def test_ingestion_into_a_linked_folder_is_refused_with_a_reason(linked: SimpleNamespace, tmp_path: Path) -> None:
    write_image(tmp_path / "drop" / "new.png", (1, 2, 3))
    with pytest.raises(DatasetError) as caught:
        ingest([tmp_path / "drop"], linked.dataset, IngestOptions(target_folder="10_cat"))
    assert "link" in caught.value.user_message
    archive = tmp_path / "drop.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("10_cat/zipped.png", image_bytes((9, 9, 9)))
        zipped.writestr("10_cat/zipped.txt", "zip caption")
    report = ingest([archive], linked.dataset)
    assert report.added == ()
    (skipped,) = report.skipped
    assert "link" in skipped.reason and "refused" in skipped.reason
    _untouched(linked)


def test_export_and_duplication_never_copy_a_linked_caption_s_text(linked: SimpleNamespace, tmp_path: Path) -> None:
    export_zip(linked.dataset, tmp_path / "export.zip", default_repeats=2, name="set")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        texts = [archive.read(name).decode("utf-8") for name in archive.namelist() if name.endswith(".txt")]
    assert texts and all(SECRET.strip() not in text for text in texts)

    store = ProjectStore(tmp_path / "projects")
    store.create_project("p")
    paths = store.version("p", "v1")
    write_image(paths.dataset / "a.png")
    (paths.dataset / "a.txt").symlink_to(linked.secret)
    copy = store.duplicate_version("p", "v1", "v2")
    copied = copy.dataset / "a.txt"
    assert copied.is_symlink()  # kept as a link: not a real file holding the secret text
    assert CaptionStore(copy.dataset, copy.captions_state).load().table.as_dict() == {"a.png": ()}


def test_tagging_never_reads_or_writes_a_linked_caption(linked: SimpleNamespace, tmp_path: Path) -> None:
    from onnx_tagger_fixture import build_tiny_tagger

    from lora_ext.tagger import Tagger, WriteOptions

    tagger = Tagger.load(build_tiny_tagger(tmp_path / "model"))
    try:
        report = tagger.tag_dataset(linked.dataset, write=WriteOptions(existing="append"), recursive=True)
    finally:
        tagger.unload()
    assert [path.name for path, _reason in report.skipped] == ["a.png"]
    assert "link" in report.skipped[0][1]
    assert [path.name for path in report.tagged] == ["b.png"]
    _untouched(linked)
    assert not any(SECRET.strip() in path.read_text("utf-8") for path in linked.dataset.glob("*.bak"))


def test_the_rest_api_refuses_a_path_as_output_name_and_never_serves_a_linked_caption(
    make_ldm_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from webui import load_script, reset_fake_webui

    reset_fake_webui()
    from modules import paths, script_callbacks, sd_models, shared

    try:
        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "webui" / "models" / "Lora"))
        model = make_ldm_model("sd1")
        model.sd_checkpoint_info = sd_models.CheckpointInfo("/m/tiny.safetensors", "tiny", shorthash="ab", hash="cd")
        shared.sd_model = model
        load_script()
        app = FastAPI()
        script_callbacks.app_started_callback(None, app)
        client = TestClient(app)
        assert client.post("/train-tools/v1/projects", json={"name": "犬"}).status_code == 200
        dataset = next((tmp_path / "webui").rglob("犬/versions/v1/dataset"))
        write_image(dataset / "a.png")
        secret = tmp_path / "secret.txt"
        secret.write_text(SECRET, "utf-8")
        (dataset / "a.txt").symlink_to(secret)
        shown = client.get("/train-tools/v1/projects/犬/versions/v1").json()
        assert SECRET.strip() not in str(shown) and shown["captions"]["a.png"] == ""
        for name in ("../escape", "a/b", "x" * 300):
            body = {"preset": "fast-test", "max_steps": 1, "output_name": name}
            answer = client.post("/train-tools/v1/projects/犬/versions/v1/train", json=body)
            assert answer.status_code in (400, 409) and "output name" in answer.json()["detail"]
        assert not (dataset.parent / "config" / "train.toml").exists()
        assert not [path for path in tmp_path.rglob("*.safetensors")]
        assert secret.read_text("utf-8") == SECRET
    finally:
        reset_fake_webui()


# --- small ones ---------------------------------------------------------------------------------


def test_an_overlong_name_is_refused_first_and_quoted_short() -> None:
    with pytest.raises(DatasetError) as caught:
        validate_name("x" * 5000 + "/../con.", "project name")
    message = caught.value.one_line()
    assert "too long" in message and "separator" not in message
    assert "x" * 61 not in message and len(message) < 160


def test_a_palette_image_is_reported_as_palette(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("P", (4, 4), 1).save(tmp_path / "pal.png")
    report = ingest([tmp_path / "pal.png"], tmp_path / "dataset")
    assert report.added[0].notices == ("palette image converted to RGB",)


def test_zip_entries_with_windows_forbidden_characters_are_invalid_names(tmp_path: Path) -> None:
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a:b.png", image_bytes((1, 1, 1)))
        zipped.writestr("q?.png", image_bytes((2, 2, 2)))
        zipped.writestr("C:/abs.png", image_bytes((3, 3, 3)))
    report = ingest([archive], tmp_path / "dataset")
    reasons = {item.source.split(":", 1)[1]: item.reason for item in report.skipped}
    assert report.added == ()
    for name in ("a:b.png", "q?.png"):
        assert "invalid name" in reasons[name] and "escape" not in reasons[name]
    assert "escape" in reasons["C:/abs.png"]
    left = set(os.listdir(tmp_path / "dataset")) - {".ingest-index.json", ".train-tools.lock"}  # bookkeeping only
    assert left == set()
