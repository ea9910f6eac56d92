"""Checks that hold the same way in every WebUI we support (the A1111 shell: Forge, reForge and Neo keep it)."""

from __future__ import annotations

import sys

import torch


def loaded_model():
    from modules import shared

    return shared.sd_model


def conditioning_cache_is_the_class_s_shared_lists() -> None:
    """A new processing object shares ``StableDiffusionProcessing.cached_c``/``cached_uc`` (``persistent_cond_cache``,
    keyed by prompt text): we empty them in place when our weights change under an unchanged token."""
    from modules import processing, shared

    assert getattr(shared.opts, "persistent_cond_cache", True), "the check needs persistent_cond_cache on (default)"
    p = processing.StableDiffusionProcessingTxt2Img(prompt="contract")
    assert isinstance(processing.StableDiffusionProcessing.cached_c, list)
    assert p.cached_c is processing.StableDiffusionProcessing.cached_c
    assert p.cached_uc is processing.StableDiffusionProcessing.cached_uc


def extra_network_params_compare_by_items() -> None:
    """The cond cache compares token data by value: equal tokens, equal params (so only the file can change)."""
    from modules import extra_networks

    params = extra_networks.ExtraNetworkParams
    assert params(items=["x", "0.5"]) == params(items=["x", "0.5"])
    assert params(items=["x", "0.5"]) != params(items=["x", "1"])


def page_logins_are_readable() -> None:
    """``--gradio-auth`` / ``--gradio-auth-path`` logins come from the WebUI's own reader (our routes take them)."""
    from modules.initialize_util import get_gradio_auth_creds

    assert all(isinstance(pair, tuple) for pair in get_gradio_auth_creds())


def builtin_lora_is_the_networks_module() -> None:
    """The built-in Lora lives in ``sys.modules["networks"]`` with its ``loaded_networks`` list."""
    networks = sys.modules.get("networks")
    assert networks is not None, "no built-in Lora module named 'networks'"
    assert isinstance(networks.loaded_networks, list)


def extra_network_registry_is_last_write_wins() -> None:
    """We own ``lora`` by registering after the built-in (``on_app_started``)."""
    from modules import extra_networks

    registered = extra_networks.extra_network_registry.get("lora")
    assert registered is not None and type(registered).__name__ == "TrainToolsLora", type(registered).__name__


def queue_lock_and_state() -> None:
    """Training holds the queue lock; progress and Interrupt go through ``shared.state``."""
    from modules import call_queue, shared

    assert callable(call_queue.queue_lock.acquire) and callable(call_queue.queue_lock.release)
    for name in ("interrupted", "job_count", "job_no", "textinfo"):
        assert hasattr(shared.state, name), name
    assert callable(shared.state.begin) and callable(shared.state.end)


def saved_ui_defaults_key_by_label_and_leave_out_do_not_save_to_config() -> None:
    """The WebUI's saved defaults (``ui-config.json``) key an input by its tab and label only, so two inputs with one
    label share a value; a component with ``do_not_save_to_config`` is left out (``ui/tab.py`` sets it on all of its
    components: their values are Train Tools' own)."""
    import tempfile
    from pathlib import Path

    import gradio as gr
    from modules.ui_loadsave import UiLoadsave

    with gr.Blocks(analytics_enabled=False) as blocks:
        first = gr.Number(label="Repeats", value=0)
        second = gr.Number(label="Repeats", value=2)
        ours = gr.Number(label="Repeats", value=3)
        ours.do_not_save_to_config = True
    with tempfile.TemporaryDirectory() as folder:
        loadsave = UiLoadsave(str(Path(folder) / "ui-config.json"))  # a first start: no file yet
        loadsave.add_block(blocks, "contract")
    assert loadsave.ui_settings.get("contract/Repeats/value") == 0, loadsave.ui_settings
    assert (first.value, second.value, ours.value) == (0, 0, 3)


def is_linear_like(module: torch.nn.Module) -> bool:
    from lora_ext.training.network import is_linear

    return is_linear(module)


CHECKS = (
    conditioning_cache_is_the_class_s_shared_lists,
    extra_network_params_compare_by_items,
    page_logins_are_readable,
    builtin_lora_is_the_networks_module,
    extra_network_registry_is_last_write_wins,
    queue_lock_and_state,
    saved_ui_defaults_key_by_label_and_leave_out_do_not_save_to_config,
)
