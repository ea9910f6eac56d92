"""TrainConfig, presets, the plan, optimizers and schedules."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lora_ext.config import (
    PRESETS,
    RANGES,
    TrainConfig,
    default_config,
    field_help,
    load_config,
    preset,
    save_config,
)
from lora_ext.errors import ConfigError, MissingDependency
from lora_ext.training.optim import build_optimizer, build_scheduler
from lora_ext.training.plan import dataset_counts, make_plan


def test_every_field_has_help_text():
    help_text = field_help()
    assert set(help_text) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(text.strip() for text in help_text.values())


def test_config_round_trips_and_warns_about_unknown_keys():
    config = TrainConfig(rank=8, trigger_word="sks", flip_aug=True)
    data = config.to_dict()
    assert data["config_version"] == 1
    warnings: list[str] = []
    assert TrainConfig.from_dict({**data, "from_the_future": 1}, warn=warnings.append) == config
    assert warnings and "from_the_future" in warnings[0]


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().rank = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"rank": 0}, "rank"),
        ({"optimizer": "Adam9000"}, "optimizer"),
        ({"min_timestep": 900, "max_timestep": 100}, "timestep"),
        ({"lr_scheduler": "constant", "warmup_steps": 10}, "warm-up"),
        ({"unet_lr": 0.0, "train_text_encoder": False}, "nothing to train"),
        ({"optimizer_args": "betas"}, "key=value"),
        ({"resolution": 500}, "multiple of 8"),
    ],
)
def test_impossible_settings_raise_a_config_error(changes, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**changes)


def test_beginner_presets_per_family():
    sd1, sd2, sdxl = default_config("sd1"), default_config("sd2"), default_config("sdxl")
    assert (sd1.rank, sd1.alpha, sd1.unet_lr, sd1.text_encoder_lr, sd1.resolution) == (16, 8.0, 1e-4, 5e-5, 512)
    assert (sd1.optimizer, sd1.lr_scheduler, sd1.warmup_ratio, sd1.default_repeats, sd1.epochs) == (
        "AdamW",
        "cosine",
        0.05,
        10,
        10,
    )
    assert sd2.resolution == 768
    assert sdxl.resolution == 1024 and not sdxl.train_text_encoder and sdxl.vae_fp32
    assert all(isinstance(values, dict) for values in PRESETS.values())
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_user_presets_round_trip(tmp_path, suffix):
    config = TrainConfig(rank=32, trigger_word='a "quoted" ünïcode, tag', flip_aug=True, unet_lr=3e-4)
    path = tmp_path / f"mine{suffix}"
    save_config(config, path)
    assert load_config(path) == config


def test_plan_counts_accumulation_and_warmup():
    config = TrainConfig(epochs=3, gradient_accumulation=2, warmup_ratio=0.1, lr_scheduler="cosine")
    plan = make_plan(config, dataset_counts(config, [1] * 5))
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (3, 9, 1)
    assert make_plan(config.replace(max_steps=7), dataset_counts(config, [1] * 5)).epochs == 3


@pytest.mark.parametrize("name", ["constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial"])
def test_schedules_warm_up_then_follow_torch(name):
    config = TrainConfig(lr_scheduler=name, warmup_steps=3, max_steps=20, unet_lr=1.0)
    plan = make_plan(config, dataset_counts(config, [1] * 20))
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer(config, [{"params": [parameter], "lr": 1.0}])
    scheduler = build_scheduler(config, optimizer, plan)
    rates = []
    for _ in range(plan.total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] < rates[1] < rates[2] < rates[3] == pytest.approx(1.0)
    if name == "constant_with_warmup":
        assert rates[-1] == pytest.approx(1.0)
    else:
        assert rates[-1] < 0.5


def test_missing_optional_optimizer_names_the_package():
    pytest.importorskip("torch")
    try:
        import lion_pytorch  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependency, match="lion-pytorch"):
            build_optimizer(TrainConfig(optimizer="Lion"), [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    else:
        pytest.skip("lion-pytorch is installed")


@pytest.mark.parametrize("name", ["AdamW", "SGD", "Adafactor"])
def test_installed_optimizers_step(name):
    parameter = torch.nn.Parameter(torch.ones(4))
    optimizer = build_optimizer(TrainConfig(optimizer=name), [{"params": [parameter], "lr": 0.1}])
    parameter.sum().backward()
    optimizer.step()
    assert not torch.equal(parameter.detach(), torch.ones(4))


# A value just outside each declared range, and the words the refusal must say.
OUTSIDE = {
    "min_snr_gamma": (-1.0, "min_snr_gamma must be at least 0, not -1"),
    "noise_offset": (-0.05, "noise_offset must be in [0, 1], not -0.05"),
    "alpha": (0.0, "alpha must be above 0, not 0"),
    "dropout": (1.0, "dropout must be in [0, 1), not 1"),
    "unet_lr": (-1e-4, "unet_lr must be at least 0, not -0.0001"),
    "max_timestep": (1001, "max_timestep must be in [1, 1000], not 1001"),
    "prior_loss_weight": (float("nan"), "prior_loss_weight must be a finite number, not nan"),
    "preferred_weight": (float("inf"), "preferred_weight must be a finite number, not inf"),
}


def test_every_number_is_checked_against_its_range() -> None:
    numbers = {f.name for f in dataclasses.fields(TrainConfig) if f.type in ("int", "float", int, float)}
    assert numbers - {"seed"} == set(RANGES)  # a new number declares where it has a meaning


@pytest.mark.parametrize("name", sorted(RANGES))
def test_a_number_outside_its_range_is_refused_with_one_line(name: str) -> None:
    allowed = RANGES[name]
    value, words = OUTSIDE.get(name, (None, None))
    if value is None:  # just below the low end, or just above the high end
        value = (allowed.low - 1) if allowed.low is not None else allowed.high + 1
        if allowed.low_open and allowed.low is not None:
            value = allowed.low
    kind = type(getattr(TrainConfig(), name))
    with pytest.raises(ConfigError) as raised:
        TrainConfig(**{name: kind(value)})
    line = raised.value.one_line()
    assert line.startswith(f"{name} must be") and "\n" not in line
    if words:
        assert line == words
