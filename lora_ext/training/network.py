"""The network of trainable LoRA / LoCon / LoHa / LoKr (optionally DoRA) modules of a run.

Each module is the format's own trainable module (``LoraAdapter.initial(...).trainable(...)``,
``LohaAdapter``, ``LokrAdapter``, ``DoraAdapter`` around any of them; see ``formats/``): its
forward, ΔW and saved tensors are the format's maths, so training and loading share one
adapter. A module never replaces the layer it adapts: the
injector adds its output to the layer's output through a forward hook
(``y + up(down(x)) · scale``, as kohya's monkey-patched forward does), or, for OpenCLIP's
fused attention, adds ``delta_weight(...)`` to a slice of ``in_proj_weight`` (see
``inject.py``). Parameters are fp32 whatever the base model's dtype.

Dropout masks come from the network's own ``DropoutDraws``, reseeded for every
micro-batch, never from torch's global generator: that one is shared by every
thread of the process (a generation, a tagger, another extension), so a draw
from it depends on what else runs at the same time. Every process of a
data-parallel run reseeds it alike and cuts per-sample masks to its rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lora_ext.config import TrainConfig
from lora_ext.formats import unet_names
from lora_ext.formats.base import Adapter, DropoutDraws, Dropouts, LayerOp, TrainableAdapter
from lora_ext.formats.dora import DoraAdapter
from lora_ext.formats.keys import group_keys
from lora_ext.formats.loha import LohaAdapter
from lora_ext.formats.lokr import LokrAdapter
from lora_ext.formats.lora import LoraAdapter
from lora_ext.host import ModelParts

# kohya's target classes, in both namings (ldm / diffusers).
UNET_ATTENTION_CLASSES = frozenset({"SpatialTransformer", "Transformer2DModel"})
UNET_CONV_CLASSES = frozenset({"ResBlock", "ResnetBlock2D", "Downsample", "Downsample2D", "Upsample", "Upsample2D"})
TEXT_ENCODER_CLASSES = frozenset({"CLIPAttention", "CLIPSdpaAttention", "CLIPFlashAttention2", "CLIPMLP"})

Projection = Literal["q", "k", "v", "out"]
DROPOUT_STREAM = 0x6C6F7261  # mixed into a micro-batch's seed, so masks and noise never share a stream
# The format each network type trains (LoCon is LoRA with the 3×3 convolutions too).
ALGORITHMS: dict[str, type[Adapter]] = {
    "lora": LoraAdapter,
    "locon": LoraAdapter,
    "loha": LohaAdapter,
    "lokr": LokrAdapter,
}


@dataclass(frozen=True)
class NetworkSpec:
    """The shape of a network: what the config says about ranks and dropout."""

    rank: int
    alpha: float
    conv_rank: int = 0  # 0: no 3×3 convolutions (plain LoRA)
    conv_alpha: float = 1.0
    dropout: float = 0.0
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    train_unet: bool = True
    train_text_encoder: bool = True
    algorithm: str = "lora"  # an ``ALGORITHMS`` key
    dora: bool = False  # weight decomposition around the algorithm's adapter
    lokr_factor: int = -1  # LoKr's split of each dimension (``formats.lokr.factorization``)

    def initial(self, weight: torch.Tensor, rank: int, alpha: float, generator: torch.Generator) -> Adapter:
        """A fresh adapter of this network's format for ``weight`` (ΔW = 0), drawn from ``generator``."""
        fmt = ALGORITHMS[self.algorithm]
        if self.dora:
            return DoraAdapter.initial(weight, rank, alpha, generator, inner=fmt)
        if fmt is LokrAdapter:
            return LokrAdapter.initial(weight, rank, alpha, generator, factor=self.lokr_factor)
        return fmt.initial(weight, rank, alpha, generator)


def network_spec(config: TrainConfig) -> NetworkSpec:
    """The network ``config`` asks for."""
    return NetworkSpec(
        rank=config.rank,
        alpha=config.alpha,
        conv_rank=config.trained_conv_rank,
        conv_alpha=config.conv_alpha,
        dropout=config.dropout,
        rank_dropout=config.rank_dropout,
        module_dropout=config.module_dropout,
        train_unet=config.trains_unet,
        train_text_encoder=config.trains_text_encoder,
        algorithm=config.network_type,
        dora=config.dora,
        lokr_factor=config.lokr_factor,
    )


@dataclass(frozen=True)
class HookTarget:
    """A base layer whose output gets ``lora(x)`` added."""

    lora_name: str
    module: nn.Module


@dataclass(frozen=True)
class FusedAttentionTarget:
    """An ``nn.MultiheadAttention`` whose q/k/v slices of ``in_proj_weight`` and ``out_proj`` get LoRAs."""

    module: nn.MultiheadAttention
    lora_names: dict[str, str]  # projection ('q', 'k', 'v', 'out') → lora name


class LoraNetwork(nn.Module):
    """All adapter modules of a run, keyed by their kohya names."""

    def __init__(self, spec: NetworkSpec, seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self._init_generator = torch.Generator().manual_seed(seed)  # lora_down's initial weights
        self.loras = nn.ModuleDict()
        self.hook_targets: list[HookTarget] = []
        self.fused_targets: list[FusedAttentionTarget] = []
        self.text_encoder_names: set[str] = set()
        self.draws = DropoutDraws()  # dropout masks; see reseed()

    @property
    def generator(self) -> torch.Generator:
        """The dropout masks' generator (gradient checkpointing replays it)."""
        return self.draws.generator

    def reseed(self, seed: int, rows: range | None = None, total: int = 0) -> None:
        """Start the dropout masks of one micro-batch from ``seed`` (a stream apart from the noise's).

        ``rows``: this process's rows of the ``total`` samples (a data-parallel run).
        """
        self.draws.reseed(seed ^ DROPOUT_STREAM, rows, total)

    def add(
        self, lora_name: str, base: nn.Module | torch.Tensor, conv3x3: bool, text_encoder: bool
    ) -> TrainableAdapter:
        """A fresh module for ``base`` (a layer, or the weight slice of a fused projection)."""
        if lora_name in self.loras:
            raise ValueError(f"two layers map to the LoRA name {lora_name}")
        rank, alpha = (self.spec.conv_rank, self.spec.conv_alpha) if conv3x3 else (self.spec.rank, self.spec.alpha)
        weight = base.detach() if isinstance(base, torch.Tensor) else base.weight.detach()
        dropouts = Dropouts(self.spec.dropout, self.spec.rank_dropout, self.spec.module_dropout)
        initial = self.spec.initial(weight, rank, alpha, self._init_generator)
        op = LayerOp() if isinstance(base, torch.Tensor) else LayerOp.of(base)
        module = initial.trainable(op, dropouts, self.draws)
        self.loras[lora_name] = module
        if text_encoder:
            self.text_encoder_names.add(lora_name)
        return module

    def unet_modules(self) -> Iterator[TrainableAdapter]:
        return (m for name, m in self.loras.items() if name not in self.text_encoder_names)

    def text_encoder_modules(self) -> Iterator[TrainableAdapter]:
        return (m for name, m in self.loras.items() if name in self.text_encoder_names)

    def output_parameters(self) -> set[int]:
        """``id``s of every module's output-side factors (LoRA+ trains them faster)."""
        return {id(p) for module in self.loras.values() for p in module.output_parameters()}

    def kohya_state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Every module's tensors as its format writes them (``<name>.lora_down.weight``, ``….lora_up.weight``, ``….alpha``)."""
        return {
            f"{name}.{key}": tensor.to("cpu", dtype).contiguous()
            for name, module in self.loras.items()
            for key, tensor in module.to_state_dict().items()
        }

    def load_kohya_state_dict(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Copy matching tensors in; returns the network's module names that the file did not cover."""
        modules = group_keys(state).modules
        return [name for name, module in self.loras.items() if not module.load(modules.get(name, {}))]


def parameter_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the trained parameters: fp32 whatever the model's, fp64 on a model held in fp64 (where
    the tests check the arithmetic of a run exactly)."""
    return torch.float64 if model_dtype == torch.float64 else torch.float32


def is_linear(module: nn.Module) -> bool:
    """A linear layer: ``nn.Linear``, or one that only looks like it (Forge's ``ForgeOperations.Linear`` is a plain
    ``nn.Module`` with ``in_features``/``out_features`` and a 2-D ``weight``)."""
    if isinstance(module, nn.Linear):
        return True
    weight = getattr(module, "weight", None)
    return (
        not isinstance(module, nn.modules.conv._ConvNd)
        and isinstance(getattr(module, "in_features", None), int)
        and isinstance(getattr(module, "out_features", None), int)
        and isinstance(weight, torch.Tensor)
        and weight.shape == (module.out_features, module.in_features)
    )


def _conv_kind(module: nn.Module) -> str | None:
    if is_linear(module):
        return "linear"
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return "conv1x1" if module.kernel_size == (1, 1) else "conv3x3"
    return None


def build_network(parts: ModelParts, family: str, spec: NetworkSpec, seed: int = 0) -> LoraNetwork:
    """Create LoRA modules for every layer kohya targets in ``parts`` (nothing is attached yet).

    The initial weights come from ``seed`` alone, in module order, never from the global generator.
    """
    network = LoraNetwork(spec, seed)
    if spec.train_unet:
        _add_unet(network, parts, family, spec)
    if spec.train_text_encoder:
        for encoder in parts.text_encoders:
            if encoder.kind == "open_clip":
                _add_open_clip(network, encoder.root, family, encoder.index)
            else:
                _add_hf_clip(network, encoder.root, family, encoder.index)
    return network


def _add_unet(network: LoraNetwork, parts: ModelParts, family: str, spec: NetworkSpec) -> None:
    classes = UNET_ATTENTION_CLASSES | (UNET_CONV_CLASSES if spec.conv_rank > 0 else frozenset())
    layout = unet_names.layout_from_names((name for name, _ in parts.unet.named_modules()), parts.naming)
    seen: set[int] = set()
    for parent_name, parent in parts.unet.named_modules():
        if type(parent).__name__ not in classes:
            continue
        for child_name, child in parent.named_modules():
            kind = _conv_kind(child)
            if kind is None or id(child) in seen:
                continue
            full_name = f"{parent_name}.{child_name}" if child_name else parent_name
            ldm, diffusers = unet_names.unet_name_pair(full_name, parts.naming, layout)
            lora_name = unet_names.trained_unet_name(family, ldm, diffusers)
            if lora_name is None:
                continue
            seen.add(id(child))
            network.add(lora_name, child, conv3x3=kind == "conv3x3", text_encoder=False)
            network.hook_targets.append(HookTarget(lora_name, child))


def _add_hf_clip(network: LoraNetwork, root: nn.Module, family: str, index: int) -> None:
    for parent_name, parent in root.named_modules():
        if type(parent).__name__ not in TEXT_ENCODER_CLASSES:
            continue
        for child_name, child in parent.named_children():
            if not is_linear(child):
                continue
            hf_name = unet_names.hf_text_name(f"{parent_name}.{child_name}")
            lora_name = unet_names.trained_text_name(family, index, hf_name)
            network.add(lora_name, child, conv3x3=False, text_encoder=True)
            network.hook_targets.append(HookTarget(lora_name, child))


def _add_open_clip(network: LoraNetwork, root: nn.Module, family: str, index: int) -> None:
    attentions: list[str] = []  # their out_proj is one of the fused target's four LoRAs
    # OpenCLIP's blocks run sequence first (tokens, batch, width) unless its attention is batch_first.
    heads = [module for module in root.modules() if isinstance(module, nn.MultiheadAttention)]
    batch_axis = 0 if any(head.batch_first for head in heads) else 1
    for name, module in root.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            attentions.append(name + ".")
            hf_names = unet_names.open_clip_attention_names(name)
            if not module._qkv_same_embed_dim or hf_names is None:
                continue
            names = {
                projection: unet_names.trained_text_name(family, index, hf_name)
                for projection, hf_name in hf_names.items()
            }
            q, k, v = module.in_proj_weight.chunk(3)
            slices = {"q": q, "k": k, "v": v, "out": module.out_proj.weight}
            for projection, lora_name in names.items():
                network.add(lora_name, slices[projection], conv3x3=False, text_encoder=True)
            network.fused_targets.append(FusedAttentionTarget(module, names))
        elif is_linear(module) and not name.startswith(tuple(attentions)):
            hf_name = unet_names.open_clip_text_name(name)
            if hf_name is not None:
                lora_name = unet_names.trained_text_name(family, index, hf_name)
                network.add(lora_name, module, conv3x3=False, text_encoder=True).batch_axis = batch_axis
                network.hook_targets.append(HookTarget(lora_name, module))
