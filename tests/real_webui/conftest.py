"""Opt-in tests against a running real WebUI with Train Tools installed (never run by CI).

Skipped unless ``TRAIN_TOOLS_REAL_WEBUI`` names the WebUI (``http://127.0.0.1:7861``). See ``README.md`` here for
what the WebUI needs (the probe extension, an SD1 checkpoint) and the other variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from real_webui.client import WebUIClient

URL = os.environ.get("TRAIN_TOOLS_REAL_WEBUI")


def pytest_collection_modifyitems(config, items):
    if URL:
        return
    skip = pytest.mark.skip(reason="set TRAIN_TOOLS_REAL_WEBUI to a running WebUI with Train Tools to run these")
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).parent == here:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def webui() -> Iterator[WebUIClient]:
    """The WebUI; the projects the tests made go to its trash folder at the end."""
    login = os.environ.get("TRAIN_TOOLS_REAL_WEBUI_LOGIN")
    client = WebUIClient(URL, login=tuple(login.split(":", 1)) if login else None)
    client.wait_until_up()
    client.options(train_tools_lora_loader="Train Tools")
    client.txt2img("warm up")  # Forge and Neo load the checkpoint lazily, at the first generation
    yield client
    left = client.remove_projects()
    assert not left, f"still in the WebUI's projects (a job works on them?): {left}"


@pytest.fixture(scope="session")
def where(webui) -> dict:
    return webui.get("/train-tools-probe/where")


@pytest.fixture(scope="session")
def lora_dir(where) -> Path:
    return Path(where["lora_dir"])


@pytest.fixture
def log_since():
    """Returns a function giving the WebUI's console output written since the test started (``…_LOG``)."""
    path = os.environ.get("TRAIN_TOOLS_REAL_WEBUI_LOG")
    if not path:
        pytest.skip("set TRAIN_TOOLS_REAL_WEBUI_LOG to the WebUI's console log to check it")
    start = Path(path).stat().st_size
    return lambda: Path(path).read_bytes()[start:].decode("utf-8", errors="replace")
