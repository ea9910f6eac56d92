"""Exact, in-place weight patching with restore from an exact backup.

For every parameter that some adapter touches we keep a bit-exact copy of the
original (taken before our first write, on ``backup_device``). A merge always
starts from that copy in fp32, adds every wanted ΔW (computed in fp32 against
the original weight, so patches never see each other's rounding) and rounds
once into the parameter, in place. Restoring copies the backup back; nothing is
ever undone by subtraction, which drifts (reference §4.5).

Each parameter remembers the patch set it holds (its *signature*), so a new
request re-merges only parameters whose set changed and an identical request
does nothing. A parameter whose ``_version`` moved since our last write was
changed by someone else (a checkpoint loaded into the same modules); its backup
is stale and is dropped without being written back.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from lora_ext.formats import Adapter


@dataclass(frozen=True)
class ParamPatch:
    """One adapter's contribution to one parameter (or to a row slice of it)."""

    adapter: Adapter
    multiplier: float
    rows: tuple[int, int] | None = None
    is_bias: bool = False
    source: Hashable = None  # identifies the adapter (file identity, module prefix, dyn)

    @property
    def signature(self) -> tuple:
        return (self.source if self.source is not None else id(self.adapter), self.multiplier, self.rows, self.is_bias)


@dataclass
class _ParamState:
    param: torch.Tensor
    backup: torch.Tensor
    signature: tuple = ()
    version: int = -1
    data_ptr: int = 0

    def intact(self) -> bool:
        return self.param._version == self.version and self.param.data_ptr() == self.data_ptr


@dataclass
class PatchStats:
    merged: int = 0
    restored: int = 0
    unchanged: int = 0
    dropped: int = 0  # backups discarded because the weight was replaced behind our back


@dataclass
class AppliedPatches:
    """Backups of original weights and the patch set each patched parameter holds."""

    backup_device: str | torch.device = "cpu"
    _states: dict[int, _ParamState] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._states)

    def intact(self) -> bool:
        """True when every patched parameter still holds exactly what we wrote."""
        return all(state.intact() for state in self._states.values())

    def apply(self, wanted: Sequence[tuple[torch.Tensor, Sequence[ParamPatch]]]) -> PatchStats:
        """Bring every parameter to its wanted patch set; parameters not listed go back to their original."""
        stats = PatchStats()
        for key, state in list(self._states.items()):
            if not state.intact():
                del self._states[key]
                stats.dropped += 1
        wanted_by_id = {id(param): (param, list(patches)) for param, patches in wanted if patches}
        for key in [key for key in self._states if key not in wanted_by_id]:
            stats.restored += self._pop_and_restore(key)
        with torch.no_grad():
            for key, (param, patches) in wanted_by_id.items():
                signature = tuple(patch.signature for patch in patches)
                state = self._states.get(key)
                if state is not None and state.signature == signature:
                    stats.unchanged += 1
                    continue
                if state is None:
                    state = _ParamState(param, param.detach().to(self.backup_device, copy=True))
                self._merge(state, patches)
                state.signature = signature
                state.version, state.data_ptr = param._version, param.data_ptr()
                self._states[key] = state
                stats.merged += 1
        return stats

    def _pop_and_restore(self, key: int) -> int:
        state = self._states.pop(key)
        with torch.no_grad():
            state.param.copy_(state.backup)
        return 1

    @staticmethod
    def _merge(state: _ParamState, patches: Sequence[ParamPatch]) -> None:
        param = state.param
        work = state.backup.to(param.device, torch.float32, copy=True)
        needs_base = any(patch.adapter.needs_base for patch in patches)
        original = state.backup.to(param.device, torch.float32) if needs_base else work
        for patch in patches:
            rows = slice(None) if patch.rows is None else slice(*patch.rows)
            into, base = work[rows], original[rows]
            if patch.is_bias:
                delta = patch.adapter.delta_bias(base, patch.multiplier)
                if delta is not None:
                    into.add_(delta)
            else:
                patch.adapter.accumulate(into, base, patch.multiplier)
        param.copy_(work)  # the one rounding to the storage dtype

    def restore(self) -> int:
        """Write every backup back (bit-exact) and forget them; returns how many parameters were restored."""
        restored = 0
        with torch.no_grad():
            for state in self._states.values():
                if state.intact():
                    state.param.copy_(state.backup)
                    restored += 1
        self._states.clear()
        return restored

    def invalidate(self) -> None:
        """Forget every backup without writing (the weights were replaced, e.g. a new checkpoint)."""
        self._states.clear()
