"""Nested Python state (optimizer, scheduler, scaler) as JSON plus a flat dict of tensors — never a pickle.

``encode(value)`` walks a state dict and returns a JSON-ready tree in which every
tensor is replaced by ``{"$tensor": key}`` and the tensors themselves, keyed for a
safetensors file. ``decode(tree, tensors)`` rebuilds the same value: dict key types
(optimizer state is keyed by int) and order, tuples (``betas``), ``None``, bools,
ints and non-finite floats (Prodigy's ``growth_rate=inf``) all come back as they
were, so ``load_state_dict`` sees what ``state_dict`` gave. The JSON stays strict
(no ``NaN``/``Infinity`` literals). A value of any other type is refused at save
time rather than written in a form that would not come back the same.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lora_ext.errors import FileFormatError

TENSOR, TUPLE, DICT, FLOAT = "$tensor", "$tuple", "$dict", "$float"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode(value: Any, prefix: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """(JSON-ready tree, tensors keyed ``prefix/N``) for a nested state value."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(item: Any, where: str) -> Any:
        if isinstance(item, torch.Tensor):
            key = f"{prefix}/{len(tensors)}"
            # Own copy: safetensors refuses shared storage, and the live state keeps changing.
            tensors[key] = item.detach().to("cpu", copy=True).contiguous()
            return {TENSOR: key}
        if item is None or isinstance(item, (bool, int, str)):
            return item
        if isinstance(item, float):
            return item if math.isfinite(item) else {FLOAT: repr(item)}
        if isinstance(item, tuple):
            return {TUPLE: [walk(x, f"{where}[{i}]") for i, x in enumerate(item)]}
        if isinstance(item, list):
            return [walk(x, f"{where}[{i}]") for i, x in enumerate(item)]
        if isinstance(item, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in item):
                return {k: walk(v, f"{where}.{k}") for k, v in item.items()}
            return {DICT: [[walk(k, where), walk(v, f"{where}.{k}")] for k, v in item.items()]}
        raise FileFormatError(
            f"the training state cannot be saved: {where} holds a {type(item).__name__}, which has no safe file form"
        )

    return walk(value, prefix), tensors


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The value ``encode`` was given, from its tree and tensors; a malformed tree raises ``FileFormatError``."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(x, tensors) for x in tree]
    if not isinstance(tree, dict):
        raise FileFormatError(f"malformed training state: unexpected {type(tree).__name__}")
    if len(tree) == 1:
        (marker, body), *_ = tree.items()
        if marker == TENSOR:
            if not isinstance(body, str) or body not in tensors:
                raise FileFormatError(f"malformed training state: tensor {body!r} is missing")
            return tensors[body]
        if marker == FLOAT:
            if body not in _NON_FINITE:
                raise FileFormatError(f"malformed training state: {body!r} is not a float")
            return _NON_FINITE[body]
        if marker == TUPLE and isinstance(body, list):
            return tuple(decode(x, tensors) for x in body)
        if marker == DICT and isinstance(body, list):
            if not all(isinstance(pair, list) and len(pair) == 2 for pair in body):
                raise FileFormatError("malformed training state: a key/value list is not made of pairs")
            pairs = [(decode(k, tensors), decode(v, tensors)) for k, v in body]
            try:
                return dict(pairs)
            except TypeError as error:
                raise FileFormatError("malformed training state: an unhashable dict key") from error
    if any(key.startswith("$") for key in tree):
        raise FileFormatError(f"malformed training state: unknown marker in {sorted(tree)[:3]}")
    return {key: decode(value, tensors) for key, value in tree.items()}
