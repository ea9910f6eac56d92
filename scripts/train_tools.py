"""WebUI entry point: builds the A1111 host and hands it to the core's UI and API.

Kept thin on purpose: everything else lives in ``lora_ext`` (the core) and
``lora_ext/hosts/a1111.py`` (the only place that talks to ``modules.*``).
"""

from modules import script_callbacks, shared

from lora_ext.api import build_router, parse_credentials
from lora_ext.hosts.a1111 import A1111Host, register_settings
from lora_ext.hosts.a1111_loader import register_callbacks as register_lora_takeover
from lora_ext.ui.tab import build_tab, create_context

host = A1111Host()
# Our loader owns <lora:…> (setting "LoRA loader"); training restores its patches through the host.
host.lora_takeover = register_lora_takeover(lambda: host)
context = create_context(lambda: host)  # shared by the tab and the API: one long job at a time


def on_ui_tabs():
    return [(build_tab(lambda: host, context), "Train Tools", "train_tools")]


def on_app_started(_demo, app):
    credentials = parse_credentials(shared.cmd_opts.api_auth)
    app.include_router(build_router(lambda: host, credentials, context=context))


script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_settings(register_settings)
script_callbacks.on_app_started(on_app_started)
