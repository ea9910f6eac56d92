"""Shared helpers for the loader tests: hosts with a loader, parameter snapshots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from lora_ext.loading.loader import NetworkLoader


def snapshot(*modules: torch.nn.Module) -> dict[str, str]:
    """sha256 of every parameter and buffer's bytes, by name."""
    digests = {}
    for index, module in enumerate(modules):
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
            digests[f"{index}:{name}"] = hashlib.sha256(data).hexdigest()
    return digests


def loader_for(host, **kwargs) -> NetworkLoader:
    Path(host.lora_dir).mkdir(parents=True, exist_ok=True)
    return NetworkLoader.for_host(host, **kwargs)


def all_roots(host) -> list[torch.nn.Module]:
    parts = host.parts()
    return [parts.unet, *(encoder.root for encoder in parts.text_encoders)]


def fault_log_lines(caplog) -> list[str]:
    """What the takeovers logged (``lora_ext.hosts.a1111_loader``) at ERROR level."""
    return [
        r.getMessage() for r in caplog.records if r.name == "lora_ext.hosts.a1111_loader" and r.levelname == "ERROR"
    ]


def break_loader(monkeypatch, target, attribute: str = "apply") -> None:
    """Make ``target.attribute`` (a step of our loader) fail, as a bug or an unexpected WebUI would."""

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated fault\nsecond line of the error")

    monkeypatch.setattr(target, attribute, broken)


def assert_one_line_per_cause(caplog) -> None:
    (line,) = fault_log_lines(caplog)
    assert "RuntimeError: simulated fault" in line and "\n" not in line
    assert all(r.exc_info is None for r in caplog.records)  # a line, never a traceback


def assert_a_replaced_file_is_seen_at_once(generate, write, strength: str = "1") -> None:
    """A text-encoder LoRA replaced on disk under the same token (``write(name, seed)`` writes one) gives, at the next
    generation of the same prompt, the conditioning a fresh token for the new file gives (the WebUI's cache is
    keyed by prompt text: our loader must empty it)."""
    from modules import processing

    def conditioning(prompt: str) -> torch.Tensor:
        generate(prompt)
        return processing.StableDiffusionProcessing.cached_c[1].clone()

    write("t", 1)
    old = conditioning(f"a cat <lora:t:{strength}>")
    write("t", 2)
    write("fresh", 2)
    replaced = conditioning(f"a cat <lora:t:{strength}>")
    reference = conditioning(f"a cat <lora:fresh:{strength}>")
    assert not torch.equal(reference, old)  # the test can tell the two files apart
    assert torch.equal(replaced, reference)
