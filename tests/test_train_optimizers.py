"""Optimizers from their libraries: schedule-free AdamW with its train/eval switch, Adafactor's fused backward
pass, the presets that name each with its settings, and one-line refusals where a library cannot run."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file
from train_support import make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.config import PRESETS, TrainConfig, preset
from lora_ext.errors import ConfigError
from lora_ext.training.events import TrainEvents
from lora_ext.training.optim import build_optimizer, check_optimizer, evaluation, fused_backward
from lora_ext.training.run import train_lora


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _loss(network: torch.nn.Module, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(step)
    return network(torch.randn(8, 6, generator=generator)).pow(2).mean()


def test_schedule_free_is_used_at_its_average_and_trains_on_at_exactly_its_point():
    network = _network()
    optimizer = build_optimizer(TrainConfig(optimizer="AdamWScheduleFree"), [{"params": network.parameters()}])
    for step in range(3):
        _loss(network, step).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    training_point = [p.detach().clone() for p in network.parameters()]
    with evaluation(optimizer):
        used = [p.detach().clone() for p in network.parameters()]
        assert not optimizer.param_groups[0]["train_mode"]
    assert optimizer.param_groups[0]["train_mode"]
    assert all(torch.equal(p, q) for p, q in zip(network.parameters(), training_point, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(used, training_point, strict=True))
    # the averaged point is the library's own x = lerp(y, z, 1 - 1/β1)
    beta1 = optimizer.param_groups[0]["betas"][0]
    first = next(network.parameters())
    x = torch.lerp(first.detach(), optimizer.state[first]["z"], 1 - 1 / beta1)
    torch.testing.assert_close(used[0], x)


def test_schedule_free_has_no_lr_schedule_and_warms_up_itself():
    from lora_ext.training.optim import build_scheduler
    from lora_ext.training.plan import dataset_counts, make_plan

    config = preset("schedulefree").replace(max_steps=100)
    plan = make_plan(config, dataset_counts(config, [1] * 100))
    optimizer = build_optimizer(config, [{"params": _network().parameters(), "lr": 3e-4}], plan.warmup_steps)
    scheduler = build_scheduler(config, optimizer, plan)
    assert optimizer.param_groups[0]["warmup_steps"] == plan.warmup_steps == 5
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == [3e-4]


@pytest.fixture
def host_and_data(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=2)
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    return host, tmp_path / "data"


def _schedule_free_config(data) -> TrainConfig:
    return tiny_train_config(
        data, optimizer="AdamWScheduleFree", max_steps=4, default_repeats=2, unet_lr=1e-2, text_encoder_lr=1e-3
    )


def test_previews_saves_and_validation_leave_a_schedule_free_run_bit_identical(host_and_data, tmp_path):
    host, data = host_and_data
    config = _schedule_free_config(data)
    plain = load_file(str(train_lora(host, config, out=tmp_path / "a" / "x.safetensors").path))
    busy = config.replace(save_every_n_steps=1, sample_prompts="a toy --s 2 --w 64 --h 64", sample_every_n_steps=2)
    result = train_lora(host, busy, out=tmp_path / "b" / "x.safetensors")
    again = load_file(str(result.path))
    assert all(again[key].equal(value) for key, value in plain.items())
    assert len(result.saved) == 4  # three intermediate files and the final one
    assert len(list((result.work_dir / "samples").glob("*.png"))) == 2


def test_a_stopped_schedule_free_run_resumes_exactly(host_and_data, tmp_path):
    host, data = host_and_data
    config = _schedule_free_config(data)
    straight = load_file(str(train_lora(host, config, out=tmp_path / "a" / "x.safetensors").path))
    out = tmp_path / "c" / "x.safetensors"
    events = TrainEvents(on_progress=lambda info: events.request_stop() if info.step == 2 else None)
    assert train_lora(host, config, events, out=out).status == "cancelled"
    resumed = load_file(str(train_lora(host, config, out=out, resume=True).path))
    assert all(resumed[key].equal(value) for key, value in straight.items())


def test_adafactor_fused_backward_steps_as_the_plain_step_and_frees_each_gradient():
    config = TrainConfig(optimizer="Adafactor", unet_lr=1e-2)
    plain, fused = _network(), _network()
    plain_optimizer = build_optimizer(config, [{"params": list(plain.parameters()), "lr": 1e-2}])
    fused_optimizer = build_optimizer(config, [{"params": list(fused.parameters()), "lr": 1e-2}])
    with fused_backward(fused_optimizer, max_grad_norm=0.0):
        for step in range(3):
            _loss(plain, step).backward()
            plain_optimizer.step()
            plain_optimizer.zero_grad(set_to_none=True)
            _loss(fused, step).backward()
            assert all(p.grad is None for p in fused.parameters())  # stepped and freed inside backward
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), fused.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(plain.parameters(), _network().parameters(), strict=True))
    _loss(fused, 9).backward()  # the hooks are gone after the context
    assert all(p.grad is not None for p in fused.parameters())


def test_a_fused_backward_training_runs_and_saves(host_and_data, tmp_path):
    host, data = host_and_data
    config = tiny_train_config(data, optimizer="Adafactor", fused_backward=True, unet_lr=1e-2, max_steps=2)
    result = train_lora(host, config, out=tmp_path / "f" / "x.safetensors")
    assert result.status == "finished" and result.steps == 2
    assert any(value.abs().sum() > 0 for key, value in load_file(str(result.path)).items() if "lora_up" in key)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"optimizer": "AdamW8bit"}, "the AdamW8bit optimizer (bitsandbytes) needs a CUDA GPU; this model runs on cpu"),
        ({"fused_backward": True}, "works with the Adafactor optimizer only"),
        ({"fused_backward": True, "optimizer": "Adafactor", "gradient_accumulation": 2}, "cannot accumulate"),
    ],
)
def test_what_cannot_run_here_is_refused_in_one_line_before_anything_is_written(
    host_and_data, tmp_path, changes, words
):
    host, data = host_and_data
    with pytest.raises(ConfigError, match=re.escape(words)) as refused:
        check_optimizer(TrainConfig(**changes), torch.device("cpu"))
    assert "\n" not in refused.value.one_line()
    with pytest.raises(ConfigError, match=re.escape(words)):
        train_lora(host, tiny_train_config(data, **changes), out=tmp_path / "r" / "x.safetensors")
    assert not (tmp_path / "r").exists() and not (tmp_path / "x-training").exists()


def test_every_optimizer_has_a_preset_that_names_it():
    from lora_ext.config import OPTIMIZERS

    named = {settings.get("optimizer") for settings in PRESETS.values()}
    assert set(OPTIMIZERS) - {"AdamW", "SGD"} <= named  # AdamW is every beginner preset's
    assert preset("prodigy").unet_lr == 1.0 and "decouple=True" in preset("prodigy").optimizer_args
    low = preset("low-memory")
    assert (low.fp8_base, low.fused_backward, low.optimizer, low.gradient_checkpointing) == (
        True,
        True,
        "Adafactor",
        True,
    )
