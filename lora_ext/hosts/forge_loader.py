"""Train Tools' loader owning ``<lora:…>`` inside Forge, through Forge's own patcher.

Our takeover keeps everything that is ours — names and aliases, every format, ``te/unet/dyn/lbw``,
warnings, the ``Lora hashes`` infotext (``LoraTakeover``, ``NetworkLoader.patch_list``) — but writes
no weight. As Forge's built-in does (``extensions-builtin/sd_forge_lora/networks.py``), it clones
``forge_objects_original.unet``/``.clip``, hands the clones patches with ``add_patches`` and sets
``forge_objects``, ``forge_objects_after_applying_lora`` and ``current_lora_hash``; Forge's memory
manager merges them when it loads the model (``LoraLoader.refresh``: its own backups, device moves,
fp8 storage, online mode). So exact restore and fast switching on Forge are Forge's, not ours. Engines
our key maps do not cover (Flux, SD3.5, Chroma…) and a UNet stored as nf4/fp4/GGUF (packed weights) stay
with Forge's built-in (``handles``).

Patches are Forge's own types where Forge knows the format and the patch covers the whole weight: ``lora``
for an up·down product (with its Tucker ``mid`` if any), ``loha`` and ``lokr`` with the file's factors (the scale folded into ``alpha``,
which Forge divides by the rank, or for LoKr into the small factor ``w1``), so Forge forms ΔW only while
it merges. A ``diff`` (our ΔW, fp32) carries every other format (IA³, OFT, GLoRA, DoRA…), placement or
bias. Forge adds each to the weight in fp32 and rounds once, which is our merge. The patch filename and ``current_lora_hash`` carry a digest of everything the
patches depend on, because ``LoraLoader.refresh`` re-merges only when the patch keys change.
"""

from __future__ import annotations

import torch

from lora_ext.formats import Adapter
from lora_ext.formats.hashes import forge_lora_short_hash
from lora_ext.formats.loha import LohaAdapter
from lora_ext.formats.lokr import LokrAdapter
from lora_ext.formats.lora import LoraAdapter
from lora_ext.hosts.a1111_loader import NO_LORA, LoraTakeover, forget_builtin_networks
from lora_ext.hosts.forge_engine import QUANTIZED_STORAGE, forge_family, prefix_of
from lora_ext.loading.patch_list import FilePatches, PatchList, delta, needs_base
from lora_ext.loading.patcher import ParamPatch
from lora_ext.loading.prompt import LoraToken

HASH_PREFIX = "train_tools:"  # our current_lora_hash values; Forge's own are str(list) ("[]" for none)
FULL_PRECISION = (torch.float32, torch.float16, torch.bfloat16)


def forge_patch(patches: list[ParamPatch], shape: tuple[int, ...], base: torch.Tensor | None):
    """One file's patches on one parameter as a Forge patch value: one of Forge's own types (``lora``, ``loha``,
    ``lokr``: the factors as the file holds them) or ``("diff", (ΔW,))``."""
    if len(patches) == 1 and patches[0].placement.whole and not patches[0].is_bias:
        own = _own_patch_type(patches[0].adapter, patches[0].multiplier)
        if own is not None:
            return own
    return ("diff", (delta(patches, shape, base).cpu(),))  # kept on the CPU, as Forge keeps a LoRA file's tensors


def _own_patch_type(adapter: Adapter, multiplier: float):
    """``adapter`` as Forge's own patch type, with our scale and multiplier folded into what Forge scales by
    (``backend/patcher/lora.py``: ``merge_lora_to_weight``), or None for a type Forge lacks."""
    factors = adapter.low_rank_factors(multiplier)
    if factors is not None:
        up, down, scale = factors  # (out, r), (r, in·k); Forge: strength · alpha / r · up @ down
        return ("lora", (up, down, scale * down.shape[0], None, None))
    if isinstance(adapter, LoraAdapter) and adapter.mid is not None:  # Forge forms down ⊗ mid (LyCORIS' CP core)
        return ("lora", (adapter.up, adapter.down, adapter.scale * multiplier * adapter.rank, adapter.mid, None))
    if isinstance(adapter, LohaAdapter):  # Forge: strength · alpha / r · (w1a @ w1b) ⊙ (w2a @ w2b), or Tucker
        alpha = adapter.scale * multiplier * adapter.rank
        if adapter.t1 is not None and adapter.t2 is not None:
            return ("loha", (adapter.w1a, adapter.w1b, alpha, adapter.w2a, adapter.w2b, adapter.t1, adapter.t2, None))
        w1b, w2b = adapter.w1b.flatten(1), adapter.w2b.flatten(1)
        return ("loha", (adapter.w1a, w1b, alpha, adapter.w2a, w2b, None, None, None))
    if isinstance(adapter, LokrAdapter):
        # Forge: kron(w1, w2) · alpha / r, with no alpha (1) given none: our scale goes into the small factor w1
        w1 = adapter.w1.float() if adapter.w1 is not None else adapter.w1a.float() @ adapter.w1b.float()
        w1 = w1 * (adapter.scale * multiplier)
        if adapter.t2 is not None:
            # Forge's torch.kron of its einsum result (not contiguous) fails: w2 goes formed (1/len(w1) of ΔW)
            return ("lokr", (w1, adapter.factors()[1].contiguous(), None, None, None, None, None, None, None))
        w2b = None if adapter.w2b is None else adapter.w2b.flatten(1)
        return ("lokr", (w1, adapter.w2, None, None, None, adapter.w2a, w2b, None, None))
    return None


class ForgeLoraTakeover(LoraTakeover):
    """``LoraTakeover`` whose ``apply`` hands Forge patches instead of merging into weights."""

    lora_hash = staticmethod(forge_lora_short_hash)  # Forge writes and looks up the whole file's sha256

    def handles(self, sd_model) -> bool:
        """SD1/SD2/SDXL engines stored in fp16/bf16/fp32/fp8. Flux, SD3.5, Chroma… (our key maps are ldm's) and a
        UNet stored as nf4/fp4/GGUF (packed weights, whose shapes are not the layers') stay with Forge's built-in."""
        if forge_family(sd_model) is None:
            return False
        storage = sd_model.forge_objects.unet.model.storage_dtype
        return not (isinstance(storage, str) and storage in QUANTIZED_STORAGE)

    def make_builtin_inert(self, sd_model) -> None:
        """The built-in's state is its patched clones and hash on the engine, which ``apply`` replaces."""
        forget_builtin_networks()

    def apply(self, sd_model, specs: list[LoraToken]):
        try:
            patch_list = self._loader().patch_list(specs)
            online = self.online_mode(sd_model)
            # online mode is part of the key, as in Forge's own hash: toggling it re-patches
            key = NO_LORA if patch_list.empty else f"{HASH_PREFIX}{patch_list.signature()}{':online' if online else ''}"
            if sd_model.current_lora_hash != key:
                self._set_patches(sd_model, patch_list, key, online)
                patch_list.report.changed_weights = True
        except Exception:
            # The WebUI shows the error and generates anyway: never with the previous prompt's LoRAs.
            original = sd_model.forge_objects_original
            _set_objects(sd_model, original.unet, original.clip, NO_LORA)
            raise
        return patch_list.report

    def restore(self) -> None:
        """Setting "Built-in", unload: the engine goes back to Forge's unpatched objects (Forge restores the
        weights from its own backups when it next loads the model)."""
        sd_model = _forge_engine()
        if sd_model is not None and str(sd_model.current_lora_hash).startswith(HASH_PREFIX):
            _set_objects(sd_model, sd_model.forge_objects_original.unet, sd_model.forge_objects_original.clip, NO_LORA)

    # -- patches ------------------------------------------------------------------------------------------
    def _set_patches(self, sd_model, patch_list: PatchList, key: str, online: bool) -> None:
        original = sd_model.forge_objects_original
        unet, clip = original.unet, original.clip
        if not patch_list.empty:
            parts = self._host_factory().parts()
            roots = {"unet": parts.unet, **{f"te{e.index}": e.root for e in parts.text_encoders}}
            unet_patches, clip_patches = [], []
            for item in patch_list.files:
                unet_file, clip_file = self._file_patches(item, roots, unet, clip.patcher)
                unet_patches.append((item, unet_file))
                clip_patches.append((item, clip_file))
            if any(patches for _, patches in unet_patches):
                unet = _patched(unet, unet_patches, key, online)
            if any(patches for _, patches in clip_patches):
                clip = _patched(clip, clip_patches, key, online)
        _set_objects(sd_model, unet, clip, key)

    def _file_patches(self, item: FilePatches, roots: dict, unet_patcher, clip_patcher):
        """One file's patches keyed by Forge's parameter names, split into the UNet's and the text encoders'."""
        unet_file: dict = {}
        clip_file: dict = {}
        prefixes: dict[str, str] = {}  # per part: one walk over the model's modules, not one per parameter
        for ref, patches in item.params:
            patcher = unet_patcher if ref.part == "unet" else clip_patcher
            if ref.part not in prefixes:
                prefixes[ref.part] = _prefix(patcher.model, roots[ref.part])
            forge_key = prefixes[ref.part] + ref.name
            base = self.base_weight(patcher, forge_key) if needs_base(patches) else None
            (unet_file if ref.part == "unet" else clip_file)[forge_key] = self.patch_value(patches, ref.shape, base)
        return unet_file, clip_file

    # -- what differs between Forge and Neo (``hosts/neo.py``) -----------------------------------------------
    def patch_value(self, patches: list[ParamPatch], shape: tuple[int, ...], base: torch.Tensor | None):
        """One file's patches on one parameter, as this WebUI's patcher takes them."""
        return forge_patch(patches, shape, base)

    @staticmethod
    def online_mode(sd_model) -> bool:
        """Forge's rule: "online" LoRAs (merged per forward) only when asked for and the UNet is stored quantised."""
        from backend.args import dynamic_args

        storage = sd_model.forge_objects.unet.model.storage_dtype
        return bool(dynamic_args.get("online_lora", False)) and storage not in FULL_PRECISION

    @staticmethod
    def base_weight(patcher, key: str) -> torch.Tensor:
        """The unpatched weight: Forge's backup of it when a LoRA is merged now (its ``LoraLoader`` keeps them on
        the model), else the weight itself."""
        backup = patcher.model.lora_loader.backup.get(key)
        if backup is not None:
            return backup
        from backend import utils

        return utils.get_attr(patcher.model, key)


def _patched(patcher, files: list[tuple[FilePatches, dict]], key: str, online: bool):
    """A clone of ``patcher`` carrying one ``add_patches`` per file (Forge's built-in does the same)."""
    clone = patcher.clone()
    for index, (item, patches) in enumerate(files):
        if patches:
            # the name is Forge's cache key (LoraLoader.refresh): it changes whenever the patches do
            filename = f"{item.path} [{key} #{index}]"
            clone.add_patches(filename=filename, patches=patches, strength_patch=1.0, online_mode=online)
    return clone


def _set_objects(sd_model, unet, clip, key: str) -> None:
    """What Forge's ``networks.load_networks`` leaves: the patched clones in ``forge_objects`` and a copy of
    them in ``forge_objects_after_applying_lora`` (``process_images`` samples with that), and the hash."""
    sd_model.forge_objects.unet, sd_model.forge_objects.clip = unet, clip
    sd_model.forge_objects_after_applying_lora = sd_model.forge_objects.shallow_copy()
    sd_model.current_lora_hash = key


def _prefix(model: torch.nn.Module, root: torch.nn.Module) -> str:
    """Where ``root`` (a part from ``ForgeHost.parts``) sits in a patcher's model, as a key prefix."""
    prefix = prefix_of(model, root)
    if prefix is None:
        raise LookupError(f"{type(root).__name__} is not inside {type(model).__name__}")  # internal invariant
    return prefix


def _forge_engine():
    from modules import shared

    model = shared.sd_model
    return model if forge_family(model) is not None else None
