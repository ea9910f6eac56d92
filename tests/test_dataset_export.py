from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from test_dataset_support import files_under, write_image

from lora_ext.dataset import export as export_module
from lora_ext.dataset.export import export_kohya, export_zip
from lora_ext.dataset.files import CaptionStore
from lora_ext.dataset.ingest import ingest
from lora_ext.dataset.layout import dataset_folders, repeat_folder_name
from lora_ext.errors import DatasetError


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    write_image(root / "猫.png", (10, 0, 0))
    (root / "猫.txt").write_text("sks, 猫\n", "utf-8")
    write_image(root / "b.jpg", (20, 0, 0))
    write_image(root / "10_dog" / "d.png", (30, 0, 0))
    (root / "10_dog" / "d.caption").write_text("dog\n", "utf-8")
    (root / ".ingest-index.json").write_text("{}", "utf-8")
    return root


def _content(folder: Path) -> dict[str, bytes]:
    return {
        name: (folder / name).read_bytes()
        for name in files_under(folder)
        if not name.rsplit("/", 1)[-1].startswith(".")
    }


def test_kohya_export_puts_top_level_images_in_a_repeat_folder(dataset: Path, tmp_path: Path) -> None:
    report = export_kohya(dataset, tmp_path / "out", default_repeats=5, name="猫")
    assert files_under(tmp_path / "out") == ["10_dog/d.png", "10_dog/d.txt", "5_猫/b.jpg", "5_猫/猫.png", "5_猫/猫.txt"]
    assert report.folders == {"10_dog": 10, "5_猫": 5}
    assert (report.images, report.captions) == (3, 2)
    assert (tmp_path / "out" / "10_dog" / "d.txt").read_text("utf-8") == "dog\n"


def test_zip_export_round_trips_through_ingestion(dataset: Path, tmp_path: Path) -> None:
    export_zip(dataset, tmp_path / "export.zip", default_repeats=2, name="set")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        assert sorted(archive.namelist()) == [
            "10_dog/d.png",
            "10_dog/d.txt",
            "2_set/b.jpg",
            "2_set/猫.png",
            "2_set/猫.txt",
        ]
    report = ingest([tmp_path / "export.zip"], tmp_path / "again")
    assert report.skipped == () and report.folders == {"10_dog": 10, "2_set": 2}
    assert _content(tmp_path / "again") == _content(_exported(dataset, tmp_path))
    captions = CaptionStore(tmp_path / "again").load().table.as_dict()
    assert captions == {"10_dog/d.png": ("dog",), "2_set/b.jpg": (), "2_set/猫.png": ("sks", "猫")}


def _exported(dataset: Path, tmp_path: Path) -> Path:
    export_kohya(dataset, tmp_path / "reference", default_repeats=2, name="set")
    return tmp_path / "reference"


def test_kohya_folder_export_round_trips_through_ingestion(dataset: Path, tmp_path: Path) -> None:
    export_kohya(dataset, tmp_path / "out", default_repeats=3)
    ingest([tmp_path / "out"], tmp_path / "again")
    assert _content(tmp_path / "again") == _content(tmp_path / "out")
    assert [(folder.path.name, folder.repeats) for folder in dataset_folders(tmp_path / "again")] == [
        ("10_dog", 10),
        ("3_dataset", 3),
    ]


def test_export_refuses_a_folder_that_is_not_empty(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine", "utf-8")
    with pytest.raises(DatasetError, match="not an empty folder"):
        export_kohya(dataset, tmp_path / "out")
    assert files_under(tmp_path / "out") == ["keep.txt"]


def test_a_failed_export_leaves_nothing_behind(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_copy = shutil.copy2
    calls = {"count": 0}

    def failing(source, destination):
        calls["count"] += 1
        if calls["count"] == 3:
            raise OSError(28, "No space left on device")
        return real_copy(source, destination)

    monkeypatch.setattr(export_module.shutil, "copy2", failing)
    with pytest.raises(DatasetError, match="No space left"):
        export_kohya(dataset, tmp_path / "out")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dataset"]


def test_exporting_an_empty_dataset_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        export_zip(tmp_path / "empty", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_dataset_folders_give_training_the_repeats(dataset: Path) -> None:
    folders = dataset_folders(dataset, default_repeats=4, default_name="mine")
    assert [(folder.path, folder.repeats, folder.class_tokens, folder.image_count) for folder in folders] == [
        (dataset, 4, "mine", 2),
        (dataset / "10_dog", 10, "dog", 1),
    ]


def test_repeat_folder_names_are_checked() -> None:
    assert repeat_folder_name(10, "猫 style") == "10_猫 style"
    for repeats, name in [(0, "a"), (2, "../x"), (3, "")]:
        with pytest.raises(DatasetError):
            repeat_folder_name(repeats, name)


def test_an_export_with_bad_repeats_writes_nothing(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Repeats"):
        export_zip(dataset, tmp_path / "x.zip", default_repeats=0)
    assert not (tmp_path / "x.zip").exists()
