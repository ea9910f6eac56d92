from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dataset_support import write_image

from lora_ext.dataset import files
from lora_ext.dataset.editor import Editor
from lora_ext.dataset.files import CaptionsChangedOnDisk, CaptionStore
from lora_ext.errors import DatasetError


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an ``Exception``, so no handler runs."""


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    for index, name in enumerate(["a.png", "b.png", "c.jpg", "写真.png"]):
        write_image(root / name, (index * 40, 0, 0))
    (root / "a.txt").write_text("1girl, smile\n", "utf-8")
    (root / "b.txt").write_text("1boy", "utf-8")
    (root / "写真.txt").write_text("landscape, 山", "utf-8")
    write_image(root / "10_cat" / "d.png")
    (root / "10_cat" / "d.caption").write_text("cat", "utf-8")
    (root / ".hidden.png").write_bytes(b"not loaded")
    return root


def _store(dataset: Path, **kwargs) -> CaptionStore:
    return CaptionStore(dataset, dataset.parent / "state", **kwargs)


def _edit_all(store: CaptionStore, tag: str = "edited") -> Editor:
    editor = Editor(store.load().table)
    editor.add_tags(tag)
    return editor


def test_load_reads_txt_and_caption_files_and_subfolders(dataset: Path) -> None:
    table = _store(dataset).load().table
    assert table.as_dict() == {
        "10_cat/d.png": ("cat",),
        "a.png": ("1girl", "smile"),
        "b.png": ("1boy",),
        "c.jpg": (),
        "写真.png": ("landscape", "山"),
    }


def test_load_does_not_open_images(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import PIL.Image

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded during load")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    assert len(_store(dataset).load().table) == 5


def test_save_writes_only_changed_captions_and_reload_matches(dataset: Path) -> None:
    store = _store(dataset)
    editor = Editor(store.load().table)
    editor.set_caption("b.png", "1boy, hat")
    editor.set_caption("c.jpg", "new caption")
    before_a = (dataset / "a.txt").stat().st_mtime_ns
    result = store.save(editor.table)
    assert result.written == ("b.txt", "c.txt")
    assert (dataset / "b.txt").read_text("utf-8") == "1boy, hat\n"
    assert (dataset / "c.txt").read_text("utf-8") == "new caption\n"
    assert (dataset / "a.txt").stat().st_mtime_ns == before_a
    assert _store(dataset).load().table.as_dict() == editor.table.as_dict()


def test_saving_a_caption_read_from_dot_caption_writes_that_file(dataset: Path) -> None:
    store = _store(dataset)
    editor = Editor(store.load().table)
    editor.set_caption("10_cat/d.png", "cat, sitting")
    store.save(editor.table)
    assert (dataset / "10_cat" / "d.caption").read_text("utf-8") == "cat, sitting\n"


def test_saving_nothing_changed_writes_nothing(dataset: Path) -> None:
    store = _store(dataset)
    assert store.save(store.load().table).written == ()
    assert store.list_backups() == ()


def test_backups_are_numbered_and_hold_the_previous_text(dataset: Path) -> None:
    store = _store(dataset)
    editor = _edit_all(store, "first")
    assert store.save(editor.table).backup == 1
    editor.add_tags("second")
    assert store.save(editor.table).backup == 2
    assert [info.number for info in store.list_backups()] == [1, 2]
    first = store.read_backup(1)
    assert first["a.txt"] == ("1girl", "smile")
    assert first["c.txt"] is None  # there was no caption file before the first save
    assert store.read_backup(2)["a.txt"] == ("1girl", "smile", "first")
    assert sorted(path.name for path in (dataset.parent / "state" / "backups").iterdir()) == ["0001.json", "0002.json"]


def test_old_backups_are_pruned_but_numbers_keep_counting(dataset: Path) -> None:
    store = _store(dataset, keep_backups=2)
    editor = Editor(store.load().table)
    for number in range(4):
        editor.add_tags(f"t{number}")
        store.save(editor.table)
    assert [info.number for info in store.list_backups()] == [3, 4]
    with pytest.raises(DatasetError):
        store.read_backup(1)


def test_external_change_is_detected_before_overwrite(dataset: Path) -> None:
    store = _store(dataset)
    editor = _edit_all(store)
    (dataset / "a.txt").write_text("changed elsewhere, longer text", "utf-8")
    with pytest.raises(CaptionsChangedOnDisk) as caught:
        store.save(editor.table)
    assert caught.value.paths == ("a.txt",)
    assert (dataset / "a.txt").read_text("utf-8") == "changed elsewhere, longer text"
    assert (dataset / "b.txt").read_text("utf-8") == "1boy"  # nothing else was written either
    store.save(editor.table, overwrite_external=True)
    assert (dataset / "a.txt").read_text("utf-8") == "1girl, smile, edited\n"


def test_a_caption_file_created_elsewhere_counts_as_an_external_change(dataset: Path) -> None:
    store = _store(dataset)
    editor = _edit_all(store)
    (dataset / "c.txt").write_text("made by the tagger", "utf-8")
    with pytest.raises(CaptionsChangedOnDisk, match="c.txt"):
        store.save(editor.table)


def test_touching_a_file_without_changing_it_is_not_a_conflict(dataset: Path) -> None:
    store = _store(dataset)
    editor = _edit_all(store)
    (dataset / "a.txt").write_text("1girl, smile\n", "utf-8")  # same text, new mtime
    store.save(editor.table)


def test_changes_to_files_not_being_saved_are_left_alone(dataset: Path) -> None:
    store = _store(dataset)
    editor = Editor(store.load().table)
    editor.set_caption("b.png", "edited")
    (dataset / "a.txt").write_text("someone else", "utf-8")
    store.save(editor.table)
    assert (dataset / "a.txt").read_text("utf-8") == "someone else"


def _crash_on_commit(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    real = files._commit_file
    calls = {"count": 0}

    def crashing(temp: Path, target: Path) -> None:
        if calls["count"] == after:
            raise SimulatedCrash
        calls["count"] += 1
        real(temp, target)

    monkeypatch.setattr(files, "_commit_file", crashing)


def test_save_interrupted_between_files_is_completed_on_next_open(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(dataset)
    editor = _edit_all(store)
    _crash_on_commit(monkeypatch, after=2)
    with pytest.raises(SimulatedCrash):
        store.save(editor.table)
    monkeypatch.undo()
    texts = [path.read_text("utf-8") for path in dataset.rglob("*") if path.suffix in (".txt", ".caption")]
    assert sum("edited" in text for text in texts) == 2  # really half-saved on disk
    loaded = _store(dataset).load()
    assert loaded.recovery.action == "completed"
    assert loaded.table.as_dict() == editor.table.as_dict()
    assert not (dataset.parent / "state" / files.JOURNAL_NAME).exists()
    assert not list(dataset.rglob(f"*{files.TEMP_MARK}*"))


def test_interrupted_save_that_cannot_be_completed_is_rolled_back(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(dataset)
    original = store.load().table
    editor = _edit_all(store)
    _crash_on_commit(monkeypatch, after=2)
    with pytest.raises(SimulatedCrash):
        store.save(editor.table)
    monkeypatch.undo()
    real = files._commit_file

    def read_only(temp: Path, target: Path) -> None:
        if target.name == "b.txt":
            raise PermissionError(13, "Permission denied")
        real(temp, target)

    monkeypatch.setattr(files, "_commit_file", read_only)
    loaded = _store(dataset).load()
    assert loaded.recovery.action == "rolled_back"
    assert loaded.table.as_dict() == original.as_dict()
    assert not (dataset / "c.txt").exists()  # it did not exist before the save
    assert not list(dataset.rglob(f"*{files.TEMP_MARK}*"))


def test_crash_before_the_journal_changes_nothing(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(dataset)
    editor = _edit_all(store)  # loading creates the dataset's hidden lock file, which stays
    original = {path: path.read_bytes() for path in dataset.rglob("*") if path.is_file()}

    def crashing(path: Path, text: str) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(files, "write_text_atomic", crashing)
    with pytest.raises(SimulatedCrash):
        store.save(editor.table)
    monkeypatch.undo()
    loaded = _store(dataset).load()
    assert loaded.recovery.action == "none"
    assert {path: path.read_bytes() for path in dataset.rglob("*") if path.is_file()} == original


def test_stray_temp_files_are_removed_on_open(dataset: Path) -> None:
    (dataset / f".a.txt{files.TEMP_MARK}.tmp").write_text("half", "utf-8")
    assert _store(dataset).load().recovery.removed_temp_files == 1
    assert not (dataset / f".a.txt{files.TEMP_MARK}.tmp").exists()


def test_restoring_a_backup_is_an_undoable_edit(dataset: Path) -> None:
    store = _store(dataset)
    original = store.load().table
    editor = Editor(original)
    editor.add_tags("x")
    store.save(editor.table)
    editor.mark_saved()
    editor.replace_table(store.backup_as_table(1, editor.table))
    assert editor.table.as_dict() == original.as_dict()
    editor.undo()
    assert "x" in editor.table.tags("a.png")


def test_an_os_error_during_save_rolls_back_and_says_so(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(dataset)
    original = store.load().table
    editor = _edit_all(store)
    real = files._commit_file
    calls = {"count": 0}

    def failing(temp: Path, target: Path) -> None:
        calls["count"] += 1
        if calls["count"] == 3:
            raise PermissionError(13, "Permission denied")
        real(temp, target)

    monkeypatch.setattr(files, "_commit_file", failing)
    with pytest.raises(DatasetError, match="nothing was changed"):
        store.save(editor.table)
    monkeypatch.undo()
    assert _store(dataset).load().table.as_dict() == original.as_dict()
    assert not (dataset.parent / "state" / files.JOURNAL_NAME).exists()


def test_a_damaged_journal_is_reported_not_guessed(dataset: Path) -> None:
    state = dataset.parent / "state"
    state.mkdir()
    (state / files.JOURNAL_NAME).write_text("{not json", "utf-8")
    with pytest.raises(DatasetError, match="damaged"):
        _store(dataset).load()


def test_a_caption_that_is_not_utf8_is_reported(dataset: Path) -> None:
    (dataset / "a.txt").write_bytes("猫".encode("shift_jis"))
    with pytest.raises(DatasetError, match="UTF-8"):
        _store(dataset).load()


def test_images_sharing_a_caption_are_noticed(dataset: Path) -> None:
    write_image(dataset / "a.jpg")
    notices = _store(dataset).load().notices
    assert len(notices) == 1 and "a.txt" in notices[0]


def test_missing_dataset_folder_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        CaptionStore(tmp_path / "nope").load()


def test_journal_holds_every_new_caption_before_the_first_rename(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(dataset)
    editor = _edit_all(store)
    seen: list[dict] = []

    def inspecting(temp: Path, target: Path) -> None:
        if not seen:
            seen.append(json.loads((dataset.parent / "state" / files.JOURNAL_NAME).read_text("utf-8")))
        temp.replace(target)

    monkeypatch.setattr(files, "_commit_file", inspecting)
    store.save(editor.table)
    assert len(seen[0]["entries"]) == 5
    assert {"target": "a.txt", "text": "1girl, smile, edited\n"} in seen[0]["entries"]
