"""``<lora:…>`` prompt tokens and LoRA Block Weight (LBW) values.

Syntax (A1111 plus hako-mikan's named LBW argument)::

    <lora:NAME:W>              te = unet = W
    <lora:NAME:TE:UNET:DYN>    positional
    <lora:NAME:TE:unet=U:dyn=D:lbw=PRESET_OR_LIST:x=V>   named values override positional ones

A block weight is a number or one of LBW's special values: ``R`` (random 0…1),
``U`` (random −0.5…1.5), ``X`` / ``X+0.2`` / ``X-0.2`` (the token's ``x=``, default 1,
plus or minus an offset). Random values are drawn again for every generation.

Items are split on ``:``; an item with exactly one ``=`` is named (A1111's
``ExtraNetworkParams``). Bad tokens never raise: they become warnings and the
rest of the prompt is generated.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = re.compile(r"<(lora|lyco):([^>]*)>")

# LBW block ids per list length (docs/loader.md, "Block weights"). BASE = every text-encoder module.
BLOCK_IDS: dict[int, tuple[str, ...]] = {
    17: (
        "BASE",
        "IN01",
        "IN02",
        "IN04",
        "IN05",
        "IN07",
        "IN08",
        "M00",
        "OUT03",
        "OUT04",
        "OUT05",
        "OUT06",
        "OUT07",
        "OUT08",
        "OUT09",
        "OUT10",
        "OUT11",
    ),
    26: ("BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))),
    12: ("BASE", "IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05"),
    20: ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9))),
}
LENGTHS_FOR: dict[str, tuple[int, ...]] = {"sd1": (17, 26), "sd2": (17, 26), "sdxl": (12, 20)}


def _ones(count: int, value: float = 1.0) -> tuple[float, ...]:
    return (value,) * count


# hako-mikan's DEF_WEIGHT_PRESET (17 values, SD1/SD2) and the same block groups in SDXL's 12 attention blocks.
PRESETS: dict[str, dict[str, tuple[float, ...]]] = {
    "sd": {
        "NONE": _ones(17, 0.0),
        "ALL": _ones(17),
        "ALL0.5": _ones(17, 0.5),
        "INS": (1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        "IND": (1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        "INALL": (1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        "MIDD": (1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0),
        "OUTD": (1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0),
        "OUTS": (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1),
        "OUTALL": (1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    },
    "sdxl": {
        "NONE": _ones(12, 0.0),
        "ALL": _ones(12),
        "ALL0.5": _ones(12, 0.5),
        "INS": (1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        "IND": (1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0),
        "INALL": (1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0),
        "MIDD": (1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0),
        "OUTD": (1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0),
        "OUTS": (1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1),
        "OUTALL": (1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1),
    },
}


@dataclass(frozen=True)
class BlockWeights:
    """Ratio per LBW block id; modules outside every block (time_embed, out, label_emb) keep 1."""

    ratios: Mapping[str, float]
    random: bool = False  # drawn from R/U values: a new draw for every generation

    def ratio(self, block: str | None) -> float:
        if block is None:
            return 1.0
        return float(self.ratios.get(block, 0.0))

    def key(self) -> tuple:
        return tuple(sorted(self.ratios.items()))


@dataclass(frozen=True)
class LoraToken:
    """One ``<lora:…>`` token, parsed but not yet resolved to a file."""

    name: str
    te: float = 1.0
    unet: float | None = None
    dyn: int | None = None
    lbw: str | None = None  # a preset name or a comma list, resolved against the model family
    x: float = 1.0  # the value of X in block weights

    @property
    def unet_multiplier(self) -> float:
        return self.te if self.unet is None else self.unet


@dataclass
class ParsedPrompt:
    prompt: str  # with the lora/lyco tokens removed
    specs: list[LoraToken] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def finite_number(text: str, integer: bool = False) -> float | int | None:
    """``text`` as a finite number (or a whole number), else None.

    ``float`` also accepts ``nan``, ``inf``, ``-infinity`` and overflows ``1e309`` to ``inf``;
    merged into a weight any of them turns the whole image into NaN, so they are refused like ``abc``.
    """
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def split_items(items: Iterable[object]) -> tuple[list[str], dict[str, str]]:
    """A token's ``:``-split items → (positional, named), as A1111's ``ExtraNetworkParams`` splits them."""
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in items:
        parts = str(item).split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(str(item))
    return positional, named


def spec_from_params(
    positional: Sequence[object], named: Mapping[str, object], token: str
) -> tuple[LoraToken | None, list[str]]:
    """Split items (``ExtraNetworkParams.positional``/``named``) → spec, or None when unusable, and warnings.

    ``token`` is the text the warnings quote. Named values override positional ones.
    """
    values = [str(item).strip() for item in positional]
    options = {str(key).strip(): str(value).strip() for key, value in named.items()}
    name = values[0] if values else ""
    if not name:
        return None, [f"{token}: no LoRA name given; token ignored"]
    warnings = []
    if len(values) == 1 and not ({"te", "unet"} & options.keys()):
        warnings.append(f"{token}: no weight given; using 1.0 (write <lora:{name}:1> to silence this)")
    numbers: dict[str, float | int] = {}
    fields = [("x", options.get("x"), "x value", False)]
    for index, what in ((1, "te"), (2, "unet"), (3, "dyn")):
        text = options.get(what, values[index] if len(values) > index else None)
        fields.append((what, text, f"{what} value" if what in options else "weight", what == "dyn"))
    for what, text, label, integer in fields:
        if text is None or (text == "" and what != "x"):  # an empty weight keeps its default; ``x=`` needs a value
            continue
        number = finite_number(text, integer)
        if number is None:
            kind = "a whole number" if integer else "a number"
            return None, [*warnings, f"{token}: {label} {text!r} is not {kind}; this LoRA was skipped"]
        numbers[what] = number
    unet, dyn = numbers.get("unet"), numbers.get("dyn")
    spec = LoraToken(
        name=name,
        te=float(numbers.get("te", 1.0)),
        unet=None if unet is None else float(unet),
        dyn=None if dyn is None else int(dyn),
        lbw=options.get("lbw", options.get("w")) or None,
        x=float(numbers.get("x", 1.0)),
    )
    return spec, warnings


def parse_token(body: str, token: str) -> tuple[LoraToken | None, list[str]]:
    """One token's ``NAME:…`` body → spec, or None when it cannot be used, and its warnings."""
    return spec_from_params(*split_items(body.split(":")), token)


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Pull every ``<lora:…>``/``<lyco:…>`` token out of ``prompt``."""
    result = ParsedPrompt(prompt=prompt)
    for match in TOKEN.finditer(prompt):
        spec, warnings = parse_token(match.group(2), match.group(0))
        result.warnings += warnings
        if spec is not None:
            result.specs.append(spec)
    result.prompt = TOKEN.sub("", prompt)
    return result


SPECIAL_VALUE = re.compile(r"^(?:R|U|X(?:\s*([+-])\s*(\d+(?:\.\d*)?|\.\d+))?)$", re.IGNORECASE)
BlockValue = float | str


def _block_value(text: BlockValue, x: float, draw: random.Random) -> tuple[float, bool] | None:
    """(ratio, drawn at random) of one list item, or None if it is neither a finite number nor R/U/X."""
    if isinstance(text, float | int):
        return (float(text), False) if math.isfinite(text) else None
    text = text.strip()
    number = finite_number(text)
    if number is not None:
        return float(number), False
    match = SPECIAL_VALUE.match(text)
    if match is None:
        return None
    letter = text[0].upper()
    if letter == "R":
        return round(draw.uniform(0.0, 1.0), 3), True
    if letter == "U":
        return round(draw.uniform(-0.5, 1.5), 3), True
    offset = float(match.group(2) or 0.0) * (-1 if match.group(1) == "-" else 1)
    value = x + offset  # "X+999…9" (400 digits) overflows to inf
    return (value, False) if math.isfinite(value) else None


def read_user_presets(
    path: str | os.PathLike[str] | None, warnings: list[str] | None = None
) -> dict[str, tuple[BlockValue, ...]]:
    """``NAME:v1,v2,…`` lines (hako-mikan's format: numbers or R/U/X); blank, ``#`` and bad lines skipped.

    A file that cannot be read (removed meanwhile, no permission, not UTF-8) is a warning, never an error.
    """
    if path is None or not Path(path).is_file():
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        if warnings is not None:
            warnings.append(f"LBW presets {Path(path).name} not read ({error}); only the built-in presets are used")
        return {}
    presets: dict[str, tuple[BlockValue, ...]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, values = line.split(":", 1)
        items = tuple(v.strip() for v in values.split(",") if v.strip())
        if items and all(_block_value(item, 1.0, random.Random(0)) is not None for item in items):
            presets[name.strip()] = items
    return presets


def block_weights(
    value: str,
    family: str,
    user_presets: Mapping[str, tuple[BlockValue, ...]] | None = None,
    warnings: list[str] | None = None,
    x: float = 1.0,
    draw: random.Random | None = None,
) -> BlockWeights | None:
    """Resolve an ``lbw=`` value (preset or list) for a model family; None (and a warning) if unusable."""
    warnings = warnings if warnings is not None else []
    family_key = "sdxl" if family == "sdxl" else "sd"
    presets = {**PRESETS[family_key], **(user_presets or {})}
    items = presets.get(value.strip())
    if items is None:
        items = tuple(v for v in value.split(",") if v.strip())
    draw = draw or random.Random()
    resolved = [_block_value(item, x, draw) for item in items]
    if not resolved or any(r is None for r in resolved):
        warnings.append(f"lbw={value}: not a preset name or a list of numbers (or R, U, X); block weights ignored")
        return None
    lengths = LENGTHS_FOR.get(family, (17, 26))
    if len(resolved) not in lengths:
        warnings.append(
            f"lbw={value}: {len(resolved)} values, but a {family} model takes "
            f"{' or '.join(map(str, lengths))}; block weights ignored"
        )
        return None
    ratios = [ratio for ratio, _ in resolved]  # type: ignore[misc]
    drawn = any(is_random for _, is_random in resolved)  # type: ignore[misc]
    return BlockWeights(dict(zip(BLOCK_IDS[len(ratios)], ratios, strict=True)), random=drawn)
