"""Train Tools' test probe (NOT part of Train Tools): read-only routes, plus one fault switch, inside a real WebUI.

Installed only for the opt-in real-WebUI tests (``tests/real_webui/README.md``: link this folder into the WebUI's
``extensions/``). Routes, under ``/train-tools-probe``:

- ``GET /model_hash?values_only=0|1`` — sha256 over every parameter and buffer of the loaded model's torch modules
  (A1111 / reForge: ``shared.sd_model``; Forge / Neo: ``forge_objects.{unet,clip,vae}``): name, dtype, shape, bytes,
  and unless ``values_only`` also ``requires_grad`` and each module's ``training`` flag.
- ``GET /contract`` — runs ``tests/contracts/<webui>.py`` (loaded by path from this checkout) and answers each
  check's outcome.
- ``POST /fault?on=1|0&tag=…`` — makes our loader's ``NetworkLoader.apply`` and ``patch_list`` raise
  ``RuntimeError("train-tools-probe fault <tag>")`` (a simulated bug; a new tag is a new cause to log), to show
  that a failing takeover hands the tokens to the WebUI's built-in.
- ``GET /where`` — the WebUI's Lora folder, data folder and which WebUI ``lora_ext`` detected.
"""

import hashlib
import importlib.util
import sys
from pathlib import Path

from modules import script_callbacks, shared

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"  # tests/real_webui/probe/scripts → tests/contracts
PACKAGE = "train_tools_probe_contracts"
_saved = {}


def _torch_modules(model):
    objects = getattr(model, "forge_objects", None)
    if objects is None or hasattr(model, "model"):  # A1111 and reForge: the ldm model itself
        return {"sd_model": model} if hasattr(model, "named_parameters") else {}
    return {"unet": objects.unet.model, "clip": objects.clip.cond_stage_model, "vae": objects.vae.first_stage_model}


def model_hash(values_only: bool) -> dict:
    import torch

    digest = hashlib.sha256()
    count = 0
    with torch.no_grad():
        for part, module in _torch_modules(shared.sd_model).items():
            for kind, items in (("p", module.named_parameters()), ("b", module.named_buffers())):
                for name, tensor in items:
                    meta = f"{part}:{kind}:{name}:{tensor.dtype}:{tuple(tensor.shape)}"
                    digest.update((meta if values_only else f"{meta}:{tensor.requires_grad}").encode())
                    data = tensor.detach().to("cpu", copy=True).contiguous().reshape(-1).view(torch.uint8)
                    digest.update(data.numpy().tobytes())
                    count += 1
            if not values_only:
                digest.update("".join("1" if m.training else "0" for m in module.modules()).encode())
    return {"sha256": digest.hexdigest(), "tensors": count, "values_only": values_only}


def _contracts():
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, CONTRACTS / "__init__.py", submodule_search_locations=[str(CONTRACTS)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return sys.modules[PACKAGE]


def _webui() -> str:
    from lora_ext.hosts.detect import detect_webui

    return detect_webui().value


def contract() -> dict:
    package = _contracts()
    module = importlib.import_module(f"{PACKAGE}.{_webui()}")
    return {"webui": _webui(), "results": package.run(module.CHECKS)}


def fault(on: bool, tag: str) -> dict:
    from lora_ext.loading.loader import NetworkLoader

    def broken(*_args, **_kwargs):
        raise RuntimeError(f"train-tools-probe fault {tag}")

    for name in ("apply", "patch_list"):
        if on and name not in _saved:
            _saved[name] = getattr(NetworkLoader, name)
            setattr(NetworkLoader, name, broken)
        elif not on and name in _saved:
            setattr(NetworkLoader, name, _saved.pop(name))
    return {"fault": bool(_saved)}


def where() -> dict:
    from modules import paths

    lora_dir = getattr(shared.cmd_opts, "lora_dir", None) or str(Path(paths.models_path) / "Lora")
    return {"lora_dir": str(lora_dir), "data_path": str(paths.data_path), "webui": _webui()}


def on_app_started(_demo, app):
    app.add_api_route("/train-tools-probe/model_hash", lambda values_only="0": model_hash(bool(int(values_only))))
    app.add_api_route("/train-tools-probe/contract", contract)
    app.add_api_route("/train-tools-probe/fault", lambda on="1", tag="": fault(bool(int(on)), tag), methods=["POST"])
    app.add_api_route("/train-tools-probe/where", where)


script_callbacks.on_app_started(on_app_started)
