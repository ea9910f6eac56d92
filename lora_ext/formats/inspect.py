"""``inspect``: everything a user wants to know about a LoRA file, as a plain dict."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from lora_ext.dataset.captions import dedupe_tags, parse_tags
from lora_ext.formats.hashes import file_hashes
from lora_ext.formats.keys import key_style
from lora_ext.formats.parse import parse_lora
from lora_ext.formats.safetensors_io import load_state_dict

_KNOWN_PREFIX = re.compile(
    r"^(lora_unet_|lora_te[12]?_|lycoris_|oft_unet_|unet\.|text_encoder(_2)?\.|base_model\.model\.|diffusion_model\."
    r"|model\.diffusion_model\.|text_encoders\.|(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block"
    r"|conv_in|conv_out|time_embedding|time_embed|label_emb|add_embedding|out)[._])"
)
_TEXT_ENCODER = re.compile(r"^(lora_te[12]?_|text_encoder(_2)?\.|text_encoders\.)")
_BIG_VALUES = ("ssmd_cover_images", "modelspec.thumbnail")
TOP_TAGS = 8  # kohya files carry every tag of the dataset: a trigger is among the most frequent few
GUESSED_TRIGGERS = 3


def tag_counts(metadata: dict[str, str]) -> Counter[str]:
    """``ss_tag_frequency`` summed over the dataset folders (a damaged entry counts as none)."""
    try:
        frequency = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except ValueError:
        frequency = {}
    counts: Counter[str] = Counter()
    if isinstance(frequency, dict):
        for tags in frequency.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, int | float):
                        counts[tag.strip()] += int(count)
    return counts


def activation_text(path: Path) -> str:
    """The ``activation text`` of the WebUI's ``.json`` sidecar beside the file ('' when there is none)."""
    try:
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    text = sidecar.get("activation text") if isinstance(sidecar, dict) else None
    return text.strip() if isinstance(text, str) else ""


def trigger_words(metadata: dict[str, str], activation: str = "") -> list[str]:
    """The words the author named (activation text, ``modelspec.trigger_phrase``, ``ssmd_keywords``), else a guess:
    the few most frequent training tags."""
    named = (activation, metadata.get("modelspec.trigger_phrase") or "", metadata.get("ssmd_keywords") or "")
    words = list(dedupe_tags(parse_tags(named)))
    return words or [tag for tag, _ in tag_counts(metadata).most_common(GUESSED_TRIGGERS)]


def _metadata_view(metadata: dict[str, str]) -> dict[str, str]:
    shown = {}
    for key, value in sorted(metadata.items()):
        if not key.startswith(("ss_", "modelspec.", "ssmd_", "sshs_")):
            continue
        shown[key] = f"<{len(value)} characters>" if key in _BIG_VALUES else value
    return shown


def _number_key(value: float | None) -> str:
    if value is None:
        return "none"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def inspect_lora(path: str | os.PathLike[str]) -> dict:
    """Formats, base model, ranks/alphas, module counts, key styles, unmatched keys, metadata, triggers, hashes."""
    path = Path(path)
    tensors, metadata = load_state_dict(path)
    parsed = parse_lora(tensors, metadata, path=path)
    ranks: Counter[str] = Counter()
    alphas: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    unet = text = 0
    unmatched = list(parsed.unparsed_keys)
    for prefix, adapter in parsed.adapters.items():
        inner = getattr(adapter, "inner", None)
        formats[f"{inner.name}+dora" if inner is not None else adapter.name] += 1
        ranks[_number_key(adapter.rank)] += 1
        alphas[_number_key(adapter.alpha)] += 1
        if not _KNOWN_PREFIX.match(prefix):
            unmatched += parsed.source_keys[prefix]
        elif _TEXT_ENCODER.match(prefix) or "text_model" in prefix:
            text += 1
        else:
            unet += 1
    styles = Counter(key_style(key) for key in tensors)
    unmatched_styles = Counter(key_style(key) for key in unmatched)
    return {
        "path": str(path),
        "file_size": path.stat().st_size,
        "base_model": parsed.detection.family,
        "base_model_evidence": parsed.detection.evidence,
        "formats": dict(formats.most_common()),
        "modules": len(parsed.adapters),
        "unet_modules": unet,
        "text_encoder_modules": text,
        "ranks": dict(ranks.most_common()),
        "alphas": dict(alphas.most_common()),
        "key_styles": dict(styles.most_common()),
        "unmatched": {
            "count": len(unmatched),
            "styles": dict(unmatched_styles.most_common()),
            "examples": sorted(unmatched)[:5],
        },
        "bundled_embeddings": sorted(parsed.bundled_embeddings),
        "metadata": _metadata_view(metadata),
        "trigger_words": trigger_words(metadata, activation_text(path)),
        "top_tags": [[tag, count] for tag, count in tag_counts(metadata).most_common(TOP_TAGS)],
        "hashes": file_hashes(path, metadata).as_dict(),
    }


def format_report(info: dict) -> str:
    """The human-readable form of ``inspect_lora``'s dict."""

    def counts(mapping: dict) -> str:
        return ", ".join(f"{k}×{v}" for k, v in mapping.items()) or "-"

    lines = [
        f"file:           {info['path']} ({info['file_size']} bytes)",
        f"base model:     {info['base_model']} (from {info['base_model_evidence']})",
        f"formats:        {counts(info['formats'])}",
        f"modules:        {info['modules']} (UNet {info['unet_modules']}, text encoder {info['text_encoder_modules']})",
        f"ranks:          {counts(info['ranks'])}",
        f"alphas:         {counts(info['alphas'])}",
        f"key styles:     {counts(info['key_styles'])}",
        f"unmatched keys: {info['unmatched']['count']}"
        + (
            f" ({counts(info['unmatched']['styles'])}; e.g. {', '.join(info['unmatched']['examples'])})"
            if info["unmatched"]["count"]
            else ""
        ),
    ]
    if info["bundled_embeddings"]:
        lines.append(f"embeddings:     {', '.join(info['bundled_embeddings'])} (bundled; not applied)")
    lines.append(f"trigger words:  {', '.join(info['trigger_words']) or '-'}")
    if info["top_tags"]:
        lines.append(f"top tags:       {', '.join(f'{tag} ({count})' for tag, count in info['top_tags'])}")
    hashes = info["hashes"]
    lines.append(
        f"hashes:         AutoV2 {hashes['autov2']}  AutoV3/addnet {hashes['autov3'][:12]}  sha256 {hashes['sha256']}"
    )
    if info["metadata"]:
        lines.append("metadata:")
        for key, value in info["metadata"].items():
            text = value if len(value) <= 120 else value[:117] + "..."
            lines.append(f"  {key}: {text}")
    return "\n".join(lines)
