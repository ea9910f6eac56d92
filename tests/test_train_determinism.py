"""Same seed ⇒ the same file, even while other work in the process keeps the CPU (and torch) busy."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from test_train_resume import resume_config
from train_support import make_dataset, wake_zero_layers

from lora_ext.training.run import train_lora

# Metadata that records when and in which session a file was made; everything else must match.
RUN_STAMPS = frozenset({"ss_session_id", "ss_training_started_at", "ss_training_finished_at", "modelspec.date"})


class BusyThread(threading.Thread):
    """Other work in the same process: torch ops drawing from the global generators, as a generation would."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        while not self.halt.is_set():
            noise = torch.randn(64, 64)
            torch.nn.functional.dropout(noise @ noise, p=0.5)
            torch.rand(())
            self.rounds += 1

    def __enter__(self) -> BusyThread:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.join()


def _tensor_bytes(path) -> dict[str, bytes]:
    return {
        key: value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        for key, value in load_file(str(path)).items()
    }


def _metadata(path) -> dict[str, str]:
    with safe_open(str(path), "pt") as handle:
        return {key: value for key, value in (handle.metadata() or {}).items() if key not in RUN_STAMPS}


@pytest.fixture
def host_and_config(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=2)
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    return host, resume_config(tmp_path / "data")  # every random source on: dropouts, shuffles, flips, noise offset


def _assert_same_file(expected_path, got_path) -> None:
    expected, got = _tensor_bytes(expected_path), _tensor_bytes(got_path)
    assert expected.keys() == got.keys()
    assert [key for key in expected if expected[key] != got[key]] == []
    assert _metadata(expected_path) == _metadata(got_path)  # includes the tensors' hashes (sshs_model_hash)


def test_same_seed_gives_a_bit_identical_file_while_another_thread_keeps_the_cpu_busy(host_and_config, tmp_path):
    host, config = host_and_config
    alone = train_lora(host, config, out=tmp_path / "alone" / "x.safetensors").path
    with BusyThread() as busy:
        crowded = train_lora(host, config, out=tmp_path / "busy" / "x.safetensors").path
    assert busy.rounds > 0  # the other thread really ran during the training
    _assert_same_file(alone, crowded)


def test_the_file_does_not_depend_on_what_the_global_generators_drew_before(host_and_config, tmp_path):
    host, config = host_and_config
    torch.manual_seed(1)
    first = train_lora(host, config, out=tmp_path / "a" / "x.safetensors").path
    torch.manual_seed(2)  # as any earlier generation or tagging in the process leaves them
    second = train_lora(host, config, out=tmp_path / "b" / "x.safetensors").path
    _assert_same_file(first, second)
