"""Put the fake WebUI on ``sys.path`` and reset its global state between tests."""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

FAKE_ROOT = Path(__file__).resolve().parent / "fake_webui"
REPO = FAKE_ROOT.parent.parent
# The gradio each WebUI ships: A1111 v1.10.1 and reForge 3.41.2, Forge 4.40.0 (the second test venv).
WEBUI_GRADIOS = ("3.41.2", "4.40.0")


def install_fake_webui() -> None:
    # The fake WebUI's data folder (outputs/, models/) goes to a temp folder, never into the source tree.
    # Under pytest, conftest points it into pytest's own temp folder; anywhere else it is removed at exit.
    if "FAKE_WEBUI_DATA" not in os.environ:
        data = tempfile.mkdtemp(prefix="fake-webui-data-")
        atexit.register(shutil.rmtree, data, ignore_errors=True)
        os.environ["FAKE_WEBUI_DATA"] = data
    if str(FAKE_ROOT) not in sys.path:
        sys.path.insert(0, str(FAKE_ROOT))


def reset_fake_webui() -> None:
    """Clear registries and state, as a fresh WebUI start would."""
    install_fake_webui()
    from modules import (
        call_queue,
        extra_networks,
        processing,
        script_callbacks,
        shared,
        shared_options,
        ui_extra_networks,
    )

    script_callbacks.clear_callbacks()
    extra_networks.initialize()
    ui_extra_networks.initialize()
    processing.process_log.clear()
    shared.opts.__dict__["data_labels"].clear()
    shared.opts.__dict__["data"].clear()
    shared.opts.__dict__["_onchange"].clear()
    shared_options.register(shared.opts)
    shared.state.__init__()
    shared.sd_model = None
    shared.cmd_opts.lowvram = shared.cmd_opts.medvram = False
    shared.cmd_opts.api_auth = shared.cmd_opts.gradio_auth = shared.cmd_opts.gradio_auth_path = None
    if call_queue.queue_lock.locked():
        call_queue.queue_lock.release()


def load_script(name: str = "train_tools.py") -> ModuleType:
    """Execute ``scripts/<name>`` the way the WebUI does: not in sys.modules, repo on sys.path."""
    install_fake_webui()
    path = REPO / "scripts" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO))
    return module
