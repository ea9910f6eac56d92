"""Your own presets and settings files: saved and chosen like the built-in presets (REST), and kohya's
sd-scripts / kohya_ss settings files read as ours (the page's side: ``test_ui_presets.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_ext.app import presets
from lora_ext.app.context import Context, Workspace
from lora_ext.errors import ConfigError
from lora_ext.kohya_settings import from_kohya

PREFIX = "/train-tools/v1"


def test_sd_scripts_and_kohya_ss_names_are_read_as_ours() -> None:
    sd_scripts = {
        "network_module": "networks.lora",
        "network_dim": 32,
        "network_alpha": 16,
        "network_args": ["conv_dim=8", "conv_alpha=4", "algo=locon"],
        "learning_rate": 1e-4,
        "text_encoder_lr": 5e-5,
        "max_train_epochs": 12,
        "train_batch_size": 2,
        "resolution": "768,512",
        "save_precision": "float",
        "network_train_unet_only": True,
        "train_data_dir": "/home/someone/data",
        "xformers": True,
    }
    read = from_kohya(sd_scripts)
    assert read.settings == {
        "rank": 32,
        "alpha": 16,
        "unet_lr": 1e-4,
        "text_encoder_lr": 5e-5,
        "epochs": 12,
        "batch_size": 2,
        "resolution": 640,  # the square with 768×512's area, in steps of 64
        "save_dtype": "fp32",
        "network_type": "locon",
        "conv_rank": 8,
        "conv_alpha": 4.0,
        "train_text_encoder": False,
    }
    assert read.not_used == ("train_data_dir", "xformers", "network_args algo=locon")
    gui = from_kohya({"epoch": 3, "LoRA_type": "Standard", "conv_dim": 0, "unet_lr": 2e-4, "learning_rate": 1e-3})
    assert gui.settings == {"epochs": 3, "unet_lr": 2e-4} and gui.not_used == ("LoRA_type",)
    ours = from_kohya({"rank": 4, "conv_alpha": 2.0, "config_version": 1})
    assert ours.settings == {"rank": 4, "conv_alpha": 2.0, "config_version": 1} and ours.not_used == ()


def test_a_settings_file_with_a_bad_value_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"network_dim": "lots"}), "utf-8")
    with pytest.raises(ConfigError, match="setting rank must be a int, not 'lots'"):
        presets.read_settings_file(tmp_path / "bad.json")
    (tmp_path / "notes.txt").write_text("rank = 4", "utf-8")
    with pytest.raises(ConfigError, match="not a settings file"):
        presets.read_settings_file(tmp_path / "notes.txt")


@pytest.fixture
def api(make_standalone_host, tmp_path: Path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from PIL import Image

    from lora_ext.api import build_router

    host = make_standalone_host("sd1")
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"))
    ctx.store.create_project("cat")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(ctx.version("cat", "v1").dataset / "a.png")
    (ctx.version("cat", "v1").dataset / "a.txt").write_text("red", "utf-8")
    app = FastAPI()
    app.include_router(build_router(lambda: host, {}, context=ctx))
    return TestClient(app), ctx


def test_a_preset_of_yours_is_saved_listed_and_trains_like_a_built_in_one(api) -> None:
    client, ctx = api
    body = {"name": "私の設定", "settings": {"rank": 3, "alpha": 3.0, "resolution": 64, "min_bucket_reso": 64}}
    saved = client.post(f"{PREFIX}/presets", json={**body, "settings": {**body["settings"], "output_name": "x"}})
    assert saved.status_code == 200 and Path(saved.json()["path"]).parent == presets.presets_dir(ctx)
    assert 'output_name = ""' in Path(saved.json()["path"]).read_text("utf-8")  # a preset serves many versions
    assert client.get(f"{PREFIX}/presets").json()["yours"] == ["私の設定"]
    again = client.post(f"{PREFIX}/presets", json=body)
    assert again.status_code == 400 and "exists already" in again.json()["detail"]
    assert client.post(f"{PREFIX}/presets", json={**body, "replace": True}).status_code == 200
    built_in = client.post(f"{PREFIX}/presets", json={"name": "quick"})
    assert built_in.status_code == 400 and "built-in preset" in built_in.json()["detail"]

    started = client.post(f"{PREFIX}/projects/cat/versions/v1/train", json={"preset": "私の設定", "max_steps": 1})
    assert started.status_code == 200, started.text
    assert started.json()["settings"]["rank"] == 3 and started.json()["settings"]["max_steps"] == 1
    ctx.jobs.current.finished_event.wait(300)
    assert ctx.jobs.current.error is None
