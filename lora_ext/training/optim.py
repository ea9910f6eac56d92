"""Optimizers and learning-rate schedules.

Optional packages are imported only when chosen; a missing one raises
``MissingDependency`` naming the pip package, and one that cannot run on the
model's device (bitsandbytes without CUDA) a one-line ``ConfigError``. Schedules
are composed from ``torch.optim.lr_scheduler`` (warm-up + main schedule through
``SequentialLR``).

Schedule-free AdamW (``schedulefree``) has no schedule: it warms up by itself and
keeps two points, the one it trains at (train mode) and the average it is used at
(eval mode). ``evaluation`` puts it in eval mode around whatever uses the weights —
previews, validation and saved LoRA files — and gives the training point back bit
for bit afterwards, so saving or previewing never changes what is trained next. A
resume state is saved in train mode (the training point and the optimizer's own
state), so a resumed run continues exactly.

``fused_backward`` is sd-scripts' ``--fused_backward_pass`` for Adafactor: each
parameter is stepped (its gradient clipped on its own) as soon as its gradient is
complete during backward, and the gradient is freed at once, so no gradient of the
whole network is ever held.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.optim import lr_scheduler

from lora_ext.config import TrainConfig, parse_optimizer_args
from lora_ext.errors import ConfigError, MissingDependency
from lora_ext.training.plan import TrainPlan

# optimizer name → (module, class, pip package)
OPTIONAL_OPTIMIZERS = {
    "AdamW8bit": ("bitsandbytes.optim", "AdamW8bit", "bitsandbytes"),
    "Lion": ("lion_pytorch", "Lion", "lion-pytorch"),
    "Prodigy": ("prodigyopt", "Prodigy", "prodigyopt"),
    "Adafactor": ("transformers.optimization", "Adafactor", "transformers"),
    "AdamWScheduleFree": ("schedulefree", "AdamWScheduleFree", "schedulefree"),
}
SCHEDULE_FREE = frozenset({"AdamWScheduleFree"})
CUDA_ONLY = {"AdamW8bit": "bitsandbytes"}  # optimizers whose library runs on CUDA only


def check_optimizer(config: TrainConfig, device: torch.device) -> None:
    """Refuse, in one line, an optimizer or a fused backward pass that cannot run here."""
    if config.optimizer in CUDA_ONLY and device.type != "cuda":
        raise ConfigError(
            f"the {config.optimizer} optimizer ({CUDA_ONLY[config.optimizer]}) needs a CUDA GPU; "
            f"this model runs on {device.type}",
            hint="choose AdamW or Adafactor",
        )
    if config.fused_backward and config.optimizer != "Adafactor":
        raise ConfigError("the fused backward pass works with the Adafactor optimizer only", hint="choose Adafactor")
    if config.fused_backward and config.gradient_accumulation > 1:
        raise ConfigError(
            "the fused backward pass steps each parameter during backward, so it cannot accumulate gradients",
            hint="set gradient_accumulation to 1",
        )
    if config.fused_backward and config.mixed_precision == "fp16":
        raise ConfigError("the fused backward pass cannot unscale fp16 gradients", hint="use bf16")


def is_schedule_free(config: TrainConfig) -> bool:
    return config.optimizer in SCHEDULE_FREE


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


def build_optimizer(config: TrainConfig, groups: list[dict[str, Any]], warmup_steps: int = 0) -> torch.optim.Optimizer:
    """The configured optimizer over ``groups`` (each with its own ``lr``); ``warmup_steps`` for schedule-free."""
    kwargs: dict[str, Any] = {"weight_decay": config.weight_decay}
    if config.optimizer == "Adafactor":
        # A fixed learning rate, as sd-scripts' common Adafactor setup.
        kwargs.update(scale_parameter=False, relative_step=False, warmup_init=False)
    if config.optimizer == "SGD":
        kwargs["momentum"] = 0.9
    if is_schedule_free(config):
        kwargs.update(warmup_steps=warmup_steps, foreach=False)  # one parameter at a time: no stacked temporaries
    kwargs.update(parse_optimizer_args(config.optimizer_args))
    optimizer = optimizer_class(config.optimizer)(groups, **kwargs)
    if is_schedule_free(config):
        optimizer.train()
    return optimizer


def _schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    return type(optimizer).__name__ in SCHEDULE_FREE


@contextlib.contextmanager
def evaluation(optimizer: torch.optim.Optimizer | None) -> Iterator[None]:
    """The weights as they are to be used (schedule-free: the averaged point) for the duration; the training
    point is restored exactly afterwards (``train()`` alone would round it)."""
    if optimizer is None or not _schedule_free(optimizer) or not optimizer.param_groups[0].get("train_mode"):
        yield
        return
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    training_point = [p.detach().clone() for p in parameters]
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
        with torch.no_grad():
            for parameter, value in zip(parameters, training_point, strict=True):
                parameter.copy_(value)


@contextlib.contextmanager
def fused_backward(optimizer: torch.optim.Optimizer, max_grad_norm: float) -> Iterator[None]:
    """Step each parameter from inside backward as soon as its gradient is complete, then free the gradient.

    The optimizer's own ``step`` runs on a one-parameter view of the parameter's group
    (same hyper-parameters, same state), so the maths stays the library's.
    """
    handles = []
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            handles.append(parameter.register_post_accumulate_grad_hook(_step_one(optimizer, group, max_grad_norm)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _step_one(optimizer: torch.optim.Optimizer, group: dict[str, Any], max_grad_norm: float):
    def hook(parameter: torch.Tensor) -> None:
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([parameter], max_grad_norm)
        groups = optimizer.param_groups
        optimizer.param_groups = [{**group, "params": [parameter]}]
        try:
            optimizer.step()
        finally:
            optimizer.param_groups = groups
        parameter.grad = None

    return hook


def describe_optimizer(optimizer: torch.optim.Optimizer, config: TrainConfig) -> str:
    """``ss_optimizer``: the class path and its extra arguments."""
    cls = type(optimizer)
    args = parse_optimizer_args(config.optimizer_args)
    args.setdefault("weight_decay", config.weight_decay)
    rendered = ",".join(f"{k}={v}" for k, v in args.items())
    return f"{cls.__module__}.{cls.__name__}({rendered})"


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, plan: TrainPlan) -> lr_scheduler.LRScheduler:
    """The configured schedule, with ``plan.warmup_steps`` of linear warm-up in front (schedule-free: constant;
    the optimizer warms up itself)."""
    if is_schedule_free(config):
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
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
