"""The network loader: ``<lora:…>`` tokens → patched weights, for one host's model.

``NetworkLoader`` owns a ``LoraCache`` (parsed files) and an ``AppliedPatches``
(backups and current patch sets). Hosts call ``prompt_hook(prompt)`` before
generating; it parses the tokens, applies them (or restores when there are
none) and returns the prompt without them. A host whose own patcher writes the
weights (Forge) asks ``patch_list(specs)`` instead: the same resolution, as named
per-parameter patches, with no weight touched. Problems with one LoRA (not found,
bad token, unreadable file, another base model) become warnings in the
``LoadReport`` and the rest still applies.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lora_ext.errors import LoraExtError
from lora_ext.formats.hashes import lora_short_hash
from lora_ext.formats.keymap import KeyMap, Target, keymap_for_parts
from lora_ext.host import Host, ModelParts
from lora_ext.loading.cache import LoraCache, file_identity
from lora_ext.loading.index import LoraEntry, LoraIndex
from lora_ext.loading.patch_list import FilePatches, ParamRef, PatchList, group_by_param
from lora_ext.loading.patcher import AppliedPatches
from lora_ext.loading.prompt import LoraToken, parse_prompt, read_user_presets
from lora_ext.loading.resolve import (
    LoadReport,
    Resolved,
    group_by_tensor,
    not_found,
    resolve_parsed,
    unreadable,
)

log = logging.getLogger(__name__)


class NetworkLoader:
    """Applies ``<lora:…>`` networks to one host's model, exactly and incrementally."""

    def __init__(
        self,
        parts: Callable[[], ModelParts],
        lora_dirs: Sequence[Path] | Callable[[], Sequence[Path]],
        *,
        cache: LoraCache | None = None,
        presets_path: Path | None = None,
        warn: Callable[[str], None] | None = None,
        backup_device: str | torch.device = "cpu",
        keep_backups: bool = True,
        lora_hash: Callable[[Path, dict[str, str]], str] = lora_short_hash,
    ) -> None:
        self._parts = parts
        self._lora_hash = lora_hash  # the "Lora hashes" form of the WebUI we run in
        self._lora_dirs = lora_dirs
        self.cache = cache if cache is not None else LoraCache()
        self.presets_path = presets_path
        self._warn = warn
        self.patches = AppliedPatches(backup_device=backup_device, keep_backups=keep_backups)
        self.last_report = LoadReport()
        self._model_key: tuple | None = None
        self._keymap: KeyMap | None = None
        self._params: dict[Target, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.index = LoraIndex(lora_dirs)
        self._last_request: tuple | None = None
        # (request, what patch_list returned, its warnings as they were then)
        self._last_patch_list: tuple[tuple, PatchList, list[str]] | None = None
        self._hashes: dict[tuple, str] = {}
        self._last_warnings: list[str] = []

    @classmethod
    def for_host(cls, host: Host, **kwargs) -> NetworkLoader:
        """A loader over ``host.parts()`` and ``host.lora_dir``, installed as the host's prompt hook."""
        loader = cls(host.parts, lambda: [host.lora_dir], **kwargs)
        host.set_prompt_hook(loader.prompt_hook)
        return loader

    # -- the list of LoRAs -----------------------------------------------------------------
    def lora_dirs(self) -> list[Path]:
        return self.index.lora_dirs()

    def available(self, refresh: bool = False) -> list[LoraEntry]:
        """LoRA files in the LoRA folder(s); rescanned on ``refresh``."""
        return self.index.entries(refresh)

    def resolve(self, name: str) -> LoraEntry | None:
        """The file ``<lora:name>`` names (``LoraIndex.find``)."""
        return self.index.find(name)

    # -- model binding ----------------------------------------------------------------------
    def _bind(self) -> tuple[ModelParts, KeyMap]:
        parts = self._parts()
        key = (id(parts.unet), *(id(encoder.root) for encoder in parts.text_encoders))
        if key != self._model_key or self._keymap is None:
            if self._model_key is not None:
                self.patches.release()  # the old model may still be alive (checkpoint cache): leave it clean
            self._model_key, self._keymap, self._params = key, keymap_for_parts(parts), {}
            self._last_request = self._last_patch_list = None
        return parts, self._keymap

    @staticmethod
    def _module(parts: ModelParts, target: Target) -> torch.nn.Module:
        roots = {"unet": parts.unet, **{f"te{e.index}": e.root for e in parts.text_encoders}}
        return roots[target.part].get_submodule(target.module)

    def _param(self, parts: ModelParts, target: Target) -> tuple[torch.Tensor, torch.Tensor | None]:
        found = self._params.get(target)
        if found is None:
            module = self._module(parts, target)
            bias = getattr(module, target.bias_attr) if target.bias_attr else None
            found = self._params[target] = (getattr(module, target.weight_attr), bias)
        return found

    def _ref(self, parts: ModelParts, target: Target) -> tuple[ParamRef, ParamRef | None]:
        """The target's weight and bias by name, for ``patch_list`` (no tensor is kept: the host may replace them)."""
        module = self._module(parts, target)
        weight = getattr(module, target.weight_attr)
        bias = getattr(module, target.bias_attr) if target.bias_attr else None
        weight_ref = ParamRef(target.part, f"{target.module}.{target.weight_attr}", tuple(weight.shape))
        if bias is None:
            return weight_ref, None
        return weight_ref, ParamRef(target.part, f"{target.module}.{target.bias_attr}", tuple(bias.shape))

    def invalidate(self) -> None:
        """The host loaded other weights into the model: drop backups without writing them back."""
        self.patches.invalidate()
        self._model_key = self._keymap = None
        self._params = {}
        self._last_request = self._last_patch_list = None

    def restore(self, release: bool = False) -> int:
        """Put every patched weight back to its original, bit-exact; ``release`` also frees the backups."""
        restored = self.patches.release() if release else self.patches.restore()
        self._last_request = self._last_patch_list = None
        self.last_report = LoadReport()
        return restored

    # -- applying ---------------------------------------------------------------------------
    def prompt_hook(self, prompt: str) -> str:
        """Apply the prompt's ``<lora:…>`` tokens (restore when none) and return the prompt without them."""
        parsed = parse_prompt(prompt)
        report = self.apply(parsed.specs)
        report.warnings[:0] = parsed.warnings
        for message in report.warnings:
            log.warning(message)
            if self._warn:
                self._warn(message)
        return parsed.prompt

    def apply(self, specs: Sequence[LoraToken]) -> LoadReport:
        """Make the model carry exactly these networks; returns what was applied, skipped and why."""
        parts, keymap = self._bind()
        resolved = [(spec, self.resolve(spec.name)) for spec in specs]
        request = self._request_key(resolved)
        if request is not None and request == self._last_request and self.patches.intact():
            # nothing to touch, but the same request gets the same warnings (a broken file, unmatched keys), and
            # they reach whoever reads last_report (the Generate tab), with the prompt's own warnings added later
            self.last_report = LoadReport(self.last_report.files, list(self._last_warnings), unchanged=True)
            return self.last_report
        report, results = self._resolve_all(resolved, keymap, functools.partial(self._param, parts))
        report.stats = self.patches.apply(group_by_tensor(results))
        report.changed_weights = bool(report.stats.merged or report.stats.restored)
        # random block weights are drawn again for every generation: never "unchanged"
        self._last_request = None if any(f.random_blocks for f in report.files) else request
        return report

    def patch_list(self, specs: Sequence[LoraToken]) -> PatchList:
        """What these networks want of each parameter, by name, touching no weight (for a host's own patcher)."""
        parts, keymap = self._bind()
        resolved = [(spec, self.resolve(spec.name)) for spec in specs]
        request = self._request_key(resolved)
        if request is not None and self._last_patch_list is not None and self._last_patch_list[0] == request:
            # the same request on the same model and files: the same patches, and again the same warnings
            _request, last, warnings = self._last_patch_list
            self.last_report = LoadReport(files=last.report.files, warnings=list(warnings), unchanged=True)
            return PatchList(self.last_report, last.files)
        report, results = self._resolve_all(resolved, keymap, functools.partial(self._ref, parts))
        files = [
            FilePatches(result.report.name, result.report.path, group_by_param(result.patches))
            for result in results
            if result.patches
        ]
        patch_list = PatchList(report, files)
        # random block weights are drawn again for every generation: never reused
        random = any(f.random_blocks for f in report.files)
        self._last_patch_list = None if request is None or random else (request, patch_list, list(report.warnings))
        return patch_list

    def _resolve_all(self, resolved, keymap: KeyMap, param) -> tuple[LoadReport, list[Resolved]]:
        """Every (spec, file) against the bound model: the report (warnings in order) and each spec's patches."""
        preset_warnings: list[str] = []
        user_presets = read_user_presets(self.presets_path, preset_warnings)
        results = [self._resolve(spec, entry, keymap, user_presets, param) for spec, entry in resolved]
        report = LoadReport(
            files=[result.report for result in results],
            warnings=preset_warnings + [message for result in results for message in result.warnings],
        )
        self.cache.trim(keep=len(resolved))
        self.last_report = report
        self._last_warnings = list(report.warnings)
        return report, results

    def _request_key(self, resolved) -> tuple | None:
        key = []
        for spec, entry in resolved:
            if entry is None:
                return None  # a missing file must warn every time
            try:
                identity = file_identity(entry.path)
            except OSError:
                return None
            key.append((spec, identity))
        return (self._model_key, tuple(key), self._presets_identity())

    def _presets_identity(self) -> tuple | None:
        try:
            stat = os.stat(self.presets_path) if self.presets_path is not None else None
        except OSError:
            return None
        return None if stat is None else (stat.st_mtime_ns, stat.st_size)

    def _resolve(self, spec: LoraToken, entry: LoraEntry | None, keymap: KeyMap, user_presets, param) -> Resolved:
        """One spec against the bound model; reading the file is the one step that needs the loader's state."""
        if entry is None:
            return not_found(spec, self.lora_dirs())
        try:
            parsed = self.cache.get(entry.path)
        except LoraExtError as error:
            if not entry.path.is_file():
                self._entries = None  # removed since the list was scanned: look again next time
            return unreadable(spec, entry.path, error)
        resolved = resolve_parsed(spec, entry.path, parsed, keymap, user_presets, param)
        if resolved.report.skipped is None:
            # hashing the file costs a second read: only when the infotext asks for it
            resolved.report.hasher = functools.partial(self._short_hash, parsed.identity, entry.path, parsed.metadata)
        return resolved

    def _short_hash(self, identity: tuple, path: Path, metadata: dict[str, str]) -> str | None:
        """The hash for the infotext; None (left out) if the file went away since it was applied."""
        if identity not in self._hashes:
            try:
                self._hashes[identity] = self._lora_hash(path, metadata)
            except (OSError, LoraExtError) as error:
                log.warning("cannot hash %s for the infotext: %s", path.name, error)
                return None
        return self._hashes[identity]
