"""Fake ``launch`` module for install.py tests: records pip calls instead of running them.

``run_pip`` builds the command line exactly as A1111's does. With ``FAKE_LAUNCH_PIP_DRY_RUN``
set to a folder it runs that command for real with ``--dry-run --report <folder>/report-N.json``
added, so a test sees what pip would install without changing anything.
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from types import SimpleNamespace

args = SimpleNamespace(skip_install="--skip-install" in sys.argv)
installed: set[str] = set()  # names a test declares installed, on top of the real environment
pip_calls: list[tuple[str, str]] = []
pip_command_lines: list[str] = []  # the full command lines, as A1111's run_pip runs them
python = sys.executable
index_url = os.environ.get("INDEX_URL", "")


def is_installed(package: str) -> bool:
    if package in installed:
        return True
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        return False


def run_pip(command: str, desc: str | None = None, live: bool = False) -> str:
    if args.skip_install:
        return ""
    index_url_line = f" --index-url {index_url}" if index_url != "" else ""
    command_line = f'"{python}" -m pip {command} --prefer-binary{index_url_line}'
    print(f"Installing {desc}")
    pip_calls.append((command, desc or ""))
    pip_command_lines.append(command_line)
    report_folder = os.environ.get("FAKE_LAUNCH_PIP_DRY_RUN")
    if report_folder:
        report = os.path.join(report_folder, f"report-{len(pip_command_lines)}.json")
        # shell=True, as A1111's launch_utils.run runs it
        result = subprocess.run(
            f'{command_line} --dry-run --report "{report}"', shell=True, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"Couldn't install {desc}.\nstdout: {result.stdout}\nstderr: {result.stderr}")
    return ""
