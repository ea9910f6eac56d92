"""The Host seam is declared: every host derives from ``Host``, and the core reaches hosts only through it."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import lora_ext
import lora_ext.hosts
from lora_ext.host import Host

ROOT = Path(lora_ext.__file__).resolve().parent
MODEL_MEMBERS = {
    "info",
    "device",
    "dtype",
    "alphas_cumprod",
    "lora_dir",
    "parts",
    "encode_images",
    "encode_prompts",
    "predict",
    "generate",
}
PROBES = {"getattr", "hasattr", "setattr", "delattr"}
HOST_FACTORIES = {"host_provider", "host_factory", "_host_factory"}


def _host_classes() -> list[type]:
    """Every class defined in ``lora_ext/hosts/`` whose name says it is a host."""
    found = []
    for module_info in pkgutil.iter_modules(lora_ext.hosts.__path__, "lora_ext.hosts."):
        module = importlib.import_module(module_info.name)  # WebUI imports are function-local
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__ and "Host" in name:
                found.append(value)
    return found


def test_every_host_class_derives_from_the_base():
    classes = {cls.__name__: cls for cls in _host_classes()}
    assert {"LdmHost", "StandaloneHost", "WebUIHostBase", "A1111Host", "UnsupportedWebUIHost"} <= set(classes)
    assert [name for name, cls in classes.items() if not issubclass(cls, Host)] == []
    concrete = [cls for cls in classes.values() if not inspect.isabstract(cls)]
    assert {cls.__name__ for cls in concrete} >= {"LdmHost", "StandaloneHost", "A1111Host", "UnsupportedWebUIHost"}


class _ModelOnly(Host):
    """A host that implements only what the base leaves abstract."""

    info = device = dtype = alphas_cumprod = lora_dir = None

    def parts(self):
        raise NotImplementedError

    def encode_images(self, pixels):
        raise NotImplementedError

    def encode_prompts(self, prompts, sizes=None):
        raise NotImplementedError

    def predict(self, noisy_latents, timesteps, conditioning):
        raise NotImplementedError

    def generate(self, request):
        raise NotImplementedError


def test_the_base_leaves_only_the_model_abstract_and_defaults_the_rest():
    assert set(Host.__abstractmethods__) == MODEL_MEMBERS
    host = _ModelOnly()
    capabilities = host.capabilities()
    assert capabilities.can_train and capabilities.can_train_text_encoder and not capabilities.reasons
    with host.exclusive("Test generation") as host_job:
        assert host_job is None
    host.report_progress(1, 2, "step 1/2")
    assert host.interrupted() is False
    assert host.setting("train_tools_tagger_dir", "fallback") == "fallback"
    assert host.outputs_dir is None and host.models_dir is None and host.tokenizer() is None

    seen: list[str] = []
    assert host.apply_prompt_hook("a <lora:x:1>") == "a <lora:x:1>"  # no hook: unchanged
    with host.training_session(None):
        pass  # no hook: nothing to restore
    host.set_prompt_hook(lambda prompt: seen.append(prompt) or prompt.upper())
    assert host.apply_prompt_hook("a <lora:x:1>") == "A <LORA:X:1>"
    with host.training_session(None):
        assert seen == ["a <lora:x:1>", ""]  # the session restored the hook's networks first


def _is_host(node: ast.AST) -> bool:
    """``host``, ``…_host``, ``ctx.host``, ``host_provider()``: an expression that denotes a host."""
    if isinstance(node, ast.Name):
        return node.id == "host" or node.id.endswith("_host")
    if isinstance(node, ast.Attribute):
        return node.attr == "host"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in HOST_FACTORIES
    return False


def seam_violations(source: str, where: str) -> list[str]:
    """Probes of a host (``getattr(host, …)``), attributes set on one, and members ``Host`` does not declare."""
    declared = set(dir(Host))
    found = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PROBES:
            if node.args and _is_host(node.args[0]):
                found.append(f"{line}: {node.func.id}() on a host")
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AugAssign | ast.AnnAssign)
            else []
        )
        for target in targets:
            if isinstance(target, ast.Attribute) and _is_host(target.value):
                found.append(f"{line}: assigns {target.attr!r} on a host")
        if isinstance(node, ast.Attribute) and _is_host(node.value) and node.attr not in declared:
            found.append(f"{line}: uses {node.attr!r}, which Host does not declare")
    return sorted(set(found))


def test_the_checker_sees_probes_assignments_and_undeclared_members():
    source = """
def work(ctx, host):
    hook = getattr(host, "prompt_hook", None)
    if hasattr(ctx.host, "training_session"):
        host.prompt_hook = hook
    return host.lora_dir, host_provider().outputs_dir, host.lora_takeover
"""
    found = seam_violations(source, "x.py")
    assert found == [
        "x.py:3: getattr() on a host",
        "x.py:4: hasattr() on a host",
        "x.py:5: assigns 'prompt_hook' on a host",
        "x.py:5: uses 'prompt_hook', which Host does not declare",
        "x.py:6: uses 'lora_takeover', which Host does not declare",
    ]


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_code_reaches_hosts_only_through_the_declared_seam(path):
    where = str(path.relative_to(ROOT.parent))
    assert seam_violations(path.read_text(encoding="utf-8"), where) == []


def test_setting_keys_are_spelled_once_in_the_settings_table():
    from lora_ext import settings

    keys = {setting.key for setting in settings.SETTINGS}
    assert len(keys) == len(settings.SETTINGS)
    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}"
        for path in sorted(ROOT.rglob("*.py"))
        if path != ROOT / "settings.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in keys
    ]
    assert spelled == []
