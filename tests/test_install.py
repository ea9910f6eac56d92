"""install.py's decisions, against the fake ``launch`` module."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from webui import FAKE_ROOT, REPO, install_fake_webui


@pytest.fixture
def install(monkeypatch):
    install_fake_webui()
    import launch

    launch.pip_calls.clear()
    launch.installed.clear()
    spec = importlib.util.spec_from_file_location("train_tools_install", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, launch


def _only(installed: set[str]):
    return lambda name: name in installed


def test_installs_cpu_onnxruntime_when_none_present_and_torch_is_cpu(install):
    module, _ = install
    actions = module.plan(_only({"tomli"}), lambda: False)
    assert [req for req, _ in actions] == ["onnxruntime>=1.17"]


def test_prefers_onnxruntime_gpu_when_torch_has_cuda(install):
    module, _ = install
    actions = module.plan(_only({"tomli"}), lambda: True)
    assert [req for req, _ in actions] == ["onnxruntime-gpu>=1.17"]


@pytest.mark.parametrize("flavour", ["onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon", "onnxruntime"])
def test_never_installs_onnxruntime_next_to_another_flavour(install, flavour):
    module, _ = install
    assert module.plan(_only({"tomli", flavour}), lambda: True) == []


def test_never_touches_webui_owned_packages(install, monkeypatch):
    module, _ = install
    monkeypatch.setattr(module, "REQUIRED", (("torch", "torch==9"), ("gradio", "gradio==4"), ("tomli", "tomli>=2")))
    requirements = [req for req, _ in module.plan(_only(set()), lambda: False)]
    assert requirements == ["tomli>=2", "onnxruntime>=1.17"]


def test_main_is_idempotent_and_prints_one_line_per_action(install, capsys):
    module, launch = install
    launch.installed.update({"onnxruntime", "tomli"})
    module.main()
    assert launch.pip_calls == []
    assert capsys.readouterr().out.strip().count("\n") == 0


def test_main_installs_missing_onnxruntime_through_run_pip(install, monkeypatch, capsys):
    module, launch = install
    launch.installed.add("tomli")
    monkeypatch.setattr(module, "plan", lambda is_installed, has_cuda: [("onnxruntime>=1.17", "onnxruntime")])
    module.main()
    assert launch.pip_calls == [('install "onnxruntime>=1.17"', "onnxruntime")]
    assert capsys.readouterr().out.strip() == "Installing onnxruntime"


def test_install_py_runs_as_the_webui_runs_it():
    """A subprocess with the WebUI root on PYTHONPATH, as ``run_extension_installer`` does."""
    env = {"PYTHONPATH": str(FAKE_ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(REPO / "install.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path(FAKE_ROOT)),
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) >= 1
    assert "Traceback" not in result.stderr
