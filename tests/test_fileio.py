"""The one atomic-write mechanism: file modes, stale temp files, a full disk."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lora_files import adapter_tensors, spell, write_lora
from PIL import Image

from lora_ext import fileio
from lora_ext.cli import main
from lora_ext.dataset.ingest import ingest
from lora_ext.errors import DiskFull
from lora_ext.tagger.captions import save_caption
from lora_ext.training.save import save_lora

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o640
    os.umask(previous)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _merge_argv(make_checkpoint, tmp_path: Path, out: Path) -> list[str]:
    base_path, base = make_checkpoint("sd1", torch.float32)
    module = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    tensors = spell(
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
        adapter_tensors("lora", base[module], seed=1),
    )
    lora = write_lora(tmp_path / "bake.safetensors", tensors)
    return ["merge", str(base_path), "--lora", str(lora), "--out", str(out)]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@posix_only
def test_every_written_file_gets_the_mode_the_umask_gives_a_new_file(tmp_path, umask_027, make_checkpoint, capsys):
    lora = save_lora(tmp_path / "lora" / "a.safetensors", {"x.lora_down.weight": torch.ones(2, 2)}, {})
    fileio.write_text_atomic(tmp_path / "config" / "train.toml", "x = 1\n")
    caption = tmp_path / "images" / "a.txt"
    caption.parent.mkdir()
    caption.write_text("old")
    save_caption(caption, "new tags", "old", backup=True)
    _png(tmp_path / "drop" / "b.png")
    (tmp_path / "drop" / "b.txt").write_text("imported tags")
    added = ingest([tmp_path / "drop"], tmp_path / "dataset").added[0]
    ingested = [tmp_path / "dataset" / added.stored, tmp_path / "dataset" / added.caption]
    merged = tmp_path / "merged.safetensors"
    assert main(_merge_argv(make_checkpoint, tmp_path, merged)) == 0, capsys.readouterr().err
    written = [lora, tmp_path / "config" / "train.toml", caption, *ingested, merged]
    assert {str(path.relative_to(tmp_path)): _mode(path) for path in written} == {
        str(path.relative_to(tmp_path)): umask_027 for path in written
    }


def test_a_stale_temp_file_of_a_dead_writer_is_removed_when_the_folder_is_next_written(tmp_path):
    old = time.time() - 3600  # an hour: past the grace for a dead writer, short of abandoned
    dead, alive = _dead_pid(), os.getpid()

    def temp(name: str, age: float | None = None) -> Path:
        path = tmp_path / name
        path.write_bytes(b"half a file")
        if age is not None:
            os.utime(path, (age, age))
        return path

    stale = temp(f".a.safetensors.tt-{dead}-0123abcd.tmp", old)
    abandoned = temp(f".b.json.tt-{alive}-4567cdef.tmp", time.time() - 2 * 86400)
    live_quiet = temp(f".c.safetensors.tt-{alive}-89abcdef.tmp", old)  # its writer still runs
    just_written = temp(f".d.safetensors.tt-{dead}-fedcba98.tmp")  # maybe a writer in another container
    not_ours = temp(".notes.txt.tmp", old)
    fileio.write_text_atomic(tmp_path / "e.txt", "text")
    left = {path.name for path in tmp_path.iterdir()}
    assert stale.name not in left and abandoned.name not in left
    assert {live_quiet.name, just_written.name, not_ours.name, "e.txt"} == left


def test_a_concurrent_writers_temp_file_survives_another_write_in_the_folder(tmp_path):
    with fileio.atomic_path(tmp_path / "big.safetensors") as first:
        first.write_bytes(b"part one")
        fileio.write_text_atomic(tmp_path / "other.json", "{}")
        with open(first, "ab") as handle:
            handle.write(b", part two")
    assert (tmp_path / "big.safetensors").read_bytes() == b"part one, part two"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big.safetensors", "other.json"]


def test_the_temp_file_an_interrupted_writer_leaves_is_recognised_as_ours(tmp_path):
    left_behind = fileio.create_temp(tmp_path / ("x" * 250 + ".safetensors"))  # a long name still fits NAME_MAX
    (tmp_path / ".x.safetensors.tmp").write_bytes(b"someone else's")
    later = time.time() + 2 * 86400
    assert fileio.remove_stale_temps(tmp_path, now=later) == 1
    assert not left_behind.exists() and (tmp_path / ".x.safetensors.tmp").exists()


# The real messages, as safetensors raises them on a full disk (0.5+, and the older Debug form).
SAFETENSORS_FULL = [
    "Error while serializing: I/O error: No space left on device (os error 28)",
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
]


@pytest.mark.skipif(os.name == "nt", reason="errno 28 is ENOSPC on POSIX; Windows reports 112")
@pytest.mark.parametrize("message", SAFETENSORS_FULL)
def test_a_lora_save_on_a_full_disk_says_so_and_keeps_the_original(tmp_path, monkeypatch, message):
    import safetensors.torch
    from safetensors import SafetensorError

    target = tmp_path / "mine.safetensors"
    target.write_bytes(b"the good old file")

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # it got this far before the disk filled up
        raise SafetensorError(message)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(DiskFull) as caught:
        save_lora(target, {"x.lora_down.weight": torch.ones(2, 2)}, {})
    assert caught.value.one_line().startswith("Not enough disk space to write mine.safetensors.")
    assert target.read_bytes() == b"the good old file"
    assert [path.name for path in tmp_path.iterdir()] == ["mine.safetensors"]


@pytest.mark.parametrize("code", [code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code])
def test_a_merge_on_a_full_disk_is_one_line_at_the_cli_and_keeps_the_original(
    tmp_path, monkeypatch, capsys, make_checkpoint, code
):
    out = tmp_path / "out" / "merged.safetensors"
    argv = _merge_argv(make_checkpoint, tmp_path, out)
    out.parent.mkdir()
    out.write_bytes(b"an earlier merge")

    def fsync_full(descriptor):  # ext4 and NFS report a full disk at fsync when allocation was delayed
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "fsync", fsync_full)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Not enough disk space to write merged.safetensors.") and err.count("\n") == 1
    assert out.read_bytes() == b"an earlier merge"
    assert [path.name for path in out.parent.iterdir()] == ["merged.safetensors"]


def test_a_full_disk_is_still_an_os_error_for_the_code_that_rolls_back(tmp_path, monkeypatch):
    def write_full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", write_full)
    with pytest.raises(OSError) as caught:
        fileio.write_text_atomic(tmp_path / "a.txt", "x")
    assert isinstance(caught.value, DiskFull) and caught.value.errno == errno.ENOSPC
    assert caught.value.strerror == "No space left on device"
    assert list(tmp_path.iterdir()) == []
