"""Installs what Train Tools needs inside the WebUI's venv, and nothing else.

A1111 runs this file at every launch and right after "Install from URL". It is
idempotent: it asks ``launch.is_installed`` first and installs only what is
missing. It never installs a second onnxruntime flavour next to one that is
present (they share one import name and break each other), and it never changes
an installed package: not torch or gradio, and not what pip would pull in
either. Every pip call gets a constraints file (``-c``) that holds every
installed distribution at its installed version, so pip picks versions of the
new packages that accept them. (Without it, pip picks the newest onnxruntime,
which requires protobuf>=4.25.8, and upgrades A1111's pinned protobuf 3.20.0;
the next launch reinstalls the pin, and offline it aborts.)
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tempfile
from pathlib import Path

import launch

# Packages the WebUI ships and pins (requirements_versions.txt): never touched here.
WEBUI_OWNED = frozenset(
    {
        "torch",
        "torchvision",
        "gradio",
        "fastapi",
        "transformers",
        "safetensors",
        "numpy",
        "pillow",
        "accelerate",
        "einops",
        "omegaconf",
        "httpx",
        "protobuf",
        "open-clip-torch",
        "pytorch_lightning",
        "kornia",
        "huggingface_hub",
    }
)

# (distribution name to check, pip requirement) for what the WebUI does not ship.
# The WebUI runs Python 3.10, which has no tomllib for reading TOML training configs.
REQUIRED: tuple[tuple[str, str], ...] = (("tomli", "tomli>=2.0"),) if sys.version_info < (3, 11) else ()

ONNXRUNTIME_FLAVOURS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-silicon",
    "onnxruntime-openvino",
    "onnxruntime-rocm",
)


def torch_has_cuda() -> bool:
    """Whether the installed torch is a CUDA build (no GPU query; cheap and safe at launch)."""
    try:
        import torch
    except ImportError:
        return False
    return getattr(torch.version, "cuda", None) is not None


# onnxruntime (CPU and -gpu) 1.27+ requires protobuf>=4.25.8; 1.17.3 to 1.26 accept any protobuf and run
# with A1111's 3.20.0. The constraints file alone would keep protobuf too, but only after pip downloaded
# every newer wheel (hundreds of MB for -gpu) to find out; asking for a version that fits skips that.
ONNXRUNTIME_ANY_PROTOBUF_BELOW = "1.27"
PROTOBUF_NEWER_ONNXRUNTIME_NEEDS = (4, 25, 8)


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version ("3.20.0" -> (3, 20, 0)); enough to compare releases."""
    return tuple(int(part) for part in re.findall(r"\d+", re.match(r"[\d.]*", version).group(0)))


def onnxruntime_requirement(flavour: str, version_of=installed_version) -> str:
    """The pip requirement for ``flavour``: one whose protobuf requirement the installed protobuf meets."""
    protobuf = version_of("protobuf")
    if protobuf is not None and _release(protobuf) < PROTOBUF_NEWER_ONNXRUNTIME_NEEDS:
        return f"{flavour}>=1.17,<{ONNXRUNTIME_ANY_PROTOBUF_BELOW}"
    return f"{flavour}>=1.17"


def plan(is_installed, has_cuda, version_of=installed_version) -> list[tuple[str, str]]:
    """The (pip requirement, description) pairs to install; empty when everything is there."""
    actions = [
        (requirement, name) for name, requirement in REQUIRED if name not in WEBUI_OWNED and not is_installed(name)
    ]
    if not any(is_installed(flavour) for flavour in ONNXRUNTIME_FLAVOURS):
        flavour = "onnxruntime-gpu" if has_cuda() else "onnxruntime"
        actions.append((onnxruntime_requirement(flavour, version_of), f"{flavour} for the Train Tools tagger"))
    return actions


# A PEP 440 version (as pip accepts it in a constraint); anything else is left out of the file.
_VERSION = re.compile(
    r"^v?(\d+!)?\d+(\.\d+)*([-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?"
    r"(-\d+|[-_.]?(post|rev|r)[-_.]?\d*)?([-_.]?dev[-_.]?\d*)?(\+[a-z0-9]+([-_.][a-z0-9]+)*)?$",
    re.IGNORECASE,
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def installed_constraints(exclude: frozenset[str] = frozenset()) -> str:
    """A pip constraints file pinning every installed distribution (but ``exclude``) at its installed version."""
    pins: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():  # sys.path order: the first one is the one in use
        name, version = distribution.metadata["Name"], distribution.version
        if not name or not version or not _VERSION.match(version):
            continue
        key = _canonical(name)
        if key not in exclude and key not in pins:
            pins[key] = f"{name}=={version}"
    return "".join(f"{pin}\n" for _key, pin in sorted(pins.items()))


def main() -> None:
    actions = plan(launch.is_installed, torch_has_cuda)
    if not actions:
        print("Train Tools: requirements already installed")
        return
    with tempfile.TemporaryDirectory(prefix="train-tools-install-") as folder:
        constraints = Path(folder) / "constraints.txt"
        new = frozenset(_requirement_name(requirement) for requirement, _ in actions)
        constraints.write_text(installed_constraints(new), encoding="utf-8")
        for requirement, description in actions:
            launch.run_pip(f'install "{requirement}" -c "{constraints}"', description)


if __name__ == "__main__":
    main()
