"""install.py's decisions, against the fake ``launch`` module."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
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
    actions = module.plan(_only({"tomli"}), lambda: False, {"protobuf": "5.29.0"}.get)
    assert [req for req, _ in actions] == ["onnxruntime>=1.17"]


def test_prefers_onnxruntime_gpu_when_torch_has_cuda(install):
    module, _ = install
    actions = module.plan(_only({"tomli"}), lambda: True, {"protobuf": "3.20.0"}.get)
    assert [req for req, _ in actions] == ["onnxruntime-gpu>=1.17,<1.27"]


@pytest.mark.parametrize(
    ("protobuf", "expected"),
    [
        ("3.20.0", "onnxruntime>=1.17,<1.27"),  # A1111 v1.10.1's pin: the newest onnxruntime that accepts it
        ("4.25.7", "onnxruntime>=1.17,<1.27"),
        ("4.25.8", "onnxruntime>=1.17"),
        ("7.36.2", "onnxruntime>=1.17"),
        (None, "onnxruntime>=1.17"),
    ],
)
def test_asks_for_an_onnxruntime_that_accepts_the_installed_protobuf(install, protobuf, expected):
    module, _ = install
    versions = {"protobuf": protobuf}
    actions = module.plan(_only({"tomli"}), lambda: False, versions.get)
    assert [req for req, _ in actions] == [expected]


@pytest.mark.parametrize("flavour", ["onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon", "onnxruntime"])
def test_never_installs_onnxruntime_next_to_another_flavour(install, flavour):
    module, _ = install
    assert module.plan(_only({"tomli", flavour}), lambda: True) == []


def test_never_touches_webui_owned_packages(install, monkeypatch):
    module, _ = install
    monkeypatch.setattr(module, "REQUIRED", (("torch", "torch==9"), ("gradio", "gradio==4"), ("tomli", "tomli>=2")))
    requirements = [req for req, _ in module.plan(_only(set()), lambda: False, {}.get)]
    assert requirements == ["tomli>=2", "onnxruntime>=1.17"]


def test_main_is_idempotent_and_prints_one_line_per_action(install, capsys):
    module, launch = install
    launch.installed.update({"onnxruntime", "tomli"})
    module.main()
    assert launch.pip_calls == []
    assert capsys.readouterr().out.strip().count("\n") == 0


def _record_constraints(launch, monkeypatch) -> list[str]:
    """Wrap the fake ``run_pip`` to keep the text of each call's ``-c`` file (install.py removes it after)."""
    texts: list[str] = []
    run_pip = launch.run_pip

    def recording(command: str, desc: str | None = None, live: bool = False) -> str:
        match = re.search(r'-c "([^"]+)"', command)
        texts.append(Path(match.group(1)).read_text("utf-8") if match else "")
        return run_pip(command, desc, live)

    monkeypatch.setattr(launch, "run_pip", recording)
    return texts


def test_main_installs_missing_onnxruntime_through_run_pip(install, monkeypatch, capsys):
    module, launch = install
    launch.installed.add("tomli")
    monkeypatch.setattr(module, "plan", lambda *args: [("onnxruntime>=1.17", "onnxruntime")])
    _record_constraints(launch, monkeypatch)
    module.main()
    [(command, description)] = launch.pip_calls
    assert (
        re.fullmatch(r'install "onnxruntime>=1\.17" -c "[^"]+constraints\.txt"', command)
        and description == "onnxruntime"
    )
    assert launch.pip_command_lines == [f'"{sys.executable}" -m pip {command} --prefer-binary']
    assert capsys.readouterr().out.strip() == "Installing onnxruntime"


def test_every_pip_call_keeps_every_installed_package_at_its_installed_version(install, monkeypatch):
    """What pip pulls in must not move the WebUI's pins (protobuf 3.20.0 under onnxruntime, say)."""
    module, launch = install
    monkeypatch.setattr(module, "plan", lambda *args: [("tomli>=2.0", "tomli"), ("onnxruntime>=1.17", "onnxruntime")])
    constraints = _record_constraints(launch, monkeypatch)
    module.main()
    assert len(constraints) == len(launch.pip_calls) == 2
    installed = {
        dist.metadata["Name"].lower().replace("_", "-"): dist.version for dist in importlib.metadata.distributions()
    }
    for text in constraints:
        pins = dict(line.lower().replace("_", "-").split("==") for line in text.splitlines())
        for name in ("protobuf", "torch", "gradio", "numpy", "safetensors", "pillow"):
            assert pins[name] == installed[name].lower(), name
        assert "onnxruntime" not in pins and "tomli" not in pins  # what this call installs is not held back
        assert set(pins) == set(installed) - {"onnxruntime", "tomli"}
    assert not Path(re.search(r'-c "([^"]+)"', launch.pip_calls[0][0]).group(1)).exists()  # cleaned up


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


@pytest.fixture(scope="session")
def webui_like_venv(tmp_path_factory) -> Path:
    """A fresh venv holding A1111 v1.10.1's pinned protobuf 3.20.0 (from PyPI), made once per run."""
    venv = tmp_path_factory.mktemp("webui-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "protobuf==3.20.0"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:  # a failure, not a skip: this check is only worth something when it runs
        pytest.fail(f"cannot install protobuf==3.20.0 from PyPI into a fresh venv: {result.stderr[-1500:]}")
    return python


@pytest.mark.pypi
def test_a_real_pip_dry_run_of_install_py_changes_no_installed_package(webui_like_venv, tmp_path):
    """install.py in a WebUI-like venv, its pip commands run with --dry-run --report: protobuf stays 3.20.0."""
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(FAKE_ROOT), FAKE_LAUNCH_PIP_DRY_RUN=str(reports))
    result = subprocess.run(
        [str(webui_like_venv), str(REPO / "install.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(FAKE_ROOT),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = subprocess.run(
        [str(webui_like_venv), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    before = {item["name"].lower(): item["version"] for item in json.loads(installed.stdout)}
    assert before["protobuf"] == "3.20.0"
    [report] = [json.loads(path.read_text("utf-8")) for path in sorted(reports.glob("report-*.json"))]
    planned = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    assert "onnxruntime" in planned
    changed = {name: (before[name], version) for name, version in planned.items() if name in before}
    assert changed == {}, f"pip would change installed packages: {changed}"
