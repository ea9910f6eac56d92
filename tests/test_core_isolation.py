"""The core never imports the WebUI: every lora_ext module imports where ``modules`` does not exist."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lora_ext

SCRIPT = r"""
import importlib, importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "modules" or name.startswith("modules.") or name == "launch":
            raise ImportError(f"core imported the WebUI: {name}")
        return None

sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
print("ok", len(sys.argv) - 1)
"""


def _core_modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(lora_ext.__path__, "lora_ext.")]
    return ["lora_ext", *(name for name in names if name != "lora_ext.__main__")]


def test_every_core_module_imports_without_the_webui():
    names = _core_modules()
    assert "lora_ext.hosts.a1111" in names and "lora_ext.cli" in names
    result = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {len(names)}"


def test_no_module_in_the_package_shadows_the_builtin_lora_extension():
    builtin = {
        "network",
        "networks",
        "lora",
        "lora_patches",
        "lora_logger",
        "lyco_helpers",
        "extra_networks_lora",
        "ui_extra_networks_lora",
        "ui_edit_user_metadata",
    }
    top_level = {info.name for info in pkgutil.iter_modules([str(lora_ext.__path__[0]).rsplit("/", 1)[0]])}
    assert not (top_level & builtin)
    assert not any(name.startswith("network_") for name in top_level)
