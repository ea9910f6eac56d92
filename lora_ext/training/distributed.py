"""Data-parallel training under a launcher (``torchrun``, ``accelerate launch``): ranks, the batch split, the sums.

The launcher starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; we read them and join its
group (NCCL on GPUs, gloo on the CPU). We start and watch no process ourselves.

Every rank builds the same global batches (``batch_size × world_size`` samples,
bucketed and shuffled as one process with that batch would) and runs the rows
``Ranks.rows`` gives it. Its loss is its rows' mean weighted by their share of
the batch, so one ``all_reduce(SUM)`` of the LoRA gradients gives the gradient
one process computes over the whole batch; the optimiser and schedule then take
the same step on every rank.

Why a sum of the gradients and not ``DistributedDataParallel``: the LoRA modules
run inside the host's UNet and text encoders (``host.predict``), never through a
forward of the network module, which DDP's reducer must see once per backward;
and a bucket's last batch can be smaller than the global batch, so ranks hold
different numbers of samples (or none), which DDP's plain mean cannot weight.
One flat buffer per optimiser step is what DDP's buckets would send anyway.

A rank whose peer has gone (it failed, or was killed) gets an error from the next
collective: gloo sees the closed connection at once, and the launcher ends the
others when one exits non-zero. That error becomes ``PeerStopped``.

Nothing here imports ``torch.distributed`` until a launcher asked for more than
one process, so a single-process run pays nothing for it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lora_ext.errors import ConfigError, LoraExtError

# Rank 0 renders previews and writes files while the others wait in the next collective.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


class PeerStopped(LoraExtError):
    """Another process of a data-parallel run ended (failed, was killed or stopped)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank, number of processes, device index on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, renders previews and prints progress."""
        return self.rank == 0

    def rows(self, count: int) -> range:
        """This rank's rows of a global batch of ``count`` samples: contiguous, sizes differ by at most one."""
        return range(self.rank * count // self.world_size, (self.rank + 1) * count // self.world_size)


SINGLE = Ranks()


def from_environment(environ: Mapping[str, str] = os.environ) -> Ranks:
    """The ranks a launcher set in the environment; one process when it set none."""
    try:
        world_size = int(environ.get("WORLD_SIZE") or 1)
        rank = int(environ.get("RANK") or 0)
        local_rank = int(environ.get("LOCAL_RANK") or 0)
    except ValueError as error:
        raise ConfigError(f"the launcher's WORLD_SIZE, RANK or LOCAL_RANK is not a number ({error})") from error
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"the launcher's RANK={rank} does not fit WORLD_SIZE={world_size}")
    return Ranks(rank, world_size, local_rank)


class Collectives:
    """What training exchanges between processes; in one process there is nothing to exchange."""

    ranks = SINGLE

    def sum_gradients(self, parameters: Sequence[torch.Tensor], loss: float) -> float:
        """Sum every parameter's gradient and the loss over the processes; returns the summed loss."""
        return loss

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set in any process (a stop request, so that all stop after the same step)."""
        return flag

    def barrier(self) -> None:
        """Wait until every process got here."""

    def close(self) -> None:
        """Leave the group."""


class ProcessGroup(Collectives):
    """The launcher's group, joined through ``torch.distributed`` (``env://``)."""

    def __init__(self, ranks: Ranks, device: torch.device) -> None:
        import torch.distributed as dist

        self.ranks = ranks
        self.device = device
        self._dist = dist
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size, timeout=COLLECTIVE_TIMEOUT)
        except (RuntimeError, ValueError) as error:
            raise ConfigError(
                f"cannot join the other training processes ({backend}): {_first_line(error)}",
                hint="start the run with torchrun or accelerate launch, with MASTER_ADDR/MASTER_PORT reachable",
            ) from error

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        try:
            self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM)
        except RuntimeError as error:  # gloo: the peer's connection closed; NCCL: the watchdog's abort
            raise PeerStopped(
                f"training stopped: another training process ended ({_first_line(error)})",
                hint="its own message, if it printed one, says why",
            ) from error

    def sum_gradients(self, parameters: Sequence[torch.Tensor], loss: float) -> float:
        # One flat fp32 buffer for the gradients; a parameter no rank gave a gradient stays
        # without one (as in one process: AdamW skips it), so a count of the ranks that did
        # travels with the loss.
        flat = torch.cat([_gradient(p).reshape(-1) for p in parameters]) if parameters else None
        counts = torch.tensor(
            [loss] + [float(p.grad is not None) for p in parameters], dtype=torch.float64, device=self._flag_device()
        )
        if flat is not None:
            self._all_reduce(flat)
        self._all_reduce(counts)
        offset = 0
        for parameter, count in zip(parameters, counts[1:].tolist(), strict=True):
            size = parameter.numel()
            parameter.grad = flat[offset : offset + size].view_as(parameter).clone() if count > 0 else None
            offset += size
        return float(counts[0])

    def any(self, flag: bool) -> bool:
        value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self._flag_device())
        self._all_reduce(value)
        return bool(value.item())

    def _flag_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def barrier(self) -> None:
        self.any(False)  # a collective like any other, so a gone peer raises PeerStopped here too

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def join(ranks: Ranks, device: torch.device) -> Collectives:
    """The collectives for ``ranks``: nothing for one process, the launcher's group for several."""
    if ranks.world_size == 1:
        return Collectives()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return ProcessGroup(ranks, device)


def device_for(ranks: Ranks, requested: str | None) -> str | None:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on GPUs with several processes."""
    if ranks.world_size == 1:
        return requested
    wants_cuda = requested.startswith("cuda") if requested else torch.cuda.is_available()
    return f"cuda:{ranks.local_rank}" if wants_cuda else "cpu"


def _gradient(parameter: torch.Tensor) -> torch.Tensor:
    grad = parameter.grad
    return torch.zeros_like(parameter) if grad is None else grad.detach()


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
