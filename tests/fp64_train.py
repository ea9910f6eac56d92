"""``python tests/fp64_train.py train …``: the ``train`` command with the model held in fp64.

The tests of data-parallel training compare N processes with one. In fp32 the two sum
a batch's gradients in other orders, and the demo model amplifies that rounding a
millionfold: at 64 px its lowest level is 1×1, where GroupNorm normalises groups of two
values; AdamW then turns a gradient that is rounding noise into a full step of ``lr``.
In fp64 (with the LoRA parameters in fp64, ``training.network.parameter_dtype``) the same
rounding stays far below 1e-5, so any difference above that is a real one: another
batch, noise, dropout mask or weighting.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_ext import cli  # noqa: E402
from lora_ext.hosts.standalone import StandaloneHost  # noqa: E402


@contextlib.contextmanager
def model_in_fp64() -> Iterator[None]:
    """Every ``StandaloneHost.load`` in the block hands out its pipeline in fp64."""
    load = StandaloneHost.load.__func__

    def load_fp64(cls, *args, **kwargs) -> StandaloneHost:
        host = load(cls, *args, **kwargs)
        host.pipeline.to(torch.float64)
        return host

    with mock.patch.object(StandaloneHost, "load", classmethod(load_fp64)):
        yield


def main(argv: list[str]) -> int:
    with model_in_fp64():
        return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
