"""The standalone app starts on loopback with the demo model and serves the UI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

from webui import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_command_serves_the_demo_model_on_loopback(train_tools_home):
    port = _free_port()
    env = {**os.environ, "TRAIN_TOOLS_HOME": str(train_tools_home), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_ext", "ui", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 240
        config = None
        while time.time() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = response.read().decode("utf-8")
                    break
            except OSError:
                time.sleep(1)
        assert config is not None, process.stdout.read() if process.poll() is not None else "server did not answer"
        assert "demo" in config and "sd1" in config
        # Bound to loopback only: nothing listens on the machine's other addresses.
        listeners = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listeners.strip() and all("127.0.0.1:" in line for line in listeners.strip().splitlines())
    finally:
        process.terminate()
        process.wait(timeout=30)
