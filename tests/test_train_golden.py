"""Trained files stay bit-identical: every tensor of a tiny training matches the hash recorded before.

``train_golden.json`` was recorded by running these cases on main at 2203b25, when
the trainer still had its own LoRA module (``training/network.LoraModule``), before
the LoRA maths moved to ``formats/lora.py``. The cases switch on every path of the
trainable module: neuron, rank and module dropout, the LoCon 3×3 path with its own
rank and alpha, gradient checkpointing (masks replayed), OpenCLIP's fused q/k/v
slices, bf16 autocast, diffusers naming, and starting from a file with another alpha.
Alphas such as 0.3 are not exact in fp32, so a scale taken from the wrong rounding
shows too. Re-record (only for a deliberate change of the trained numbers) with
``TRAIN_GOLDEN_RECORD=1 pytest tests/test_train_golden.py``.

The same code gives the same bits on one machine, idle or busy, but not on every CPU: MKL and
oneDNN pick kernels by CPU vendor and vector width (AVX2, AVX-512), and those sum in other
orders. So each case keeps one recording per kind of machine it was checked on (``platform_key``),
and a run must match one of them bit for bit. A new kind of machine is recorded with
``TRAIN_GOLDEN_RECORD=1`` from the same commit on a machine whose hashes match (the code is the
same; only the kernels differ): that adds its own entry and keeps the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_support import make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.config import TrainConfig
from lora_ext.training.run import train_lora

GOLDEN = Path(__file__).with_name("train_golden.json")
RECORD = os.environ.get("TRAIN_GOLDEN_RECORD") == "1"


def _config(dataset, **changes) -> TrainConfig:
    dropouts = {"dropout": 0.1, "rank_dropout": 0.25, "module_dropout": 0.2}
    settings = {"alpha": 0.3, "max_steps": 3, "default_repeats": 2, "unet_lr": 1e-2, "text_encoder_lr": 1e-2}
    return tiny_train_config(dataset, **settings, **dropouts, shuffle_caption=True, seed=5).replace(**changes)


CASES = {
    "sd1-lora-dropouts": ("ldm", "sd1", {}),
    "sd1-locon-checkpointing": (
        "ldm",
        "sd1",
        {"network_type": "locon", "conv_rank": 3, "conv_alpha": 0.7, "gradient_checkpointing": True},
    ),
    "sd2-openclip-fused": ("ldm", "sd2", {"network_type": "locon", "conv_rank": 1, "conv_alpha": 1.3}),
    "sd1-locon-bf16": ("ldm", "sd1", {"network_type": "locon", "conv_rank": 2, "mixed_precision": "bf16"}),
    "diffusers-sd1-locon": ("diffusers", "sd1", {"network_type": "locon", "conv_rank": 2, "conv_alpha": 0.6}),
}


def _hashes(path: Path) -> dict[str, str]:
    return {
        key: f"{value.dtype}:{tuple(value.shape)}:"
        + hashlib.sha256(value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
        for key, value in sorted(load_file(str(path)).items())
    }


def platform_key() -> str:
    """The kind of machine whose kernels made a recording: architecture, CPU vendor, vector width, torch."""
    vendor = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        vendor = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("vendor_id")
            ),
            vendor,
        )
    return f"{platform.machine()} {vendor} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__}"


def _check(case: str, hashes: dict[str, str]) -> None:
    recorded = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if RECORD:
        recorded.setdefault(case, {})[platform_key()] = hashes
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    recordings = recorded[case]
    assert recordings, case
    for expected in recordings.values():
        assert sorted(hashes) == sorted(expected)
    # the closest recording first, so a failure names the tensors that moved
    expected = min(recordings.values(), key=lambda want: sum(hashes[key] != want[key] for key in want))
    assert [key for key in expected if hashes[key] != expected[key]] == [], f"recorded on: {sorted(recordings)}"


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data", count=2)


@pytest.mark.parametrize("case", list(CASES))
def test_trained_file_matches_the_recorded_tensors(case, make_ldm_host, make_standalone_host, dataset, tmp_path):
    naming, family, changes = CASES[case]
    host = make_ldm_host(family) if naming == "ldm" else make_standalone_host(family)
    wake_zero_layers(host)
    path = train_lora(host, _config(dataset, **changes), out=tmp_path / "out" / "g.safetensors").path
    assert len(load_file(str(path))) > 10
    _check(case, _hashes(path))


def test_training_from_a_file_with_another_alpha_matches_the_recorded_tensors(make_ldm_host, dataset, tmp_path):
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    first = train_lora(host, _config(dataset, alpha=0.3), out=tmp_path / "a" / "first.safetensors").path
    # the file's alpha (0.3) wins over the config's (4.0) when a run starts from it
    second = train_lora(
        host, _config(dataset, alpha=4.0, seed=6, init_weights=str(first)), out=tmp_path / "b" / "second.safetensors"
    ).path
    _check("sd1-from-file", _hashes(second))
