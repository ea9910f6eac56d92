"""Train Tools' loader owning ``<lora:…>`` inside AUTOMATIC1111 (setting "LoRA loader").

The built-in Lora extension registers its ``ExtraNetwork`` as ``lora`` (alias
``lyco``) in ``on_before_ui``; the registry is last-write-wins and before_ui
callbacks of user extensions run *before* the built-in's, so we register in
``on_app_started`` (after every before_ui; again after a UI reload), keeping the
built-in's object to delegate to when the user picks "Built-in".

Before our first merge of a generation we make the built-in inert: empty
``networks.loaded_networks`` and, for every module whose ``network_current_names``
is not empty, let it restore its own backup. Its per-forward hook then sees
wanted == current == () and never touches a weight again, so the two loaders never
both patch, and our backup is never taken of built-in-patched weights. Switching
the setting back to "Built-in" restores our patches before the built-in runs.
See ``docs/loader.md``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from lora_ext import settings
from lora_ext.formats.hashes import lora_short_hash
from lora_ext.loading.cache import LoraCache
from lora_ext.loading.loader import NetworkLoader
from lora_ext.loading.prompt import LoraToken, spec_from_params

log = logging.getLogger(__name__)

SETTING_LOADER = settings.LORA_LOADER
SETTING_CACHE = settings.LORA_CACHE_SIZE
SETTING_KEEP_BACKUPS = settings.KEEP_LORA_BACKUPS
OURS, BUILTIN = settings.LORA_LOADER_CHOICES
HASHES_KEY = "Lora hashes"
PRESETS_FILE = "lbwpresets.txt"  # hako-mikan's preset file name, looked up in the LoRA folder
NO_LORA = str([])  # the current_lora_hash that Forge-style built-ins (Forge, reForge) leave for "no LoRA"


def _opt(name: str, default):
    from modules import shared

    return getattr(shared.opts, name, default) if hasattr(shared, "opts") else default


def builtin_networks():
    """The built-in Lora's ``networks`` module, if the built-in is loaded."""
    return sys.modules.get("networks")


def forget_builtin_networks():
    """Empty the built-in's list of loaded networks; returns its ``networks`` module (None if not loaded)."""
    networks = builtin_networks()
    if networks is not None and getattr(networks, "loaded_networks", None):
        networks.loaded_networks.clear()
    return networks


def make_builtin_inert(sd_model) -> int:
    """Empty the built-in's loaded list and let it restore every module it merged; returns how many."""
    networks = forget_builtin_networks()
    if networks is None:
        return 0
    restore = getattr(networks, "network_restore_weights_from_backup", None)
    restored = 0
    if sd_model is None:
        return 0
    import torch

    with torch.no_grad():
        for module in sd_model.modules():
            if getattr(module, "network_current_names", ()) != ():
                if restore is not None:
                    restore(module)
                module.network_current_names = ()
                restored += 1
    return restored


class LoraTakeover:
    """Our ``lora`` extra network and its lifecycle in the WebUI."""

    lora_hash = staticmethod(lora_short_hash)  # the "Lora hashes" form of this WebUI (A1111's; Forge's differs)

    def __init__(self, host_factory: Callable[[], object]) -> None:
        self._host_factory = host_factory
        self.cache = LoraCache(max_items=int(_opt(SETTING_CACHE, 4)))
        self.loader: NetworkLoader | None = None
        self.builtin = None  # the built-in's ExtraNetwork object, kept to delegate to
        self.network = None  # our ExtraNetwork object
        self.failures: set[tuple[str, str]] = set()  # causes already logged (once each)
        self._fallen_back: int | None = None  # id() of the generation whose tokens went to the built-in

    # -- state ------------------------------------------------------------------------------
    def ours(self) -> bool:
        return _opt(SETTING_LOADER, OURS) != BUILTIN

    def _loader(self) -> NetworkLoader:
        if self.loader is None:
            host = self._host_factory()
            self.loader = NetworkLoader(
                host.parts,
                lambda: [host.lora_dir],
                cache=self.cache,
                presets_path=Path(host.lora_dir) / PRESETS_FILE,
                keep_backups=bool(_opt(SETTING_KEEP_BACKUPS, True)),
                lora_hash=self.lora_hash,
            )
        return self.loader

    def restore(self) -> None:
        """Put back every weight we patched and free the backups (setting change, training, unload)."""
        if self.loader is not None:
            self.loader.restore(release=True)

    # -- callbacks ----------------------------------------------------------------------------
    def install(self, *_args) -> None:
        """``on_app_started``: register ours as ``lora``/``lyco``, after the built-in's before_ui."""
        from modules import extra_networks, shared

        current = extra_networks.extra_network_registry.get("lora")
        if current is not None and current is not self.network:
            self.builtin = current
        if self.network is None:
            self.network = _make_extra_network(self, extra_networks.ExtraNetwork)
        extra_networks.register_extra_network(self.network)
        extra_networks.register_extra_network_alias(self.network, "lyco")
        if hasattr(shared.opts, "onchange") and not getattr(self, "_watching", False):
            shared.opts.onchange(SETTING_LOADER, self.setting_changed, call=False)
            if SETTING_CACHE in getattr(shared.opts, "data_labels", {}):
                shared.opts.onchange(
                    SETTING_CACHE, lambda: self.cache.set_limit(int(_opt(SETTING_CACHE, 4))), call=False
                )
            if SETTING_KEEP_BACKUPS in getattr(shared.opts, "data_labels", {}):
                shared.opts.onchange(SETTING_KEEP_BACKUPS, self.keep_backups_changed, call=False)
            self._watching = True

    def setting_changed(self) -> None:
        """Switching to "Built-in" restores our patches at once; the built-in takes over on the next run."""
        if not self.ours():
            self.restore()

    def keep_backups_changed(self) -> None:
        """Turning "keep backups" off frees the backups of weights that hold no LoRA right now."""
        if self.loader is not None:
            keep = bool(_opt(SETTING_KEEP_BACKUPS, True))
            self.loader.patches.keep_backups = keep
            if not keep:
                self.loader.patches.drop_clean()

    def model_loaded(self, _sd_model=None) -> None:
        """``on_model_loaded``: restore what is still ours, forget the rest, rebuild the key map lazily."""
        if self.loader is not None:
            self.loader.restore(release=True)
            self.loader.invalidate()

    def unload(self) -> None:
        """``on_script_unloaded``: restore and give ``lora`` back to the built-in."""
        self.restore()
        from modules import extra_networks

        if self.builtin is not None and extra_networks.extra_network_registry.get("lora") is self.network:
            extra_networks.register_extra_network(self.builtin)
            extra_networks.register_extra_network_alias(self.builtin, "lyco")

    # -- what differs between WebUIs (``hosts/forge_loader.py``, ``hosts/reforge.py``) ------------------
    def handles(self, sd_model) -> bool:
        """Whether our loader serves this model (else the built-in does, as with the setting "Built-in")."""
        return True

    def make_builtin_inert(self, sd_model) -> None:
        """Undo whatever the built-in applied, before our first patch of a generation."""
        make_builtin_inert(sd_model)

    def apply(self, sd_model, specs: list[LoraToken]):
        """Make the model carry exactly ``specs``; returns the ``LoadReport``."""
        return self._loader().apply(specs)

    # -- the extra network ------------------------------------------------------------------------
    def _delegates(self, sd_model) -> bool:
        return not self.ours() or not self.handles(sd_model)

    def activate(self, p, params_list) -> None:
        model = getattr(p, "sd_model", None) or _shared_model()
        self._fallen_back = None
        if self._delegates(model):
            self.restore()
            if self.builtin is not None:
                self.builtin.activate(p, params_list)
            return
        try:
            self._activate(p, params_list, model)
        except Exception as error:  # noqa: BLE001  (the WebUI's edge: whatever failed, the user's LoRA still applies)
            self._fall_back(p, params_list, error)

    def _activate(self, p, params_list, model) -> None:
        self.make_builtin_inert(model)
        parsed = [_spec(params) for params in params_list]
        specs = [spec for spec, _ in parsed if spec is not None]
        warnings = [message for _, messages in parsed for message in messages]
        auto = _opt("sd_lora", "None")
        if auto and auto != "None" and not any(spec.name == auto for spec in specs):
            specs.append(LoraToken(auto, float(_opt("extra_networks_default_multiplier", 1.0))))
        report = self.apply(model, specs)
        if report.changed_weights:
            # the WebUI caches conditioning by prompt text, not by the files behind its tokens: a file replaced on
            # disk under an unchanged token would otherwise reuse the old text encoder's conditioning
            self._host_factory().drop_cached_conditioning()
        for message in warnings + report.warnings:
            log.warning("Train Tools LoRA: %s", message)
            p.comments[message] = 1
        if any(f.applied for f in report.files) and _opt("lora_add_hashes_to_infotext", True):
            # without a token in the prompt (only "sd_lora") the WebUI never calls deactivate: resolve now
            hashes = LoraHashes(report)
            value = hashes if getattr(p, "extra_network_data", None) else hashes()
            if value:
                p.extra_generation_params[HASHES_KEY] = value

    def _fall_back(self, p, params_list, error: Exception) -> None:
        """Our loader failed for this generation: log the cause once, leave nothing of ours in the model, and hand
        the tokens to the built-in (the user gets the built-in's LoRA, never none)."""
        cause = (type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        if cause not in self.failures:
            self.failures.add(cause)
            log.error(
                "Train Tools: its <lora:…> loader failed (%s: %s); the WebUI's built-in Lora applies the LoRAs "
                "instead (logged once per cause; Settings → Train Tools → LoRA loader picks the built-in for good)",
                *cause,
            )
        try:
            self.restore()
        except Exception as restore_error:  # noqa: BLE001
            log.error("Train Tools: restoring after that failure failed too (%s)", restore_error)
        self._fallen_back = id(p)
        if self.builtin is not None:
            self.builtin.activate(p, params_list)

    def deactivate(self, p) -> None:
        if self._fallen_back == id(p) or self._delegates(getattr(p, "sd_model", None) or _shared_model()):
            if self.builtin is not None:
                self.builtin.deactivate(p)
            return
        resolve_hashes(p.extra_generation_params)


class LoraHashes:
    """The "Lora hashes" value, computed when first asked for.

    The WebUI (≥ 1.7) calls a callable in ``extra_generation_params`` when it writes an
    infotext, after sampling has started, so an unseen file is not hashed before the first
    step. But ``Processed.js()`` (the API's ``info``) serialises a callable as ``null``:
    ``deactivate``, which the WebUI calls after the infotexts and before it builds
    ``Processed``, swaps this object for its string (hashes cached by file identity).
    """

    def __init__(self, report) -> None:
        self._report = report

    def __call__(self, **_) -> str | None:
        return self._report.infotext() or None


def resolve_hashes(params: dict) -> None:
    """Replace a pending ``LoraHashes`` by its string (or drop the key when nothing could be hashed)."""
    value = params.get(HASHES_KEY)
    if isinstance(value, LoraHashes):
        text = value()
        if text:
            params[HASHES_KEY] = text
        else:
            del params[HASHES_KEY]


def _shared_model():
    from modules import shared

    return shared.sd_model


def _spec(params) -> tuple[LoraToken | None, list[str]]:
    """The WebUI already split the token (``ExtraNetworkParams``): its items become a spec as they are."""
    token = f"<lora:{':'.join(map(str, params.items))}>"  # only quoted in warnings
    return spec_from_params(params.positional, params.named, token)


def _make_extra_network(takeover: LoraTakeover, base: type):
    """An ``ExtraNetwork`` subclass built at install time (the base class lives in the WebUI)."""

    class TrainToolsLora(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__("lora")

        def activate(self, p, params_list) -> None:
            takeover.activate(p, params_list)

        def deactivate(self, p) -> None:
            takeover.deactivate(p)

    return TrainToolsLora()


def register_callbacks(host_factory: Callable[[], object], takeover_class: type[LoraTakeover] = LoraTakeover):
    """Wire the takeover into the WebUI; call once from the host's ``register_callbacks``."""
    from modules import script_callbacks

    takeover = takeover_class(host_factory)
    script_callbacks.on_app_started(takeover.install)
    script_callbacks.on_model_loaded(takeover.model_loaded)
    script_callbacks.on_script_unloaded(takeover.unload)
    return takeover
