"""A LoRA file that is removed, truncated or replaced between two generations: a warning, never an abort."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from loader_helpers import loader_for
from lora_files import lora_for_model, write_lora

from lora_ext.formats.keymap import keymap_for_parts
from lora_ext.host import GenerationRequest


def _image(host, prompt: str) -> np.ndarray:
    request = GenerationRequest(prompt=prompt, seed=5, width=64, height=64, steps=2)
    return np.asarray(host.generate(request)[0], dtype=np.int16)


def _damage(path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\xff" * path.stat().st_size)
    elif how == "a folder now":
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize(
    "kind,how",
    [("ldm", "deleted"), ("diffusers", "deleted"), ("ldm", "truncated"), ("ldm", "garbage"), ("ldm", "a folder now")],
)
def test_a_lora_lost_between_generations_is_a_warning_and_the_others_still_apply(
    make_ldm_host, make_standalone_host, kind, how
):
    host = make_ldm_host("sd1") if kind == "ldm" else make_standalone_host("sd1")
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "keep.safetensors", lora_for_model(keymap, seed=9, rank=8))
    lost = host.lora_dir / "lost.safetensors"
    write_lora(lost, lora_for_model(keymap, seed=3, rank=8))
    seen: list[str] = []
    loader = loader_for(host, warn=seen.append)
    only_keep = _image(host, "a cat <lora:keep:1>")
    both = _image(host, "a cat <lora:keep:1> <lora:lost:1>")
    assert not np.array_equal(only_keep, both)
    _damage(lost, how)
    for attempt in range(2):  # from the list scanned before, then again (rescanned if the file went away)
        seen.clear()
        assert np.array_equal(_image(host, "a cat <lora:keep:1> <lora:lost:1>"), only_keep)
        assert len(seen) == 1 and ("lost.safetensors" if attempt == 0 else "lost") in seen[0], seen
        assert [f.applied for f in loader.last_report.files] == [True, False]
    if lost.is_dir():
        shutil.rmtree(lost)


def test_a_request_that_repeats_the_previous_one_still_shows_its_own_warnings(make_ldm_host):
    """``<lora:x:nan>`` right after a prompt without tokens is the same request (no network): the Generate tab
    reads ``last_report``, which must carry this prompt's warning, not the previous prompt's silence."""
    host = make_ldm_host("sd1")
    loader = loader_for(host)
    _image(host, "a cat")
    assert loader.last_report.warnings == []
    for prompt in ("a cat <lora:x:nan>", "a cat <lora:x:abc>"):
        _image(host, prompt)
        assert len(loader.last_report.warnings) == 1 and "<lora:x:" in loader.last_report.warnings[0]
    _image(host, "a cat")
    assert loader.last_report.warnings == []
