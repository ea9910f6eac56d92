"""Optimizers and learning-rate schedules.

Optional packages are imported only when chosen; a missing one raises
``MissingDependency`` naming the pip package. Schedules are composed from
``torch.optim.lr_scheduler`` (warm-up + main schedule through ``SequentialLR``).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch
from torch.optim import lr_scheduler

from lora_ext.config import TrainConfig, parse_optimizer_args
from lora_ext.errors import MissingDependency
from lora_ext.training.plan import TrainPlan

# optimizer name → (module, class, pip package)
OPTIONAL_OPTIMIZERS = {
    "AdamW8bit": ("bitsandbytes.optim", "AdamW8bit", "bitsandbytes"),
    "Lion": ("lion_pytorch", "Lion", "lion-pytorch"),
    "Prodigy": ("prodigyopt", "Prodigy", "prodigyopt"),
    "Adafactor": ("transformers.optimization", "Adafactor", "transformers"),
}


def optimizer_class(name: str) -> type:
    if name == "AdamW":
        return torch.optim.AdamW
    if name == "SGD":
        return torch.optim.SGD
    module_name, class_name, package = OPTIONAL_OPTIMIZERS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise MissingDependency(
            f"the {name} optimizer needs the Python package '{package}', which is not installed",
            hint=f"pip install {package}, or choose AdamW",
        ) from error
    return getattr(module, class_name)


def build_optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """The configured optimizer over ``groups`` (each with its own ``lr``)."""
    kwargs: dict[str, Any] = {"weight_decay": config.weight_decay}
    if config.optimizer == "Adafactor":
        # A fixed learning rate, as sd-scripts' common Adafactor setup.
        kwargs.update(scale_parameter=False, relative_step=False, warmup_init=False)
    if config.optimizer == "SGD":
        kwargs["momentum"] = 0.9
    kwargs.update(parse_optimizer_args(config.optimizer_args))
    return optimizer_class(config.optimizer)(groups, **kwargs)


def describe_optimizer(optimizer: torch.optim.Optimizer, config: TrainConfig) -> str:
    """``ss_optimizer``: the class path and its extra arguments."""
    cls = type(optimizer)
    args = parse_optimizer_args(config.optimizer_args)
    args.setdefault("weight_decay", config.weight_decay)
    rendered = ",".join(f"{k}={v}" for k, v in args.items())
    return f"{cls.__module__}.{cls.__name__}({rendered})"


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, plan: TrainPlan) -> lr_scheduler.LRScheduler:
    """The configured schedule, with ``plan.warmup_steps`` of linear warm-up in front."""
    warmup = plan.warmup_steps
    main_steps = max(1, plan.total_steps - warmup)
    name = config.lr_scheduler
    if name in ("constant", "constant_with_warmup"):
        main: lr_scheduler.LRScheduler = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=0.0)
    elif name == "cosine_with_restarts":
        main = lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, math.ceil(main_steps / config.num_cycles))
        )
    elif name == "linear":
        main = lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=main_steps)
    else:
        main = lr_scheduler.PolynomialLR(optimizer, total_iters=main_steps, power=config.power)
    if warmup <= 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
