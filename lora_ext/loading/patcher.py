"""Exact, in-place weight patching with restore from an exact backup.

For every parameter that some adapter touches we keep a bit-exact copy of the
original (taken before our first write, on ``backup_device``). A merge always
starts from that copy in fp32, adds every wanted ΔW (computed in fp32 against
the original weight, so patches never see each other's rounding) and rounds
once into the parameter, in place. Restoring copies the backup back; nothing is
ever undone by subtraction, which drifts (docs/loader.md, "Why never subtract").

Each parameter remembers the patch set it holds (its *signature*), so a new
request re-merges only parameters whose set changed and an identical request
does nothing. Backups outlive a restore (``keep_backups``, as the WebUI's own Lora
keeps them): the next LoRA on the same weights merges straight from them instead of
copying the original again into freshly allocated memory, which is most of the cost
of a first apply. ``release`` gives that memory back.

A parameter whose ``_version`` moved since our last write (or restore) was changed by
someone else (an *inference tensor*, made under ``torch.inference_mode()`` as reForge's are, has
no version counter: its data pointer and a sample of its values tell instead); if it no longer holds the values we wrote (a checkpoint
loaded into the same modules) its backup is stale and is dropped without being
written back, while a parameter merely moved between devices (lowvram) is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from lora_ext.formats import Adapter
from lora_ext.formats.placement import WHOLE, Placement


@dataclass(frozen=True)
class ParamPatch:
    """One adapter's contribution to one parameter (or to a region of it: ``Placement``)."""

    adapter: Adapter
    multiplier: float
    placement: Placement = WHOLE
    is_bias: bool = False
    source: Hashable = None  # identifies the adapter (file identity, module prefix, dyn)

    @property
    def signature(self) -> tuple:
        identity = self.source if self.source is not None else id(self.adapter)
        return (identity, self.multiplier, self.placement, self.is_bias)


@dataclass
class _ParamState:
    param: torch.Tensor
    backup: torch.Tensor
    signature: tuple = ()  # the patches the parameter holds; () = it holds its original
    version: int = -1
    data_ptr: int = 0
    sample: torch.Tensor | None = None  # a few values of what we wrote

    def intact(self) -> bool:
        """Nobody wrote to or replaced the parameter since our last write. Cheap for an ordinary tensor (its
        version counter); an inference tensor (reForge) has none, so a few values are compared (a small copy to
        the CPU; ``AppliedPatches.intact`` makes one for all of them)."""
        if self.param.data_ptr() != self.data_ptr:
            return False
        if self.param.is_inference():  # no version counter: a few values must do
            return self.sample is not None and torch.equal(_sample(self.param), self.sample)
        return self.param._version == self.version

    def still_ours(self) -> bool:
        """Slower, for params that fail ``intact``: moved between devices (lowvram) but still holding our values?"""
        if self.sample is None or not torch.equal(_sample(self.param), self.sample):
            return False
        self.mark_written()
        return True

    def mark_written(self) -> None:
        self.version = -1 if self.param.is_inference() else self.param._version
        self.data_ptr = self.param.data_ptr()
        self.sample = _sample(self.param)


def writable(param: torch.Tensor) -> contextlib.AbstractContextManager:
    """Where ``param`` may be written in place: inside ``torch.inference_mode()`` for an inference tensor
    (outside it an in-place write raises), under ``no_grad`` otherwise."""
    return torch.inference_mode() if param.is_inference() else torch.no_grad()


SAMPLE_POINTS = 64


def _points(param: torch.Tensor) -> torch.Tensor:
    """A few evenly spaced values of ``param``, where it lives."""
    flat = param.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLE_POINTS)
    return flat[::step][:SAMPLE_POINTS]


def _sample(param: torch.Tensor) -> torch.Tensor:
    return _points(param).to("cpu", copy=True)


def _samples_unchanged(states: Sequence[_ParamState]) -> bool:
    """Whether these parameters still hold the values sampled at our last write: their samples gathered into
    one copy to the CPU per device and dtype (on a GPU one wait, not one per parameter)."""
    groups: dict[tuple[torch.device, torch.dtype], list[_ParamState]] = {}
    for state in states:
        if state.sample is None:
            return False
        groups.setdefault((state.param.device, state.param.dtype), []).append(state)
    with torch.no_grad():
        for group in groups.values():
            now = torch.cat([_points(state.param) for state in group]).cpu()
            if not torch.equal(now, torch.cat([state.sample for state in group])):
                return False
    return True


@dataclass
class PatchStats:
    merged: int = 0
    restored: int = 0
    unchanged: int = 0
    dropped: int = 0  # backups discarded because the weight was replaced behind our back
    backed_up: int = 0  # originals copied into new backups by this call


@dataclass
class AppliedPatches:
    """Backups of original weights and the patch set each patched parameter holds."""

    backup_device: str | torch.device = "cpu"
    keep_backups: bool = True  # keep a parameter's backup after restoring it (the next merge needs no copy)
    _states: dict[int, _ParamState] = field(default_factory=dict)
    _scratch: dict[tuple, torch.Tensor] = field(default_factory=dict)  # reused fp32 row-block buffers

    def __len__(self) -> int:
        """How many parameters hold patches now."""
        return sum(1 for state in self._states.values() if state.signature)

    @property
    def backed_up(self) -> int:
        """How many parameters have a backup (patched or kept after a restore)."""
        return len(self._states)

    @property
    def backup_bytes(self) -> int:
        """Memory the backups hold."""
        return sum(state.backup.numel() * state.backup.element_size() for state in self._states.values())

    def intact(self) -> bool:
        """True when every parameter we track still holds exactly what we last wrote or saw (``_ParamState.intact``
        for them all, with the inference tensors' samples compared in one copy per device and dtype)."""
        states = list(self._states.values())
        if any(state.param.data_ptr() != state.data_ptr for state in states):
            return False
        counted = [state for state in states if not state.param.is_inference()]
        if any(state.param._version != state.version for state in counted):
            return False
        return _samples_unchanged([state for state in states if state.param.is_inference()])

    def apply(self, wanted: Sequence[tuple[torch.Tensor, Sequence[ParamPatch]]]) -> PatchStats:
        """Bring every parameter to its wanted patch set; parameters not listed go back to their original."""
        stats = PatchStats()
        stats.dropped = self._drop_stale()
        wanted_by_id = {id(param): (param, list(patches)) for param, patches in wanted if patches}
        for key in [key for key in self._states if key not in wanted_by_id]:
            stats.restored += self._restore_one(key)
        for key, (param, patches) in wanted_by_id.items():
            signature = tuple(patch.signature for patch in patches)
            state = self._states.get(key)
            if state is not None and state.signature == signature:
                stats.unchanged += 1
                continue
            with writable(param):
                if state is None:
                    # the backup is taken inside the merge (block by block on the fast path)
                    state = _ParamState(param, torch.empty_like(param, device=self.backup_device))
                    self._merge(state, patches, self._scratch, take_backup=True)
                    stats.backed_up += 1
                else:
                    self._merge(state, patches, self._scratch)
            state.signature = signature
            state.mark_written()
            self._states[key] = state
            stats.merged += 1
        return stats

    def _drop_stale(self) -> int:
        """Forget backups of parameters someone else rewrote: the new values are the original now."""
        stale = [key for key, state in self._states.items() if not state.intact() and not state.still_ours()]
        for key in stale:
            del self._states[key]
        return len(stale)

    def _restore_one(self, key: int) -> int:
        """Write one backup back (bit-exact); keep or drop the backup; 1 if the weight changed."""
        state = self._states[key]
        written = 0
        if state.signature:
            with writable(state.param):
                state.param.copy_(state.backup)
            state.signature = ()
            state.mark_written()
            written = 1
        if not self.keep_backups:
            del self._states[key]
        return written

    @staticmethod
    def _merge(state: _ParamState, patches: Sequence[ParamPatch], scratch: dict, take_backup: bool = False) -> None:
        param = state.param
        factors = [
            patch.adapter.low_rank_factors(patch.multiplier) if patch.placement.whole and not patch.is_bias else None
            for patch in patches
        ]
        if param.dim() >= 2 and param.is_contiguous() and all(f is not None for f in factors):
            _merge_low_rank_in_blocks(param, state.backup, factors, take_backup, scratch)  # type: ignore[arg-type]
            return
        if take_backup:
            state.backup.copy_(param.detach())
        work = state.backup.to(param.device, torch.float32, copy=True)
        needs_base = any(patch.adapter.needs_base for patch in patches)
        original = state.backup.to(param.device, torch.float32) if needs_base else work
        add_deltas(work, original, patches)
        param.copy_(work)  # the one rounding to the storage dtype

    def restore(self) -> int:
        """Write every patched parameter's backup back (bit-exact); returns how many were written."""
        self._drop_stale()
        return sum(self._restore_one(key) for key in list(self._states))

    def release(self) -> int:
        """Restore, then free every backup (memory back; the next apply copies originals again)."""
        restored = self.restore()
        self._states.clear()
        return restored

    def drop_clean(self) -> int:
        """Free the backups of parameters that hold their original now; returns how many."""
        clean = [key for key, state in self._states.items() if not state.signature]
        for key in clean:
            del self._states[key]
        return len(clean)

    def invalidate(self) -> None:
        """Forget every backup without writing (the weights were replaced, e.g. a new checkpoint)."""
        self._states.clear()


def add_deltas(work: torch.Tensor, original: torch.Tensor, patches: Sequence[ParamPatch]) -> None:
    """``work += Σ ΔW`` in fp32, each ΔW computed against ``original`` (the unpatched weight)."""
    for patch in patches:
        into, base = patch.placement.region(work), patch.placement.region(original)
        if patch.is_bias:
            delta = patch.adapter.delta_bias(base, patch.multiplier)
            if delta is not None:
                into.add_(delta)
        elif into.is_contiguous():
            patch.adapter.accumulate(into, base, patch.multiplier)
        else:  # a strided region (inpaint input channels, a transposed projection): ΔW in a temporary
            delta = torch.zeros(into.shape, dtype=into.dtype, device=into.device)
            patch.adapter.accumulate(delta, base.contiguous(), patch.multiplier)
            into.add_(delta)


ROW_BLOCK_ELEMENTS = 1 << 19  # 2 MiB of fp32 per block: the block stays in cache from read to write


def _merge_low_rank_in_blocks(
    param: torch.Tensor,
    backup: torch.Tensor,
    factors: Sequence[tuple[torch.Tensor, torch.Tensor, float]],
    take_backup: bool,
    scratch: dict[tuple, torch.Tensor],
) -> None:
    """W = round(W₀ + Σ sᵢ·upᵢ@downᵢ), computed a block of rows at a time.

    Same arithmetic as the general path (fp32 from the backup, one rounding), but the
    fp32 working copy of a block never leaves the cache, so a merge costs about one
    read of the backup and one write of the weight. On the first merge the backup is
    taken block by block in the same pass.
    """
    rows = param.shape[0]
    flat_param = param.view(rows, -1)
    flat_backup = backup.view(rows, -1)
    step = max(1, ROW_BLOCK_ELEMENTS // max(1, flat_param.shape[1]))
    device_factors = [(up.to(param.device), down.to(param.device), scale) for up, down, scale in factors]
    # an inference-mode merge gets its own buffer: one made there is an inference tensor, which the
    # next merge outside inference mode could not write into
    slot = (param.device, torch.is_inference_mode_enabled())
    buffer = scratch.get(slot)
    needed = step * flat_param.shape[1]
    if buffer is None or buffer.numel() < needed:
        # one fp32 block buffer, reused for every block and call: fresh memory would page-fault each time
        buffer = scratch[slot] = torch.empty(max(needed, ROW_BLOCK_ELEMENTS), device=param.device)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        work = buffer[: (stop - start) * flat_param.shape[1]].view(stop - start, -1)
        if take_backup:
            flat_backup[start:stop].copy_(flat_param[start:stop])
            work.copy_(flat_param[start:stop])
        else:
            work.copy_(flat_backup[start:stop])
        for up, down, scale in device_factors:
            work.addmm_(up[start:stop], down, alpha=scale)
        flat_param[start:stop].copy_(work)
