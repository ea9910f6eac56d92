"""Peak memory of a training run, estimated before it starts; ``memory_mode = auto`` fits it to the free memory.

peak = what the device holds now (the loaded model) + the adapter network (parameters,
gradients, optimizer state) + the activations backward keeps + a working set,
with fp8 base weights taking their share off the model (on a GPU) or adding the fp8
copies (on a CPU, where the originals stay).

The activations are not guessed from a table: ``probe`` runs the host's own UNet
forward (and the text encoders' when they train), with the network attached and the
run's autocast, at three small latent sizes (on meta tensors: shapes only, no compute), and
records every tensor autograd saves
(each storage once, parameters left out), per checkpointed block. Every saved tensor
grows with the latent's pixel count p as a + b·p (convolutions, linears, norms,
memory-efficient attention) or c·p² (attention maps a plain attention implementation
keeps), so three probes give the exact polynomial, and any resolution and batch follow
from it. With gradient checkpointing only the blocks' inputs stay, plus one block's
activations while it is recomputed in backward.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from lora_ext.config import TrainConfig
from lora_ext.host import Host, SizeCondition

GIB = 1024**3
# Latent sides of the three probes, per family: SD1/SD2 UNets downsample 3 times, SDXL's twice.
PROBE_SIDES = {"sd1": (8, 16, 24), "sd2": (8, 16, 24), "sdxl": (8, 12, 16)}
# Bytes of optimizer state per trainable parameter (fp32 unless the library quantises); Adafactor is computed.
STATE_BYTES = {"AdamW": 8, "AdamWScheduleFree": 8, "AdamW8bit": 2, "Lion": 4, "Prodigy": 16, "SGD": 4}
# Besides what autograd keeps, backward holds the gradient of the activation it is at and the one it makes,
# and a layer's forward its output and a temporary: a few times the largest saved tensor. Fitted to the peaks
# bench/memory.py measures, which every SD1.5 row overestimated with 3.0 (by 0.02–0.2 GiB; 2.5 takes 0.01 GiB
# off at 384 px, and nothing that shows on SDXL, whose largest saved tensor is a few MiB there).
WORKING_SET = 2.5
# On a CPU the process also grows by what the run builds around its steps (the dataset, the cached latents and
# conditioning, modules imported on first use): about 40 MiB (bench/memory.py); a GPU's allocator counts none of it.
CPU_RUNTIME = 40 * 2**20
FIT_MARGIN = 0.9  # auto leaves a tenth of the free memory for the allocator and the host


@dataclass(frozen=True)
class Polynomial:
    """Bytes as a + b·p + c·p² of the latent pixel count p (one sample)."""

    a: float
    b: float
    c: float

    def __call__(self, pixels: float) -> float:
        return max(0.0, self.a + self.b * pixels + self.c * pixels * pixels)

    @staticmethod
    def fit(pixels: tuple[float, ...], values: tuple[float, ...]) -> Polynomial:
        matrix = torch.tensor([[1.0, p, p * p] for p in pixels], dtype=torch.float64)
        solved = torch.linalg.solve(matrix, torch.tensor(values, dtype=torch.float64))
        return Polynomial(*(float(v) for v in solved))


@dataclass(frozen=True)
class ActivationProfile:
    """What autograd keeps per sample: outside the checkpointed blocks, in each block, at the blocks' inputs."""

    outside: Polynomial
    blocks: tuple[Polynomial, ...]
    boundaries: Polynomial
    largest: Polynomial
    parameter_shapes: tuple[tuple[int, ...], ...] = ()  # the adapter network's, for its own bytes

    def kept(self, pixels: float, checkpointing: bool) -> float:
        if not checkpointing:
            return self.outside(pixels) + sum(block(pixels) for block in self.blocks)
        return self.outside(pixels) + self.boundaries(pixels) + max((b(pixels) for b in self.blocks), default=0.0)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes at the peak of a training step, by part."""

    device: str
    resident: float  # what the device holds before the run (the loaded model, on a CPU the whole process)
    fp8_change: float  # fp8 base: the UNet weights' change (negative on a GPU, the fp8 copies on a CPU)
    network: float  # adapter parameters, their gradients and the optimizer state
    activations: float
    working: float

    @property
    def added(self) -> float:
        """What training adds to what the device holds now."""
        return self.fp8_change + self.network + self.activations + self.working

    @property
    def total(self) -> float:
        return self.resident + self.added

    def describe(self) -> str:
        """``≈ 9.4 GiB peak on cuda (model 6.9, LoRA and optimizer 0.3, activations 1.8, working 0.4)``.

        On a CPU the resident part is the whole process (the WebUI with everything it loaded), not the model alone,
        and says so."""
        held = _gib(self.resident + self.fp8_change)
        rest = (
            f"LoRA and optimizer {_gib(self.network)}, activations {_gib(self.activations)}, "
            f"working {_gib(self.working)}"
        )
        if self.device == "cpu":
            return f"≈ {_gib(self.total)} GiB peak on cpu (this process now {held}, {rest})"
        return f"≈ {_gib(self.total)} GiB peak on {self.device} (model {held}, {rest})"


def _gib(value: float) -> str:
    return f"{value / GIB:.1f}"


# -- the probe ------------------------------------------------------------------------------------


def _storage_key(tensor: torch.Tensor) -> int:
    """One key per storage, for real and fake tensors alike (a fake storage has no data pointer)."""
    return tensor.untyped_storage()._cdata


@contextlib.contextmanager
def _recording(blocks: list[torch.nn.Module], exclude: set[int]) -> Iterator[dict[str, Any]]:
    """Saved-tensor bytes per block (``None``: outside any) and the blocks' input bytes, each storage once."""
    record: dict[str, Any] = {"per_block": {}, "inputs": {}, "largest": 0, "current": None, "seen": set()}
    handles = []

    def enter(index: int):
        def pre_hook(module, args, kwargs):
            record["current"] = index
            for value in (*args, *kwargs.values()):
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    record["inputs"].setdefault(_storage_key(value), value.untyped_storage().nbytes())

        return pre_hook

    def leave(module, args, output):
        record["current"] = None

    for index, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(enter(index), with_kwargs=True))
        handles.append(block.register_forward_hook(leave))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = _storage_key(tensor)
        if pointer in exclude or pointer in record["seen"]:
            return tensor
        record["seen"].add(pointer)
        where = record["current"]
        record["per_block"][where] = record["per_block"].get(where, 0) + storage.nbytes()
        record["largest"] = max(record["largest"], storage.nbytes())
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield record
    finally:
        for handle in handles:
            handle.remove()


def _autocast(host: Host, config: TrainConfig):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
    return torch.autocast(host.device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def probe(host: Host, config: TrainConfig) -> ActivationProfile:
    """Run the host's forward at three small sizes with the run's network attached and fit what autograd keeps.

    The forward runs on the meta device (shapes and dtypes only: nothing is computed or
    allocated), or for real at those small sizes where a host's code needs real data.
    Nothing is trained and every draw comes from local generators; the host is handed back as it was.
    """
    from lora_ext.training.inject import attached, checkpointed_blocks
    from lora_ext.training.network import build_network, network_spec

    spec = network_spec(config)
    parts = host.parts()
    network = build_network(parts, host.info.family, spec, config.seed).to(host.device, torch.float32)
    network.train()
    shapes = tuple(tuple(p.shape) for p in network.parameters())
    with host.training_session(config), torch.random.fork_rng(devices=[]), attached(network, parts):
        try:
            samples = _forwards(host, config, network, meta=True)
        except Exception:  # noqa: BLE001 - a kernel or host code that needs real data (xformers, a WebUI's ops)
            samples = _forwards(host, config, network, meta=False)
    sides = PROBE_SIDES.get(host.info.family, PROBE_SIDES["sd1"])
    return _profile(tuple(float(side * side) for side in sides), samples, len(checkpointed_blocks(parts.unet)), shapes)


def _forwards(host: Host, config: TrainConfig, network: torch.nn.Module, meta: bool) -> list[dict[str, Any]]:
    """One recorded forward per probe size (text encoders too when they train)."""
    from lora_ext.training.inject import checkpointed_blocks

    parts = host.parts()
    roots = [parts.unet, *(encoder.root for encoder in parts.text_encoders), network]
    blocks = checkpointed_blocks(parts.unet)
    train_text = bool(network.text_encoder_names)
    samples = []
    for side in PROBE_SIDES.get(host.info.family, PROBE_SIDES["sd1"]):
        size = SizeCondition((side * 8, side * 8), (0, 0), (side * 8, side * 8))
        with contextlib.ExitStack() as stack:
            if not train_text:  # a frozen text encoder's output is cached: computed for real, outside the record
                with torch.no_grad():
                    conditioning = host.encode_prompts(["a photo of a cat"], [size])
            # the parameters are what the model and the network hold anyway: their storages are left out
            if meta:
                stack.enter_context(host.weights_away())
            exclude = stack.enter_context(_on_meta(roots)) if meta else _storage_keys(roots)
            if meta:
                stack.enter_context(_AsFused())
            record = stack.enter_context(_recording(blocks, exclude))
            stack.enter_context(torch.enable_grad())
            stack.enter_context(_autocast(host, config))
            if train_text:
                conditioning = host.encode_prompts(["a photo of a cat"], [size])
            elif meta:
                conditioning = conditioning.to("meta")
            latents = torch.zeros((1, 4, side, side), device=host.device)
            output = host.predict(latents, torch.full((1,), 500, dtype=torch.long), conditioning)
            del output, conditioning
        samples.append(record)
    return samples


class _FusedAttention(torch.autograd.Function):
    """What a fused attention kernel keeps for backward (query, key, value, output, log-sum-exp), on meta."""

    @staticmethod
    def forward(ctx, query, key, value):
        output = query.new_empty((*query.shape[:-1], value.shape[-1]))
        logsumexp = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, output, logsumexp)
        return output

    @staticmethod
    def backward(ctx, grad):  # never called: the probe does not run backward
        raise NotImplementedError


class _AsFused(torch.overrides.TorchFunctionMode):
    """``scaled_dot_product_attention`` as its fused kernels keep memory (flash / memory-efficient, on CPU and
    GPU alike); on meta tensors torch would take the plain path, which keeps the whole attention matrix."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            return _FusedAttention.apply(*args[:3])
        return func(*args, **(kwargs or {}))


def _storage_keys(roots: list[torch.nn.Module]) -> set[int]:
    return {_storage_key(tensor) for root in roots for tensor in (*root.parameters(), *root.buffers())}


@contextlib.contextmanager
def _on_meta(roots: list[torch.nn.Module]) -> Iterator[set[int]]:
    """Every parameter and buffer of ``roots`` swapped for a meta tensor (shapes and dtypes, no data) for the
    duration, so a forward only propagates shapes; yields the meta tensors' storage keys."""
    from torch.nn.utils.stateless import _reparametrize_module

    with contextlib.ExitStack() as stack:
        keys: set[int] = set()
        for root in roots:
            tensors = {name: t.to("meta") for name, t in (*root.named_parameters(), *root.named_buffers())}
            keys |= {_storage_key(t) for t in tensors.values()}
            stack.enter_context(_reparametrize_module(root, tensors))
        yield keys


def _profile(
    pixels: tuple[float, ...], samples: list[dict[str, Any]], count: int, shapes: tuple[tuple[int, ...], ...]
) -> ActivationProfile:
    def fit(values: list[float]) -> Polynomial:
        return Polynomial.fit(pixels, tuple(values))

    outside = fit([s["per_block"].get(None, 0) for s in samples])
    blocks = tuple(fit([s["per_block"].get(index, 0) for s in samples]) for index in range(count))
    boundaries = fit([sum(s["inputs"].values()) for s in samples])
    return ActivationProfile(outside, blocks, boundaries, fit([s["largest"] for s in samples]), shapes)


# -- the estimate ------------------------------------------------------------------------------------


def network_bytes(shapes: tuple[tuple[int, ...], ...], config: TrainConfig) -> float:
    """Adapter parameters and gradients (fp32) and the optimizer's state, from the parameters' shapes."""
    sizes = [math.prod(shape) for shape in shapes]
    count = sum(sizes)
    gradients = max(sizes, default=0) if config.fused_backward else count
    if config.optimizer == "Adafactor":  # factored second moments: a row and a column per matrix
        state = sum(shape[0] + math.prod(shape[1:]) if len(shape) >= 2 else math.prod(shape) for shape in shapes)
    else:
        state = count * STATE_BYTES.get(config.optimizer, 8) // 4
    return 4.0 * (count + gradients + state)


def _fp8_weights(host: Host) -> list[torch.Tensor]:
    """The UNet weights ``fp8_weights`` converts."""
    from lora_ext.training.fp8 import convertible

    unet = host.parts().unet
    first = next(unet.parameters(), None)
    return [m.weight for m in unet.modules() if convertible(m) and m.weight is not first]


def fp8_change(host: Host, config: TrainConfig) -> float:
    """Bytes fp8 base weights add (CPU: the fp8 copies beside the originals) or free (GPU: the originals leave)."""
    if not config.fp8_base:
        return 0.0
    weights = _fp8_weights(host)
    numel = sum(w.numel() for w in weights)
    if host.device.type == "cpu":
        return float(numel)
    return float(numel - sum(w.numel() * w.element_size() for w in weights))


def fp8_upcast(host: Host, config: TrainConfig) -> float:
    """The largest layer's weight upcast for its forward (fp8 base weights): one at a time, in the working set."""
    if not config.fp8_base:
        return 0.0
    return float(max((w.numel() * w.element_size() for w in _fp8_weights(host)), default=0))


def resident_bytes(device: torch.device) -> float:
    """What the device holds now: CUDA memory allocated, or the process's resident set on a CPU."""
    if device.type == "cuda":
        return float(torch.cuda.memory_allocated(device))
    with open("/proc/self/statm") as handle:
        return float(int(handle.read().split()[1]) * 4096)


def estimate_memory(host: Host, config: TrainConfig, profile: ActivationProfile) -> MemoryEstimate:
    """The peak of a training step at ``config``'s resolution and batch, from ``profile`` (probed with the same
    network and precision: ``profile_key``)."""
    pixels = (config.resolution // 8) ** 2
    activations = config.batch_size * profile.kept(pixels, config.gradient_checkpointing)
    working = WORKING_SET * config.batch_size * profile.largest(pixels) + fp8_upcast(host, config)
    if host.device.type == "cpu":
        working += CPU_RUNTIME
    return MemoryEstimate(
        device=host.device.type,
        resident=resident_bytes(host.device),
        fp8_change=fp8_change(host, config),
        network=network_bytes(profile.parameter_shapes, config),
        activations=activations,
        working=working,
    )


# -- auto ------------------------------------------------------------------------------------------


def free_bytes(device: torch.device) -> float:
    """Memory the run may still take: CUDA's free memory, or MemAvailable on a CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    with open("/proc/meminfo") as handle:
        available = next(line for line in handle if line.startswith("MemAvailable:"))
    return float(int(available.split()[1]) * 1024)


# The savings auto turns on, in order: each costs speed or changes the run less than the next.
SAVINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gradient checkpointing", {"gradient_checkpointing": True}),
    ("fp8 base weights", {"fp8_base": True}),
    ("UNet only", {"train_text_encoder": False}),
)


@dataclass(frozen=True)
class Fitted:
    """The config auto settled on, its estimate and what it said."""

    config: TrainConfig
    estimate: MemoryEstimate
    free: float
    line: str
    fits: bool


def fit_to_memory(config: TrainConfig, estimate: Callable[[TrainConfig], MemoryEstimate], free: float) -> Fitted:
    """The first of ``config`` and its savings (added one by one) whose estimate fits ``free``; says which."""
    chosen, turned_on = config, []
    current = estimate(chosen)
    for name, changes in SAVINGS:
        if current.added <= FIT_MARGIN * free:
            break
        if all(getattr(chosen, key) == value for key, value in changes.items()):
            continue
        chosen = chosen.replace(**changes)
        turned_on.append(name)
        current = estimate(chosen)
    fits = current.added <= FIT_MARGIN * free
    needed, available = _gib(current.added), _gib(free)
    if not turned_on:
        line = f"memory auto: the settings fit ({needed} GiB more of {available} GiB free)"
    elif fits:
        line = f"memory auto: turned on {', '.join(turned_on)} to fit ({needed} GiB more of {available} GiB free)"
    else:
        line = (
            f"memory auto: even with {', '.join(turned_on)} the run needs {needed} GiB more of {available} GiB free; "
            "lower the resolution or the batch size"
        )
    return Fitted(chosen, current, free, line, fits)


class MemoryCache:
    """Activation profiles per (model, settings that change them); owned by the app, shared by its requests."""

    def __init__(self, measure: Callable[[Host, TrainConfig], ActivationProfile] = probe) -> None:
        self._measure = measure
        self._profiles: dict[tuple, ActivationProfile] = {}
        self._lock = threading.Lock()

    def known(self, host: Host, config: TrainConfig) -> ActivationProfile | None:
        return self._profiles.get(profile_key(host, config))

    def profile(self, host: Host, config: TrainConfig) -> ActivationProfile:
        key = profile_key(host, config)
        with self._lock:
            if key not in self._profiles:
                self._profiles[key] = self._measure(host, config)
            return self._profiles[key]


def profile_key(host: Host, config: TrainConfig) -> tuple:
    """What the saved activations depend on besides resolution and batch (both scale the profile)."""
    info = host.info
    return (
        info.name,
        info.short_hash,
        str(host.device),
        config.network_type,
        config.dora,
        config.rank,
        config.trained_conv_rank,
        config.train_text_encoder and config.text_encoder_lr > 0,
        config.unet_lr > 0,
        config.mixed_precision,
    )


def fit_for(host: Host, config: TrainConfig, cache: MemoryCache | None = None) -> Fitted:
    """``fit_to_memory`` on ``host``'s device: each candidate estimated from a probe (cached per network)."""
    cache = cache or MemoryCache()
    return fit_to_memory(
        config,
        lambda candidate: estimate_memory(host, candidate, cache.profile(host, candidate)),
        free_bytes(host.device),
    )


def memory_note(host: Host, config: TrainConfig, cache: MemoryCache) -> tuple[str, str]:
    """(line, kind) for the page: the estimated peak and the free memory; with ``memory_mode`` auto, what it chose."""
    if config.memory_mode == "auto":
        fitted = fit_for(host, config, cache)
        return f"{fitted.line} · {fitted.estimate.describe()}", "ok" if fitted.fits else "warn"
    estimate = estimate_memory(host, config, cache.profile(host, config))
    free = free_bytes(host.device)
    fits = estimate.added <= FIT_MARGIN * free
    line = f"Memory: {estimate.describe()}; {_gib(free)} GiB free"
    return (line, "ok") if fits else (line + " — too little: set memory_mode to auto or lower the resolution", "warn")
