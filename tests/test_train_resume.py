"""Same seed ⇒ same file; stop + resume ⇒ the same file as an uninterrupted run."""

from __future__ import annotations

import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import load_file
from train_support import make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.config import TrainConfig
from lora_ext.errors import ConfigError
from lora_ext.training.events import TrainEvents
from lora_ext.training.run import train_lora

STEPS = 4


def resume_config(dataset) -> TrainConfig:
    # Every random source is on: caption shuffle and dropout, flips, LoRA rank/module dropout, noise offset,
    # plus accumulation, warm-up and TE training.
    randomness = {"shuffle_caption": True, "caption_dropout_rate": 0.3, "flip_aug": True, "noise_offset": 0.05}
    return tiny_train_config(
        dataset,
        **randomness,
        rank_dropout=0.2,
        module_dropout=0.2,
        max_steps=STEPS,
        default_repeats=2,
        unet_lr=1e-3,
        text_encoder_lr=1e-3,
        lr_scheduler="cosine",
        warmup_steps=1,
        warmup_ratio=0.05,
        gradient_accumulation=2,
        seed=11,
    )


@pytest.fixture
def host_and_data(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=2)
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    return host, tmp_path / "data"


def test_same_seed_gives_the_same_file_and_resume_is_exact(host_and_data, tmp_path):
    host, data = host_and_data
    config = resume_config(data)
    first = train_lora(host, config, out=tmp_path / "a" / "x.safetensors").path
    second = train_lora(host, config, out=tmp_path / "b" / "x.safetensors").path
    straight = load_file(str(first))
    assert straight.keys() == load_file(str(second)).keys()
    assert all(straight[key].equal(value) for key, value in load_file(str(second)).items())
    assert any(value.abs().sum() > 0 for key, value in straight.items() if "lora_up" in key)

    out = tmp_path / "c" / "x.safetensors"
    events = TrainEvents(on_progress=lambda info: events.request_stop() if info.step == STEPS // 2 else None)
    stopped = train_lora(host, config, events, out=out)
    assert stopped.status == "cancelled" and stopped.steps == STEPS // 2
    # The state sits in the run's working folder beside the dataset, not in the LoRA folder the WebUI lists
    # (its Lora tab shows every sub-folder as a folder button).
    assert stopped.state_path == tmp_path / "x-training" / "resume" / "state.json"
    assert not (tmp_path / "c").exists() or not any(path.is_dir() for path in (tmp_path / "c").iterdir())
    resumed = train_lora(host, config, out=out, resume=True)
    assert resumed.status == "finished" and resumed.steps == STEPS
    after = load_file(str(resumed.path))
    assert all(after[key].equal(value) for key, value in straight.items())
    with safe_open(str(first), "pt") as a, safe_open(str(resumed.path), "pt") as b:
        assert a.metadata()["sshs_model_hash"] == b.metadata()["sshs_model_hash"]
    assert not any(path.is_dir() for path in (tmp_path / "c").iterdir())
    rows = (tmp_path / "x-training" / "loss.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == [str(step) for step in range(1, STEPS + 1)]


def test_a_run_stopped_before_the_working_folder_moved_resumes_and_leaves_the_lora_folder(host_and_data, tmp_path):
    host, data = host_and_data
    config = resume_config(data).replace(max_steps=2)
    out = tmp_path / "Lora" / "x.safetensors"
    events = TrainEvents(on_progress=lambda info: events.request_stop())
    stopped = train_lora(host, config, events, out=out)
    old = tmp_path / "Lora" / "x-training"  # where versions before this one kept the run's working folder
    shutil.move(str(stopped.work_dir), str(old))
    lines = []
    resumed = train_lora(host, config, TrainEvents(on_status=lines.append), out=out, resume=True)
    assert resumed.status == "finished" and resumed.steps == 2 and resumed.work_dir == tmp_path / "x-training"
    assert not old.exists() and (resumed.work_dir / "loss.csv").read_text().splitlines()[1].startswith("1,")
    assert any("moved" in line and str(old) in line for line in lines)


def test_resume_refuses_changed_settings(host_and_data, tmp_path):
    host, data = host_and_data
    config = resume_config(data).replace(max_steps=2)
    events = TrainEvents(on_progress=lambda info: events.request_stop())
    train_lora(host, config, events, out=tmp_path / "x.safetensors")
    with pytest.raises(ConfigError, match="rank"):
        train_lora(host, config.replace(rank=4), out=tmp_path / "x.safetensors", resume=True)
