"""Fake ``launch`` module for install.py tests: records pip calls instead of running them."""

import importlib.metadata
import importlib.util
import sys
from types import SimpleNamespace

args = SimpleNamespace(skip_install="--skip-install" in sys.argv)
installed: set[str] = set()  # names a test declares installed, on top of the real environment
pip_calls: list[tuple[str, str]] = []
python = sys.executable
index_url = ""


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
    print(f"Installing {desc}")
    pip_calls.append((command, desc or ""))
    return ""
