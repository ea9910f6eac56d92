"""Export is reachable from the REST API and the CLI (the page: ``test_ui_export.py``): kohya ``N_name`` folders
or a zip of them, captions included, always into a new place."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from lora_ext import cli
from lora_ext.app.context import Context, Workspace

PREFIX = "/train-tools/v1"
VERSION = f"{PREFIX}/projects/猫/versions/v1"


def _images(folder: Path) -> None:
    """``a.png`` with a caption at the top level, ``10_cat/b.png`` without one."""
    (folder / "10_cat").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / "a.png")
    (folder / "a.txt").write_text("red, 猫", encoding="utf-8")
    Image.new("RGB", (8, 8), (0, 0, 200)).save(folder / "10_cat" / "b.png")


@pytest.fixture
def api(tmp_path: Path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import build_router

    ctx = Context(lambda: None, Workspace(tmp_path / "projects", tmp_path / "tagger"))
    ctx.store.create_project("猫")
    _images(ctx.version("猫", "v1").dataset)
    app = FastAPI()
    app.include_router(build_router(lambda: None, {}, context=ctx))
    return TestClient(app), ctx


def test_the_rest_api_exports_a_zip_to_download_with_the_captions(api) -> None:
    client, ctx = api
    answer = client.post(f"{VERSION}/export", json={"repeats": 3}).json()
    assert answer["folders"] == {"10_cat": 10, "3_猫": 3} and (answer["images"], answer["captions"]) == (2, 1)
    exports = ctx.version("猫", "v1").exports
    assert Path(answer["path"]).parent == exports and answer["path"].endswith(".zip")
    download = client.get(answer["download"])
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert sorted(archive.namelist()) == ["10_cat/b.png", "3_猫/a.png", "3_猫/a.txt"]
        assert archive.read("3_猫/a.txt").decode("utf-8") == "red, 猫"
    second = client.post(f"{VERSION}/export", json={"repeats": 3}).json()
    assert second["path"] != answer["path"] and Path(answer["path"]).is_file()  # a new file, never over one


def test_a_folder_export_takes_the_trigger_word_and_repeats_of_the_version_s_settings(api) -> None:
    from lora_ext.config import TrainConfig, save_config

    client, ctx = api
    paths = ctx.version("猫", "v1")
    save_config(TrainConfig(default_repeats=5, trigger_word="sks"), paths.config / "train.toml")
    answer = client.post(f"{VERSION}/export", json={"format": "folder"}).json()
    folder = Path(answer["path"])
    assert folder.parent == paths.exports and "download" not in answer
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.*")) == [
        "10_cat/b.png",
        "5_sks/a.png",
        "5_sks/a.txt",
    ]


def test_the_rest_api_refuses_a_path_out_of_the_exports_folder_and_a_bad_format(api, tmp_path: Path) -> None:
    client, ctx = api
    (tmp_path / "secret.zip").write_bytes(b"PK")
    for name in ("..%2F..%2F..%2Fsecret.zip", "nothing.zip", "a.txt"):
        assert client.get(f"{VERSION}/exports/{name}").status_code == 404
    refused = client.post(f"{VERSION}/export", json={"format": "rar"})
    assert refused.status_code == 400 and refused.json()["detail"] == "Unknown export format rar. (use zip or folder)"
    assert not ctx.version("猫", "v1").exports.exists()


def test_the_cli_exports_a_folder_or_a_project_version(tmp_path: Path, train_tools_home: Path, capsys) -> None:
    source = tmp_path / "mychar"
    _images(source)
    assert cli.main(["export", "--dataset", str(source), "--out", str(tmp_path / "kohya")]) == 0
    assert "Exported 2 images and 1 captions" in capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path / "kohya").as_posix() for p in (tmp_path / "kohya").rglob("*.png")) == [
        "10_cat/b.png",
        "1_mychar/a.png",
    ]
    assert cli.main(["export", "--dataset", str(source), "--out", str(tmp_path / "kohya")]) == 2  # not over it
    assert "already exists" in capsys.readouterr().err

    from lora_ext import paths

    ctx = Context(lambda: None, Workspace(paths.projects_dir(), tmp_path / "tagger"))
    ctx.store.create_project("犬")
    _images(ctx.version("犬", "v1").dataset)
    assert cli.main(["export", "--project", "犬", "--repeats", "2"]) == 0
    (made,) = ctx.version("犬", "v1").exports.glob("*.zip")
    with zipfile.ZipFile(made) as archive:
        assert "2_犬/a.txt" in archive.namelist()
    assert cli.main(["export", "--dataset", str(source)]) == 2
    assert "--out is needed" in capsys.readouterr().err
