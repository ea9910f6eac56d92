"""Session-wide tiny real models. Factories hand out deep copies, so a test that
patches or trains a model never leaks into another test."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
# Nothing may reach the hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def train_tools_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point the standalone data folder at a temp folder for the whole run."""
    home = tmp_path_factory.mktemp("train-tools-home")
    os.environ["TRAIN_TOOLS_HOME"] = str(home)
    return home


@pytest.fixture(scope="session", autouse=True)
def fake_webui_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake WebUI's data folder (outputs/, models/) for the whole run, inside pytest's temp folder."""
    data = tmp_path_factory.mktemp("fake-webui-data")
    os.environ["FAKE_WEBUI_DATA"] = str(data)
    return data


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_ext.demo import write_tiny_clip_tokenizer

    return write_tiny_clip_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def _ldm_models(tokenizer_dir: Path) -> dict:
    return {}


@pytest.fixture
def make_ldm_model(_ldm_models: dict, tokenizer_dir: Path):
    """``make_ldm_model("sd1"|"sd2"|"sdxl", prediction="eps"|"v")`` → a fresh TinySdModel copy."""
    import torch
    from tiny_models import TinySdModel

    def make(layout: str = "sd1", prediction: str = "eps"):
        key = (layout, prediction)
        if key not in _ldm_models:
            torch.manual_seed(1234)
            _ldm_models[key] = TinySdModel(layout, tokenizer_dir, prediction=prediction).eval()
        return copy.deepcopy(_ldm_models[key])

    return make


@pytest.fixture
def make_ldm_host(make_ldm_model, tmp_path: Path):
    """``make_ldm_host(layout, prediction)`` → an LdmHost over a fresh tiny model; Lora dir in tmp."""
    from lora_ext.hosts.ldm import LdmHost

    def make(layout: str = "sd1", prediction: str = "eps"):
        return LdmHost(make_ldm_model(layout, prediction), lora_dir=tmp_path / "Lora", name=f"tiny-{layout}")

    return make


@pytest.fixture(scope="session")
def _pipelines() -> dict:
    return {}


@pytest.fixture
def make_pipeline(_pipelines: dict):
    """``make_pipeline("sd1"|"sdxl", prediction)`` → a fresh tiny diffusers pipeline copy."""
    from lora_ext.demo import build_tiny_pipeline

    def make(family: str = "sd1", prediction: str = "eps"):
        key = (family, prediction)
        if key not in _pipelines:
            _pipelines[key] = build_tiny_pipeline(family, prediction)
            _pipelines[key].set_progress_bar_config(disable=True)
        return copy.deepcopy(_pipelines[key])

    return make


@pytest.fixture
def make_standalone_host(make_pipeline, tmp_path: Path):
    from lora_ext.hosts.standalone import StandaloneHost

    def make(family: str = "sd1", prediction: str = "eps"):
        return StandaloneHost(
            make_pipeline(family, prediction), name=f"tiny-diffusers-{family}", lora_dir=tmp_path / "Lora"
        )

    return make


@pytest.fixture
def make_checkpoint(make_ldm_model, tmp_path: Path):
    """``make_checkpoint(layout, dtype=torch.float16)`` → (path, state dict) of an A1111-layout single file."""
    import torch
    from safetensors.torch import save_file
    from tiny_models import checkpoint_state_dict

    def make(layout: str = "sd1", dtype=None):
        dtype = dtype or torch.float16
        state = {
            k: (v.to(dtype) if v.is_floating_point() and k != "alphas_cumprod" else v)
            for k, v in checkpoint_state_dict(make_ldm_model(layout)).items()
        }
        path = tmp_path / f"tiny-{layout}.safetensors"
        save_file(state, str(path))
        return path, state

    return make
