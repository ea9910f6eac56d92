"""The resume state is safetensors + JSON in the run's working folder; nothing is ever unpickled."""

from __future__ import annotations

import json
import math
import pickle
import random
import shutil
import struct

import numpy as np
import pytest
import torch
from train_support import make_dataset

from lora_ext.config import TrainConfig
from lora_ext.errors import FileFormatError
from lora_ext.training import checkpoint, state_codec
from lora_ext.training.optim import build_optimizer, build_scheduler
from lora_ext.training.plan import dataset_counts, make_plan
from lora_ext.training.run import train_lora
from lora_ext.training.steps import TrainingParts, TrainProgress

INSTALLED_OPTIMIZERS = ["AdamW", "SGD", "Adafactor"]  # what the test environment has (see test_train_config)


class _Payload:
    """Unpickling this creates ``marker``: what a crafted state file would do to a machine that loads it."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_pickle(marker) -> bytes:
    return pickle.dumps({"format": 1, "payload": _Payload(marker)}, protocol=2)


def small_parts(name: str, tmp_path, seed: int) -> tuple[TrainingParts, TrainConfig]:
    config = TrainConfig(optimizer=name, lr_scheduler="cosine_with_restarts", warmup_steps=2, max_steps=12)
    torch.manual_seed(seed)
    network = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    groups = [
        {"params": list(network[0].parameters()), "lr": 1e-2},
        {"params": list(network[1].parameters()), "lr": 5e-3},
    ]
    optimizer = build_optimizer(config, groups)
    plan = make_plan(config, dataset_counts(config, [1] * 12))
    output = tmp_path / "Lora" / "x.safetensors"
    parts = TrainingParts(
        None,
        network,
        optimizer,
        build_scheduler(config, optimizer, plan),
        torch.amp.GradScaler("cpu"),
        plan,
        TrainProgress(),
        None,
        False,
        output,
        tmp_path / "runs" / "x",
    )
    return parts, config


def one_step(parts: TrainingParts) -> None:
    # Every RNG the state carries feeds the step: torch (inputs), Python random and NumPy (loss scale).
    inputs = torch.randn(5, 4)
    scale = random.random() + float(np.random.rand())
    loss = (parts.network(inputs) * scale).pow(2).sum()
    loss.backward()
    parts.optimizer.step()
    parts.optimizer.zero_grad()
    parts.scheduler.step()
    parts.progress.step += 1
    parts.progress.last_loss = loss.item()


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


@pytest.mark.parametrize("name", INSTALLED_OPTIMIZERS)
def test_saved_state_continues_bit_identically_for_each_optimizer(name, tmp_path):
    seed_all(1)
    straight, _ = small_parts(name, tmp_path / "a", seed=0)
    for _ in range(6):
        one_step(straight)

    seed_all(1)
    first, config = small_parts(name, tmp_path, seed=0)
    for _ in range(3):
        one_step(first)
    checkpoint.save_state(first.work_dir, first, config.to_dict())
    seed_all(99)  # the resumed process starts with other RNG states and other weights
    resumed, _ = small_parts(name, tmp_path, seed=5)
    checkpoint.restore_state(resumed, checkpoint.load_state(resumed.work_dir))
    assert resumed.progress == first.progress
    for _ in range(3):
        one_step(resumed)

    for mine, theirs in zip(resumed.network.parameters(), straight.network.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    assert resumed.scheduler.state_dict() == straight.scheduler.state_dict()
    assert resumed.scaler.state_dict() == first.scaler.state_dict()


def test_state_files_are_safetensors_and_strict_json_in_the_working_folder(tmp_path):
    parts, config = small_parts("AdamW", tmp_path, seed=0)
    one_step(parts)
    record_path = checkpoint.save_state(parts.work_dir, parts, config.to_dict())

    assert record_path == tmp_path / "runs" / "x" / "resume" / "state.json"
    assert not (tmp_path / "Lora").exists()  # nothing in the LoRA folder the WebUI lists

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    record = json.loads(record_path.read_text(encoding="utf-8"), parse_constant=no_constants)
    assert record["format"] == checkpoint.STATE_FORMAT
    assert record["progress"]["step"] == 1
    assert record["config"]["optimizer"] == "AdamW"
    assert record["state"]["optimizer"]["param_groups"][0]["betas"] == {"$tuple": [0.9, 0.999]}
    (tensors_file,) = record_path.parent.glob("*.tensors")
    data = tensors_file.read_bytes()
    # The whole file is a safetensors layout: 8-byte length, JSON header, then exactly the tensors' bytes.
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    assert header.pop("__metadata__") == {checkpoint.ID_KEY: record["state_id"]}
    assert max(entry["data_offsets"][1] for entry in header.values()) == len(data) - 8 - header_size
    assert {entry["dtype"] for entry in header.values()} >= {"F32", "U8", "I64"}  # weights, torch and Python RNG


def test_a_crafted_pickled_trainstate_is_refused_and_never_runs(make_ldm_host, tmp_path):
    host = make_ldm_host("sd1")
    make_dataset(tmp_path / "data", count=1)
    out = tmp_path / "Lora" / "x.safetensors"
    out.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    (out.parent / "x.trainstate").write_bytes(crafted_pickle(marker))
    config = TrainConfig(dataset_dir=str(tmp_path / "data"), resolution=64, min_bucket_reso=64, max_steps=1)

    with pytest.raises(FileFormatError) as caught:
        train_lora(host, config, out=out, resume=True)

    assert not marker.exists()
    line = caught.value.one_line()
    assert "\n" not in line and "x.trainstate" in line and "pickle" in line and "not loaded" in line


def test_a_pickle_in_place_of_the_tensors_file_is_refused_and_never_runs(tmp_path):
    parts, config = small_parts("AdamW", tmp_path, seed=0)
    record_path = checkpoint.save_state(parts.work_dir, parts, config.to_dict())
    (tensors_file,) = record_path.parent.glob("*.tensors")
    marker = tmp_path / "pwned"
    tensors_file.write_bytes(crafted_pickle(marker))

    with pytest.raises(FileFormatError):
        checkpoint.load_state(parts.work_dir)
    assert not marker.exists()


def test_a_half_updated_state_pair_is_refused_and_a_whole_one_survives_a_cut_save(tmp_path):
    parts, config = small_parts("AdamW", tmp_path, seed=0)
    record_path = checkpoint.save_state(parts.work_dir, parts, config.to_dict())
    old_record = record_path.read_bytes()
    (old_tensors,) = record_path.parent.glob("*.tensors")
    kept = tmp_path / "kept.tensors"
    shutil.copy(old_tensors, kept)
    one_step(parts)
    checkpoint.save_state(parts.work_dir, parts, config.to_dict())
    (new_tensors,) = record_path.parent.glob("*.tensors")
    assert new_tensors != old_tensors  # the older pair's tensors are gone once the new record is in place

    # A save cut after its tensors file but before its record: the previous pair is still whole.
    shutil.copy(kept, old_tensors)
    record_path.write_bytes(old_record)
    assert checkpoint.load_state(parts.work_dir)["progress"]["step"] == 0

    # The record's tensors file missing, or another save's tensors under its name: refused as incomplete.
    old_tensors.unlink()
    with pytest.raises(FileFormatError, match="incomplete"):
        checkpoint.load_state(parts.work_dir)
    shutil.copy(new_tensors, old_tensors)
    with pytest.raises(FileFormatError, match="another save"):
        checkpoint.load_state(parts.work_dir)


def _same(a, b) -> bool:
    """Equal in value *and* type, all the way down (NaN equals NaN, -0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.reshape(-1).view(torch.uint8).equal(b.reshape(-1).view(torch.uint8))
        )
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(k1, k2) and _same(a[k1], b[k2]) for k1, k2 in zip(a, b, strict=True))
    return a == b


def test_optimizer_shaped_state_round_trips_exactly():
    from safetensors.torch import load, save

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        # Prodigy: int step, d-adaptation floats, growth_rate=inf, betas tuple, beta3 None.
        "state": {
            0: {"step": 3, "s": base.clone(), "p0": base.t(), "exp_avg": base[1], "exp_avg_sq": torch.tensor(0.5)},
            # bitsandbytes 8-bit: uint8 codes, quantisation maps, absmax.
            1: {"state1": torch.arange(8, dtype=torch.uint8), "qmap1": torch.linspace(-1, 1, 8), "step": 5},
            2: {"momentum_buffer": None, "mask": torch.tensor([True, False]), "half": torch.ones(2).bfloat16()},
        },
        "param_groups": [
            {
                "lr": 1.0,
                "betas": (0.9, 0.999),
                "beta3": None,
                "d": 1e-6,
                "growth_rate": math.inf,
                "floor": -math.inf,
                "unset": math.nan,
                "negative_zero": -0.0,
                "k": 2**70,
                "use_bias_correction": False,
                "params": [0, 1, 2],
            }
        ],
        "$odd key": {(1, "a"): "tuple key", "$tensor": "not a tensor"},
        "empty": torch.empty(0, 3),
    }
    tree, tensors = state_codec.encode(state, "optimizer")
    text = json.dumps(tree, allow_nan=False)
    back = state_codec.decode(json.loads(text), load(save(tensors)))
    assert _same(back, state)


def test_a_value_without_a_safe_file_form_is_refused_at_save_time():
    with pytest.raises(FileFormatError, match="set"):
        state_codec.encode({"state": {0: {"seen": {1, 2}}}}, "optimizer")
