from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dataset_support import files_under, write_image

from lora_ext.dataset.projects import ProjectStore, version_dataset_dir
from lora_ext.errors import DatasetError

JAPANESE = "猫のキャラ学習"


@pytest.fixture
def store(tmp_path: Path) -> ProjectStore:
    return ProjectStore(tmp_path / "projects")


def test_a_japanese_project_gets_a_first_version_with_its_folders(store: ProjectStore) -> None:
    assert store.create_project(JAPANESE) == JAPANESE
    assert store.list_projects() == [JAPANESE]
    assert store.list_versions(JAPANESE) == ["v1"]
    paths = store.version(JAPANESE, "v1")
    assert paths.root == store.root / JAPANESE / "versions" / "v1"
    assert paths.dataset.is_dir() and paths.config.is_dir() and paths.outputs.is_dir()
    manifest = json.loads(paths.manifest.read_text("utf-8"))
    assert manifest["project"] == JAPANESE and manifest["version"] == "v1" and manifest["format"] == 1


@pytest.mark.parametrize("name", ["..", "../outside", "CON", "aux.txt", "a/b", "x\x00", "x" * 101, ".trash"])
def test_unsafe_project_names_are_refused_and_nothing_is_created(store: ProjectStore, name: str) -> None:
    with pytest.raises(DatasetError):
        store.create_project(name)
    assert not store.root.exists() or files_under(store.root.parent) == []


def test_names_are_unique_ignoring_case(store: ProjectStore) -> None:
    store.create_project("Alice")
    with pytest.raises(DatasetError, match="already exists"):
        store.create_project("alice")
    with pytest.raises(DatasetError, match="already exists"):
        store.create_version("ALICE", "V1")


def test_lookups_ignore_case(store: ProjectStore) -> None:
    store.create_project("Alice")
    assert store.version("alice", "V1").project == "Alice"


def test_versions_can_be_created_renamed_and_listed(store: ProjectStore) -> None:
    store.create_project("p", first_version=None)
    assert store.list_versions("p") == []
    store.create_version("p", "第二版", notes="more images")
    renamed = store.rename_version("p", "第二版", "v2")
    assert store.list_versions("p") == ["v2"]
    manifest = store.read_manifest("p", "v2")
    assert manifest["version"] == "v2" and manifest["notes"] == "more images"
    assert renamed.dataset.is_dir()


def test_renaming_a_project_updates_every_manifest(store: ProjectStore) -> None:
    store.create_project("old")
    store.create_version("old", "v2")
    store.rename_project("old", JAPANESE)
    assert store.list_projects() == [JAPANESE]
    assert {store.read_manifest(JAPANESE, v)["project"] for v in ("v1", "v2")} == {JAPANESE}


def test_renaming_only_the_case_is_allowed(store: ProjectStore) -> None:
    store.create_project("alice")
    store.rename_project("alice", "Alice")
    assert store.list_projects() == ["Alice"]


def test_duplicating_a_version_copies_dataset_and_config_but_not_outputs(store: ProjectStore) -> None:
    store.create_project("p")
    source = store.version("p", "v1")
    write_image(source.dataset / "10_cat" / "a.png")
    (source.config / "train.json").write_text("{}", "utf-8")
    (source.outputs / "lora.safetensors").write_bytes(b"weights")
    (source.captions_state / "backups").mkdir(parents=True)
    copy = store.duplicate_version("p", "v1", "v2")
    assert files_under(copy.root) == ["config/train.json", "dataset/10_cat/a.png", "manifest.json"]
    assert copy.outputs.is_dir()
    manifest = store.read_manifest("p", "v2")
    assert manifest["parent"] == "v1" and manifest["version"] == "v2"
    assert (source.outputs / "lora.safetensors").exists()


def test_duplicating_a_project_copies_its_versions(store: ProjectStore) -> None:
    store.create_project("p")
    write_image(store.version("p", "v1").dataset / "a.png")
    (store.version("p", "v1").outputs / "x.safetensors").write_bytes(b"w")
    store.duplicate_project("p", "p copy")
    copy = store.version("p copy", "v1")
    assert (copy.dataset / "a.png").is_file() and not (copy.outputs / "x.safetensors").exists()
    assert store.read_manifest("p copy", "v1")["project"] == "p copy"


def test_deleting_moves_to_the_trash(store: ProjectStore) -> None:
    store.create_project(JAPANESE)
    store.create_version(JAPANESE, "v2")
    write_image(store.version(JAPANESE, "v2").dataset / "a.png")
    trashed_version = store.delete_version(JAPANESE, "v2")
    assert store.list_versions(JAPANESE) == ["v1"]
    assert (trashed_version / "dataset" / "a.png").is_file()
    trashed_project = store.delete_project(JAPANESE)
    assert store.list_projects() == []
    assert trashed_project.parent == store.root / ".trash"
    assert [(item.project, item.version) for item in store.list_trash()] == [(JAPANESE, "v2"), (JAPANESE, None)]
    store.create_project(JAPANESE)  # the name is free again


def test_deleted_projects_and_versions_can_be_restored(store: ProjectStore) -> None:
    store.create_project(JAPANESE)
    store.create_version(JAPANESE, "v2")
    write_image(store.version(JAPANESE, "v2").dataset / "a.png")
    store.delete_version(JAPANESE, "v2")
    project_entry = store.delete_project(JAPANESE)
    version_entry = next(item.name for item in store.list_trash() if item.version == "v2")
    with pytest.raises(DatasetError, match="no project"):
        store.restore_from_trash(version_entry)  # its project is in the trash too
    store.restore_from_trash(project_entry.name)
    store.restore_from_trash(version_entry)
    assert store.list_versions(JAPANESE) == ["v1", "v2"]
    assert (store.version(JAPANESE, "v2").dataset / "a.png").is_file()
    assert store.list_trash() == []


def test_restoring_onto_a_taken_name_is_refused(store: ProjectStore) -> None:
    store.create_project("p")
    entry = store.delete_project("p")
    store.create_project("P")
    with pytest.raises(DatasetError, match="already exists"):
        store.restore_from_trash(entry.name)
    with pytest.raises(DatasetError, match="cannot be restored|not something"):
        store.restore_from_trash("nothing-here")


def test_manifest_fields_can_be_set_but_names_cannot(store: ProjectStore) -> None:
    store.create_project("p")
    assert store.update_manifest("p", "v1", {"trigger_word": "sks"})["trigger_word"] == "sks"
    assert store.read_manifest("p", "v1")["trigger_word"] == "sks"
    with pytest.raises(DatasetError, match="cannot be changed"):
        store.update_manifest("p", "v1", {"version": "v9"})


def test_missing_projects_and_versions_are_dataset_errors(store: ProjectStore) -> None:
    with pytest.raises(DatasetError, match="no project"):
        store.list_versions("nope")
    store.create_project("p")
    with pytest.raises(DatasetError, match="no version"):
        store.version("p", "v9")


def test_training_reads_the_version_dataset_folder(store: ProjectStore) -> None:
    store.create_project(JAPANESE)
    assert version_dataset_dir(store.root, JAPANESE, "v1") == store.root / JAPANESE / "versions" / "v1" / "dataset"


def test_caption_store_keeps_its_history_beside_the_dataset(store: ProjectStore) -> None:
    store.create_project("p")
    captions = store.caption_store("p", "v1")
    assert captions.dataset_dir == store.version("p", "v1").dataset
    assert captions.state_dir == store.version("p", "v1").captions_state


def test_an_unwritable_root_is_a_dataset_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder", "utf-8")
    with pytest.raises(DatasetError, match="could not be changed"):
        ProjectStore(tmp_path / "file").create_project("p")
