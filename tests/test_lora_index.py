"""One LoRA index: ``<lora:name>`` and the REST API's ``GET …/loras/{name}`` find a file by the same rule."""

from __future__ import annotations

from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lora_files import adapter_tensors, spell, write_lora

from lora_ext.api import build_router
from lora_ext.loading.index import LoraIndex


def _write(path: Path, **metadata: str) -> None:
    state = spell("lora_unet_input_blocks_1_1_proj_in", adapter_tensors("lora", torch.zeros(32, 32, 1, 1)))
    write_lora(path, state, metadata)


def test_a_name_is_found_by_path_stem_and_alias_exactly_then_ignoring_case(tmp_path: Path) -> None:
    _write(tmp_path / "styles" / "Ink_v2.safetensors", ss_output_name="InkStyle")
    _write(tmp_path / "MyLora.safetensors")
    _write(tmp_path / "mylora.safetensors")  # an exact match wins over a case-insensitive one
    index = LoraIndex([tmp_path])
    assert index.find("mylora").path.name == "mylora.safetensors"
    assert index.find("MyLora").path.name == "MyLora.safetensors"
    for name in ("Ink_v2", "ink_v2", "InkStyle", "inkstyle", "styles/Ink_v2", "styles\\ink_v2"):
        assert index.find(name).path.name == "Ink_v2.safetensors", name
    assert index.find("styles/MyLora") is None
    _write(tmp_path / "late.safetensors")  # added after the first scan: found by rescanning
    assert index.find("LATE").name == "late"


def test_the_rest_api_finds_a_lora_as_the_prompt_token_does(tmp_path: Path) -> None:
    lora_dir = tmp_path / "Lora"
    _write(lora_dir / "MyLora.safetensors")

    class Host:  # the routes read only the LoRA folder here
        pass

    host = Host()
    host.lora_dir = lora_dir
    app = FastAPI()
    app.include_router(build_router(lambda: host, {}))
    client = TestClient(app)
    for name in ("MyLora", "mylora", "MYLORA"):
        answer = client.get(f"/train-tools/v1/loras/{name}")
        assert answer.status_code == 200 and answer.json()["modules"] == 1, name
    missing = client.get("/train-tools/v1/loras/other")
    assert missing.status_code == 404 and str(lora_dir) in missing.json()["detail"]
    assert [entry["name"] for entry in client.get("/train-tools/v1/loras").json()] == ["MyLora"]
