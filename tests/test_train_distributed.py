"""``python -m lora_ext train`` under ``torchrun``: 2 CPU processes (gloo) on the demo diffusers model.

N processes × batch b must train what 1 process × batch N·b trains: the same batches,
noise, dropout masks, loss weights and optimizer steps. The runs here use the defaults
that matter (AdamW, the text encoder trained, gradient clipping) with all three dropouts
and an epoch boundary inside the run, and hold the model in fp64 (``fp64_train.py`` says
why: in fp32 the demo model turns the rounding of another summation order into
differences of up to 200 % at 64 px, 6e-4 at 128 px). Every tensor must then agree within 1e-5 relative; a
difference in anything but the summation order is orders of magnitude above that (a
rank drawing its own dropout masks: ~1e27). Each launch costs two model loads, so every
run is tiny (3 images, 64 px, rank 2, 3 steps).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import fp64_train
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from train_support import make_dataset

from lora_ext.cli import main
from lora_ext.training.distributed import SINGLE, Ranks, from_environment

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = Path(fp64_train.__file__)
SETTINGS = ["--rank", "2", "--resolution", "64", "--seed", "3", "--no-progress"]
# The defaults (AdamW, text encoder on, max_grad_norm 1) with every dropout, a constant
# rate (cosine would make the last step's rate 0) and 3 images at repeats 1: a global
# batch of 2 gives 2 steps per epoch (one of them a batch of 1), so step 3 begins the second epoch.
OVERRIDES = [
    "lr_scheduler=constant", "warmup_ratio=0", "default_repeats=1", "min_bucket_reso=64", "save_dtype=fp32",
    "dropout=0.1", "rank_dropout=0.25", "module_dropout=0.2", "unet_lr=1e-3", "text_encoder_lr=1e-3",
]  # fmt: skip
RELATIVE = 1e-5  # fp64 rounding of another summation order stays below 1e-8 here
LAUNCH_TIMEOUT = 400  # seconds; a bound on a hung run, far above what one takes on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _train_args(data: Path, out: Path, steps: int, batch_size: int, *extra: str) -> list[str]:
    return [
        "train", "--model", "demo", "--dataset", str(data), "--out", str(out), "--steps", str(steps), *SETTINGS,
        "--work-dir", str(out.parent / f"{out.stem}-training"),
        *OVERRIDES, f"batch_size={batch_size}", *extra,
    ]  # fmt: skip


def _launch(args: list[str]) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(LAUNCHER), *args,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the 2-process run did not end within {LAUNCH_TIMEOUT} s\n{err[-3000:]}")
    return process.returncode, out, err


def _worker(launcher: subprocess.Popen, local_rank: int) -> int:
    """The pid of the launcher's worker with ``LOCAL_RANK=local_rank``."""
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"no worker with LOCAL_RANK={local_rank}")


def _wait_for_steps(log: Path, launcher: subprocess.Popen, steps: int = 1) -> None:
    """Until rank 0 logged ``steps`` optimizer steps: both processes are then in the training loop."""
    for _ in range(LAUNCH_TIMEOUT * 10):
        if log.is_file() and len(log.read_text().splitlines()) > steps:
            return
        if launcher.poll() is not None:
            pytest.fail(f"the run ended before its first step\n{launcher.stderr.read()[-3000:]}")
        time.sleep(0.1)
    pytest.fail("no training step was logged")


def _assert_same_lora(path: Path, reference: Path) -> None:
    """Every tensor within ``RELATIVE`` of the reference's (norm of the difference / norm)."""
    got, want = load_file(str(path)), load_file(str(reference))
    assert got.keys() == want.keys()
    ups = torch.cat([want[key].flatten() for key in want if "lora_up" in key])  # zero at the start
    assert float(ups.norm()) > 1e-2  # trained, not left at its start
    differences = {key: float((got[key] - want[key]).norm()) for key in want}
    assert {key: value for key, value in differences.items() if not value <= RELATIVE * float(want[key].norm())} == {}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 3 images and a global batch of 2: each epoch has a batch of 1, held by one rank while the other waits.
    return make_dataset(tmp_path_factory.mktemp("ddp") / "data", count=3)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """One process, batch 2, 3 steps: what two processes of batch 1 must reproduce."""
    out = tmp_path_factory.mktemp("single") / "one.safetensors"
    assert fp64_train.main(_train_args(data, out, 3, 2)) == 0
    return out


def test_two_ranks_of_batch_1_give_the_lora_of_one_process_with_batch_2_and_only_rank_0_writes(
    data, reference, tmp_path
):
    out = tmp_path / "two.safetensors"
    code, stdout, stderr = _finish(_launch(_train_args(data, out, 3, 1)))
    assert code == 0, stderr[-3000:]
    _assert_same_lora(out, reference)
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
    assert (metadata["ss_batch_size_per_device"], metadata["ss_total_batch_size"]) == ("1", "2")
    assert (metadata["ss_num_processes"], metadata["ss_steps"], metadata["ss_num_batches_per_epoch"]) == ("2", "3", "2")
    # Rank 0 alone logged (one row per step, not two), printed and saved.
    rows = (tmp_path / "two-training" / "loss.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3"]
    assert stdout.count("saved ") == 1 and stderr.count("scanning the dataset") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two-training", "two.json", "two.safetensors"]


def test_accelerate_launch_runs_the_same_data_parallel_training(data, reference, tmp_path):
    out = tmp_path / "acc.safetensors"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), str(LAUNCHER), *_train_args(data, out, 3, 1),
    ]  # fmt: skip
    # accelerate's --multi_gpu starts torchrun's processes; without a GPU they use gloo.
    launcher = subprocess.Popen(
        command, cwd=REPO, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    code, stdout, stderr = _finish(launcher)
    assert code == 0, stderr[-3000:]
    _assert_same_lora(out, reference)
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata()["ss_num_processes"] == "2"
    assert stdout.count("saved ") == 1 and stderr.count("scanning the dataset") == 1
    assert stderr.count("Loading pipeline components...:   0%") == 1  # one bar: rank 1 loads quietly


def test_a_stop_in_one_rank_stops_both_and_resume_continues_exactly_under_the_launcher_and_in_one_process(
    data, tmp_path
):
    out = tmp_path / "run" / "lora.safetensors"
    launcher = _launch(_train_args(data, out, 1000, 1, "save_state=true"))
    _wait_for_steps(out.parent / "lora-training" / "loss.csv", launcher)
    os.kill(_worker(launcher, 1), signal.SIGINT)  # Ctrl-C in rank 1 only: rank 0 must stop after the same step
    code, _, stderr = _finish(launcher)
    assert code == 1, stderr[-3000:]
    assert stderr.count("stopped at step ") == 1
    stopped = int(stderr.split("stopped at step ")[1].split("/")[0])
    steps = stopped + 1
    copy = tmp_path / "copy"
    shutil.copytree(out.parent, copy)

    code, _, stderr = _finish(_launch(_train_args(data, out, steps, 1, "save_state=true", "--resume")))
    assert code == 0, stderr[-3000:]
    assert f"resuming at step {stopped} of {steps}" in stderr
    # The same state in one process with the same global batch (2 × 1 = 1 × 2).
    assert (
        fp64_train.main([*_train_args(data, copy / "lora.safetensors", steps, 2, "save_state=true"), "--resume"]) == 0
    )
    straight = tmp_path / "straight" / "lora.safetensors"
    assert fp64_train.main(_train_args(data, straight, steps, 2)) == 0
    _assert_same_lora(out, straight)
    _assert_same_lora(copy / "lora.safetensors", straight)


def test_killing_one_rank_ends_the_other_with_one_clear_message(data, tmp_path):
    out = tmp_path / "lora.safetensors"
    launcher = _launch(_train_args(data, out, 100_000, 1))
    _wait_for_steps(tmp_path / "lora-training" / "loss.csv", launcher)
    os.kill(_worker(launcher, 1), signal.SIGKILL)
    code, _, stderr = _finish(launcher)  # bounded: the launcher ends rank 0, which also sees the closed connection
    assert code != 0
    assert stderr.count("error: training stopped: another training process ended") == 1, stderr[-3000:]
    assert "lora_ext/" not in stderr  # ours is one line, no traceback; the launcher's own report follows it
    assert not out.exists()


def test_every_sample_of_a_global_batch_goes_to_exactly_one_rank():
    for world_size in (1, 2, 3, 4):
        for count in range(0, 9):
            rows = [list(Ranks(rank, world_size).rows(count)) for rank in range(world_size)]
            assert sum(rows, []) == list(range(count))
            assert max(map(len, rows)) - min(map(len, rows)) <= 1


def test_the_launcher_environment_gives_the_ranks_and_no_launcher_gives_one_process():
    assert from_environment({}) == SINGLE
    assert from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Ranks(3, 4, 1)


def test_the_plan_counts_global_batches_of_batch_size_times_processes(tmp_path):
    from lora_ext.config import TrainConfig
    from lora_ext.training.data import folder_counts
    from lora_ext.training.plan import make_plan

    make_dataset(tmp_path / "data", count=8)
    config = TrainConfig(dataset_dir=str(tmp_path / "data"), batch_size=2, gradient_accumulation=2, epochs=3)
    one, four = make_plan(config, folder_counts(config)), make_plan(config, folder_counts(config, world_size=4))
    assert (one.effective_batch, one.steps_per_epoch, one.total_steps) == (4, 2, 6)
    assert (four.effective_batch, four.steps_per_epoch, four.total_steps, four.world_size) == (16, 1, 3, 4)


def test_a_single_process_run_joins_no_process_group(tmp_path):
    make_dataset(tmp_path / "data", count=1)
    assert main(_train_args(tmp_path / "data", tmp_path / "o.safetensors", 1, 1)) == 0
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("batch_axis", [0, 1])
def test_each_process_draws_the_dropout_masks_one_process_draws_for_its_rows(batch_axis):
    from lora_ext.formats.base import DropoutDraws, Dropouts, LayerOp
    from lora_ext.formats.lora import LoraAdapter

    weight = torch.zeros(6, 8)
    adapter = LoraAdapter.initial(weight, rank=3, alpha=3.0, generator=torch.Generator().manual_seed(0))
    adapter = LoraAdapter(down=adapter.down, up=torch.randn(6, 3), network_alpha=3.0)
    module = adapter.trainable(LayerOp(), Dropouts(dropout=0.5, rank_dropout=0.5, module_dropout=0.3), DropoutDraws())
    module.batch_axis = batch_axis
    x = torch.randn(5, 4, 8) if batch_axis == 0 else torch.randn(4, 5, 8)  # 5 samples of 4 tokens
    outputs, pieces = [], []
    for seed in range(8):  # some seeds drop the whole module
        module.draws.reseed(seed)
        outputs.append(module(x, weight))
        for rows in (range(0, 2), range(2, 3), range(3, 5)):
            module.draws.reseed(seed, rows, 5)
            pieces.append(module(x.narrow(batch_axis, rows.start, len(rows)), weight))
    for number, whole in enumerate(outputs):
        parts = pieces[3 * number : 3 * number + 3]
        if whole is None:
            assert parts == [None, None, None]
        else:
            torch.testing.assert_close(torch.cat(parts, dim=batch_axis), whole, rtol=0, atol=1e-6)
    assert None in outputs and any(output is not None for output in outputs)
