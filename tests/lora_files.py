"""Write LoRA-family files of every format and key style for tests (and the training engineer).

``adapter_tensors(fmt, base_weight, rank, seed)`` returns one module's tensors in
kohya/LyCORIS canonical names; ``expected_delta(fmt, tensors, base_weight, m)`` is
an independent (numpy, loop-based) formula for the ΔW the format should give;
``spell(prefix, tensors, style)`` renames them to a trainer's spelling and
``write_lora(path, modules, metadata)`` saves a ``.safetensors`` file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

# formats usable on any 2-D (linear) or 4-D 1×1 target; conv-only ones are marked
LINEAR_FORMATS = (
    "lora",
    "lora_noalpha",
    "loha",
    "lokr_full",
    "lokr_w1_lowrank",
    "lokr_w2_lowrank",
    "lokr_both_lowrank",
    "ia3_out",
    "ia3_in",
    "full",
    "glora_new",
    "glora_old",
    "oft",
    "boft",
    "oft_diag",
    "dora_out",
    "dora_in",
    "dora_peft",
)
CONV3_FORMATS = ("lora", "locon_tucker", "loha", "loha_tucker", "lokr_tucker", "full")
NORM_FORMATS = ("norm",)


def _rand(generator: torch.Generator, *shape: int, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def adapter_tensors(fmt: str, base_weight: torch.Tensor, rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """One module's tensors in canonical kohya/LyCORIS names, with nonzero ΔW."""
    g = torch.Generator().manual_seed(seed)
    out_dim, in_dim = base_weight.shape[0], base_weight.shape[1] if base_weight.dim() > 1 else 1
    kernel = tuple(base_weight.shape[2:])
    k = int(np.prod(kernel)) if kernel else 1
    alpha = torch.tensor(rank / 2.0)
    if fmt in ("lora", "lora_noalpha"):
        t = {
            "lora_down.weight": _rand(g, rank, in_dim, *kernel),
            "lora_up.weight": _rand(g, out_dim, rank, *([1] * len(kernel))),
        }
        if fmt == "lora":
            t["alpha"] = alpha
        return t
    if fmt == "locon_tucker":
        return {
            "lora_down.weight": _rand(g, rank, in_dim, 1, 1),
            "lora_mid.weight": _rand(g, rank, rank, *kernel),
            "lora_up.weight": _rand(g, out_dim, rank, 1, 1),
            "alpha": alpha,
        }
    if fmt == "loha":
        return {
            "hada_w1_a": _rand(g, out_dim, rank, scale=0.3),
            "hada_w1_b": _rand(g, rank, in_dim * k, scale=0.3),
            "hada_w2_a": _rand(g, out_dim, rank, scale=0.3),
            "hada_w2_b": _rand(g, rank, in_dim * k, scale=0.3),
            "alpha": alpha,
        }
    if fmt == "loha_tucker":
        return {
            "hada_w1_a": _rand(g, rank, out_dim),
            "hada_w1_b": _rand(g, rank, in_dim),
            "hada_t1": _rand(g, rank, rank, *kernel),
            "hada_w2_a": _rand(g, rank, out_dim),
            "hada_w2_b": _rand(g, rank, in_dim),
            "hada_t2": _rand(g, rank, rank, *kernel),
            "alpha": alpha,
        }
    if fmt.startswith("lokr"):
        o1, i1 = 4, 4
        o2, i2 = out_dim // o1, in_dim // i1
        t: dict[str, torch.Tensor] = {"alpha": alpha}
        if fmt in ("lokr_w1_lowrank", "lokr_both_lowrank"):
            t.update(lokr_w1_a=_rand(g, o1, 2), lokr_w1_b=_rand(g, 2, i1))
        else:
            t["lokr_w1"] = _rand(g, o1, i1)
        if fmt == "lokr_tucker":
            t.update(lokr_w2_a=_rand(g, rank, o2), lokr_w2_b=_rand(g, rank, i2), lokr_t2=_rand(g, rank, rank, *kernel))
        elif fmt in ("lokr_w2_lowrank", "lokr_both_lowrank"):
            t.update(lokr_w2_a=_rand(g, o2, rank), lokr_w2_b=_rand(g, rank, i2 * k))
        else:
            t["lokr_w2"] = _rand(g, o2, i2, *kernel)
        return t
    if fmt == "ia3_out":
        return {"weight": _rand(g, out_dim), "on_input": torch.tensor(0)}
    if fmt == "ia3_in":
        return {"weight": _rand(g, in_dim), "on_input": torch.tensor(1)}
    if fmt == "full":
        return {"diff": _rand(g, *base_weight.shape, scale=0.01)}
    if fmt == "norm":
        return {"w_norm": _rand(g, *base_weight.shape), "b_norm": _rand(g, base_weight.shape[0])}
    if fmt == "glora_new":
        return {
            "a1.weight": _rand(g, in_dim, rank),
            "a2.weight": _rand(g, rank, in_dim),
            "b1.weight": _rand(g, out_dim, rank),
            "b2.weight": _rand(g, rank, in_dim * k),
            "alpha": alpha,
        }
    if fmt == "glora_old":
        return {
            "a1.weight": _rand(g, rank, in_dim),
            "a2.weight": _rand(g, in_dim, rank),
            "b1.weight": _rand(g, rank, in_dim * k),
            "b2.weight": _rand(g, out_dim, rank),
            "alpha": alpha,
        }
    if fmt == "oft":
        return {"oft_blocks": _rand(g, out_dim // 8, 8, 8, scale=0.05), "alpha": torch.tensor(0.0)}
    if fmt == "boft":
        return {"oft_blocks": _rand(g, 2, out_dim // 4, 4, 4, scale=0.05), "alpha": torch.tensor(0.0)}
    if fmt == "oft_diag":
        blocks = torch.eye(8).repeat(out_dim // 8, 1, 1) + _rand(g, out_dim // 8, 8, 8, scale=0.05)
        return {"oft_diag": blocks}
    if fmt.startswith("dora"):
        t = adapter_tensors("lora", base_weight, rank, seed)
        if fmt == "dora_in":
            t["dora_scale"] = torch.rand(1, in_dim, generator=g) + 0.5
        elif fmt == "dora_peft":
            t["dora_scale"] = torch.rand(out_dim, generator=g) + 0.5
        else:
            t["dora_scale"] = torch.rand(out_dim, 1, generator=g) + 0.5
        return t
    raise ValueError(fmt)


def _a(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _cayley(blocks: np.ndarray) -> np.ndarray:
    out = []
    for block in blocks:
        q = block - block.T
        eye = np.eye(len(block))
        out.append((eye + q) @ np.linalg.inv(eye - q))
    return np.stack(out)


def expected_delta(fmt: str, t: Mapping[str, torch.Tensor], base_weight: torch.Tensor, m: float = 1.0) -> np.ndarray:
    """ΔW written independently of ``lora_ext`` (loops, numpy), float64."""
    W = _a(base_weight)
    out_dim = W.shape[0]
    W2 = W.reshape(out_dim, -1)
    alpha = float(t["alpha"]) if "alpha" in t else None
    if fmt in ("lora", "lora_noalpha") or fmt.startswith("dora"):
        up, down = _a(t["lora_up.weight"]).reshape(out_dim, -1), _a(t["lora_down.weight"])
        rank = down.shape[0]
        down = down.reshape(rank, -1)
        s = alpha / rank if alpha else 1.0
        delta = sum(np.outer(up[:, r], down[r]) for r in range(rank)) * s
        if not fmt.startswith("dora"):
            return (m * delta).reshape(W.shape)
        mag = _a(t["dora_scale"])
        V = W2 + delta
        if fmt == "dora_in":
            n = np.sqrt((V**2).sum(axis=0, keepdims=True))
            Wd = mag.reshape(1, -1) * V / n
        else:
            n = np.sqrt((V**2).sum(axis=1, keepdims=True))
            Wd = mag.reshape(-1, 1) * V / n
        return (m * (Wd - W2)).reshape(W.shape)
    if fmt == "locon_tucker":
        up, mid, down = (
            _a(t["lora_up.weight"])[:, :, 0, 0],
            _a(t["lora_mid.weight"]),
            _a(t["lora_down.weight"])[:, :, 0, 0],
        )
        rank = down.shape[0]
        delta = np.zeros(W.shape)
        for h in range(W.shape[2]):
            for w in range(W.shape[3]):
                delta[:, :, h, w] = up @ mid[:, :, h, w] @ down
        return m * delta * alpha / rank
    if fmt == "loha":
        rank = t["hada_w1_b"].shape[0]
        f1 = _a(t["hada_w1_a"]) @ _a(t["hada_w1_b"])
        f2 = _a(t["hada_w2_a"]) @ _a(t["hada_w2_b"])
        return (m * alpha / rank * f1 * f2).reshape(W.shape)
    if fmt == "loha_tucker":
        rank = t["hada_w1_b"].shape[0]

        def factor(core, wb, wa):
            out = np.zeros(W.shape)
            for h in range(W.shape[2]):
                for w in range(W.shape[3]):
                    out[:, :, h, w] = wa.T @ core[:, :, h, w] @ wb
            return out

        f1 = factor(_a(t["hada_t1"]), _a(t["hada_w1_b"]), _a(t["hada_w1_a"]))
        f2 = factor(_a(t["hada_t2"]), _a(t["hada_w2_b"]), _a(t["hada_w2_a"]))
        return m * alpha / rank * f1 * f2
    if fmt.startswith("lokr"):
        w1 = _a(t["lokr_w1"]) if "lokr_w1" in t else _a(t["lokr_w1_a"]) @ _a(t["lokr_w1_b"])
        if "lokr_t2" in t:
            core, wb, wa = _a(t["lokr_t2"]), _a(t["lokr_w2_b"]), _a(t["lokr_w2_a"])
            w2 = np.einsum("abhw,bi,ao->oihw", core, wb, wa)
        elif "lokr_w2" in t:
            w2 = _a(t["lokr_w2"])
        else:
            w2 = _a(t["lokr_w2_a"]) @ _a(t["lokr_w2_b"])
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        rank = t["lokr_w1_b"].shape[0] if "lokr_w1_b" in t else (t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else None)
        s = 1.0 if rank is None else alpha / rank
        return (m * s * np.kron(w1, w2)).reshape(W.shape)
    if fmt == "ia3_out":
        return m * W * _a(t["weight"]).reshape(-1, *([1] * (W.ndim - 1)))
    if fmt == "ia3_in":
        return m * W * _a(t["weight"]).reshape(1, -1, *([1] * (W.ndim - 2)))
    if fmt == "full":
        return m * _a(t["diff"]).reshape(W.shape)
    if fmt == "norm":
        return m * _a(t["w_norm"])
    if fmt in ("glora_new", "glora_old"):
        if fmt == "glora_new":
            a_in, a_out, bl, br = (_a(t[k]) for k in ("a1.weight", "a2.weight", "b1.weight", "b2.weight"))
            rank = a_out.shape[0]
        else:
            a_out, a_in, br, bl = (_a(t[k]) for k in ("a1.weight", "a2.weight", "b1.weight", "b2.weight"))
            rank = a_out.shape[0]
        return m * alpha / rank * (bl @ br + W2 @ a_in @ a_out).reshape(W.shape)
    if fmt in ("oft", "oft_diag"):
        R = _cayley(_a(t["oft_blocks"])) if fmt == "oft" else _a(t["oft_diag"])
        bs = R.shape[1]
        new = W2.copy()
        for kb in range(R.shape[0]):
            Rk = m * R[kb] + (1 - m) * np.eye(bs)
            new[kb * bs : (kb + 1) * bs] = Rk.T @ W2[kb * bs : (kb + 1) * bs]
        return (new - W2).reshape(W.shape)
    if fmt == "boft":
        R = np.stack([_cayley(stage) for stage in _a(t["oft_blocks"])])
        stages, _, b, _ = R.shape
        cur = W2.copy()
        for i in range(stages):
            k = 2**i * (b // 2)
            idx = np.arange(out_dim).reshape(-1, 2, k).transpose(0, 2, 1).reshape(-1)  # permuted row order
            permuted = cur[idx]
            for d in range(out_dim // b):
                Rd = m * R[i, d] + (1 - m) * np.eye(b)
                permuted[d * b : (d + 1) * b] = Rd @ permuted[d * b : (d + 1) * b]
            cur = np.empty_like(cur)
            cur[idx] = permuted
        return (cur - W2).reshape(W.shape)
    raise ValueError(fmt)


# canonical name → spelling per trainer style
_STYLES: dict[str, dict[str, str]] = {
    "kohya": {},
    "peft": {
        "lora_down.weight": ".lora_A.weight",
        "lora_up.weight": ".lora_B.weight",
        "dora_scale": ".lora_magnitude_vector",
    },
    "peft_default": {"lora_down.weight": ".lora_A.default.weight", "lora_up.weight": ".lora_B.default.weight"},
    "peft_bare": {"lora_down.weight": ".lora_A", "lora_up.weight": ".lora_B"},
    "diffusers": {"lora_down.weight": ".lora.down.weight", "lora_up.weight": ".lora.up.weight"},
    "processor": {"lora_down.weight": "_lora.down.weight", "lora_up.weight": "_lora.up.weight"},
    "te_old": {"lora_down.weight": ".lora_linear_layer.down.weight", "lora_up.weight": ".lora_linear_layer.up.weight"},
}


def spell(prefix: str, tensors: Mapping[str, torch.Tensor], style: str = "kohya") -> dict[str, torch.Tensor]:
    table = _STYLES[style]
    return {prefix + table.get(name, "." + name): tensor for name, tensor in tensors.items()}


def write_lora(
    path: Path,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, object] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save ``state`` (floating tensors cast to ``dtype`` when given) with string metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in state.items()
    }
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    save_file(out, str(path), metadata=meta or None)
    return path


def kohya_prefixes(keymap) -> dict:
    """Target → its kohya-style spelling (``lora_unet_…``/``lora_te…``), from a built key map."""
    # kohya writes SD1/SD2 UNet keys with diffusers names and SDXL keys with ldm names
    ldm_names = (
        "lora_unet_input_blocks",
        "lora_unet_middle_block",
        "lora_unet_output_blocks",
        "lora_unet_time_embed",
        "lora_unet_label_emb",
        "lora_unet_out_",
    )
    prefixes: dict = {}
    for spelling, target in keymap.by_prefix.items():
        if not spelling.startswith(("lora_unet_", "lora_te")):
            continue
        preferred = spelling.startswith(ldm_names) == (keymap.family == "sdxl") or spelling.startswith("lora_te")
        if target not in prefixes or (preferred and not prefixes[target][1]):
            prefixes[target] = (spelling, preferred)
    return {target: spelling for target, (spelling, _) in prefixes.items()}


def lora_for_model(
    keymap, rank: int = 4, seed: int = 0, text_encoder: bool = True, unet: bool = True, only: str | None = None
) -> dict[str, torch.Tensor]:
    """A kohya LoRA touching every linear/conv target of ``keymap`` (optionally filtered by a substring)."""
    state: dict[str, torch.Tensor] = {}
    for index, (target, prefix) in enumerate(sorted(kohya_prefixes(keymap).items(), key=lambda item: item[1])):
        if (
            len(target.shape) < 2
            or (target.is_text_encoder and not text_encoder)
            or (not target.is_text_encoder and not unet)
        ):
            continue
        if only is not None and only not in prefix:
            continue
        base = torch.zeros(target.shape)
        state.update(spell(prefix, adapter_tensors("lora", base, rank=rank, seed=seed * 100003 + index)))
    return state
