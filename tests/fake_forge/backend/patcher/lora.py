"""``backend.patcher.lora``: merging LoRA patches into a weight (fake), in Forge's and in Neo's form.

``delta(kind, values, weight)`` is the maths both share: ``diff``, ``lora``, ``loha`` and ``lokr`` (without DoRA
scales), with Forge's rules for their ``alpha`` (divided by the factors' rank; LoKr unscaled when neither factor is
factorised) — Neo's weight adapters (ComfyUI's) lay their ``weights`` tuples out the same way.

- **Forge**: ``merge_lora_to_weight(patches, weight, key, computation_dtype)`` takes ``(kind, values)`` tuples, and
  ``LoraLoader`` (on the model: ``backup``, ``online_backup``, ``loaded_hash``; ``refresh(lora_patches,
  offload_device, force_refresh)`` under ``torch.inference_mode()``) restores its backups, then merges.
- **Neo**: no ``LoraLoader`` (the patcher merges, ``patcher/base.py``); ``merge_lora_to_weight`` takes weight-adapter
  objects (``weight_adapter.LoRAAdapter``…), ``("diff", (ΔW,))`` and ``("set", (W,))``, and raises ``ValueError``
  for any other type name, as Neo does.
"""

import fake_flavor
import torch

from backend import utils


def delta(kind, values, weight):
    """ΔW of one patch, in ``weight``'s dtype and shape."""
    if kind == "diff":
        return values[0].to(weight)
    if kind == "lora":
        up, down, alpha, mid, _dora = values[:5]
        scale = alpha / down.shape[0] if alpha is not None else 1.0  # down's rank, before mid
        down = down.to(weight)
        if mid is not None:  # Forge: down (r, in) and the core (r, r, kh, kw) → (r, in, kh, kw)
            down = torch.einsum("m j, n m k l -> n j k l", down.flatten(1), mid.to(weight))
        return (up.flatten(1).to(weight) @ down.flatten(1)).reshape(weight.shape) * scale
    if kind == "loha":
        w1a, w1b, alpha, w2a, w2b, t1, t2, _dora = values
        scale = alpha / w1b.shape[0] if alpha is not None else 1.0
        return (_hadamard_factor(w1a, w1b, t1, weight) * _hadamard_factor(w2a, w2b, t2, weight)).reshape(
            weight.shape
        ) * scale
    if kind == "lokr":
        w1, w2, alpha, w1a, w1b, w2a, w2b, t2, _dora = values
        rank = None  # Forge: the rank of the factorised factor, w2's winning; no alpha scaling without one
        if w1 is None:
            w1, rank = w1a.to(weight) @ w1b.to(weight), w1b.shape[0]
        if w2 is None:
            w2, rank = _hadamard_factor(w2a, w2b, t2, weight), w2b.shape[0]
        w1, w2 = w1.to(weight), w2.to(weight)
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        scale = alpha / rank if alpha is not None and rank is not None else 1.0
        return torch.kron(w1, w2).reshape(weight.shape) * scale
    raise ValueError(f"patch type {kind} is not in the fake merge")


def _hadamard_factor(w_a, w_b, core, like):
    """w_a @ w_b, or with a Tucker core einsum("i j k l, j r, i p -> p r k l", core, w_b, w_a), as Forge forms them."""
    w_a, w_b = w_a.to(like), w_b.to(like)
    if core is None:
        return w_a @ w_b
    return torch.einsum("i j k l, j r, i p -> p r k l", core.to(like), w_b, w_a)


if fake_flavor.NEO:
    from modules_forge.packages.comfy.lora import weight_adapter  # noqa: F401  (Neo re-exports it here)

    def merge_lora_to_weight(patches, weight, key="online_lora", computation_dtype=torch.float32):
        for patch in patches:
            strength, value, strength_model = patch[0], patch[1], patch[2]
            if strength_model != 1.0:
                weight = weight * strength_model
            if isinstance(value, weight_adapter.WeightAdapterBase):
                weight = value.calculate_weight(weight, key, strength, strength_model, None, None, computation_dtype)
                continue
            kind, values = ("diff", value) if len(value) == 1 else value
            if kind == "diff":
                weight = weight + strength * values[0].to(weight)
            elif kind == "set":
                weight = values[0].to(weight).clone()
            else:
                raise ValueError(f'"{key}" of type "{kind}" is not recognized...')
        return weight

else:

    def merge_lora_to_weight(patches, weight, key="", computation_dtype=torch.float32):
        dtype = weight.dtype
        weight = weight.to(dtype=computation_dtype)
        for strength, value, strength_model, _offset, _function in patches:
            kind, values = value
            if strength_model != 1.0:
                weight = weight * strength_model
            weight = weight + strength * delta(kind, values, weight)
        return weight.to(dtype)

    class LoraLoader:
        def __init__(self, model):
            self.model = model
            self.backup = {}
            self.online_backup = []
            self.loaded_hash = str([])

        @torch.inference_mode()
        def refresh(self, lora_patches, offload_device=torch.device("cpu"), force_refresh=False):  # noqa: B008  (Forge's signature)
            hashes = str(list(lora_patches.keys()))
            if hashes == self.loaded_hash and not force_refresh:
                return
            all_patches = {}
            for (_, _, _, online_mode), patches in lora_patches.items():
                for key, current in patches.items():
                    all_patches[(key, online_mode)] = all_patches.get((key, online_mode), []) + current
            for m in set(self.online_backup):
                del m.forge_online_loras
            self.online_backup = []
            for k, w in self.backup.items():  # the backup object itself goes back (re-wrapped only if not a Parameter)
                if not isinstance(w, torch.nn.Parameter):
                    w = torch.nn.Parameter(w, requires_grad=False)
                utils.set_attr_raw(self.model, k, w)
            self.backup = {}
            for (key, online_mode), current in all_patches.items():
                parent, child_key, weight = utils.get_attr_with_parent(self.model, key)
                if online_mode:
                    if not hasattr(parent, "forge_online_loras"):
                        parent.forge_online_loras = {}
                    parent.forge_online_loras[child_key] = current
                    self.online_backup.append(parent)
                    continue
                if key not in self.backup:
                    self.backup[key] = weight.to(device=offload_device)
                merged = merge_lora_to_weight(current, weight, key, computation_dtype=torch.float32)
                utils.set_attr_raw(self.model, key, torch.nn.Parameter(merged, requires_grad=False))
            self.loaded_hash = hashes
