"""Installs what Train Tools needs inside the WebUI's venv, and nothing else.

A1111 runs this file at every launch and right after "Install from URL". It is
idempotent: it asks ``launch.is_installed`` first and installs only what is
missing. It never installs or upgrades torch, torchvision, gradio or any other
package the WebUI pins, and it never installs a second onnxruntime flavour next
to one that is present (they share one import name and break each other).
"""

from __future__ import annotations

import sys

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


def plan(is_installed, has_cuda) -> list[tuple[str, str]]:
    """The (pip requirement, description) pairs to install; empty when everything is there."""
    actions = [
        (requirement, name) for name, requirement in REQUIRED if name not in WEBUI_OWNED and not is_installed(name)
    ]
    if not any(is_installed(flavour) for flavour in ONNXRUNTIME_FLAVOURS):
        flavour = "onnxruntime-gpu" if has_cuda() else "onnxruntime"
        actions.append((f"{flavour}>=1.17", f"{flavour} for the Train Tools tagger"))
    return actions


def main() -> None:
    actions = plan(launch.is_installed, torch_has_cuda)
    for requirement, description in actions:
        launch.run_pip(f'install "{requirement}"', description)
    if not actions:
        print("Train Tools: requirements already installed")


if __name__ == "__main__":
    main()
