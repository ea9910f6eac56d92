"""WebUI entry point: builds the host for this WebUI and hands it to the core's UI and API.

Kept thin on purpose: everything else lives in ``lora_ext`` (the core) and
``lora_ext/hosts/`` (the only place that talks to ``modules.*``).
"""

from modules import script_callbacks

from lora_ext.api import build_router, parse_credentials
from lora_ext.hosts.detect import detect_webui, host_for
from lora_ext.ui.tab import build_tab, create_context

# Our loader owns <lora:…> everywhere (on Forge through Forge's patcher). Training: A1111 and Forge; reForge refuses.
host = host_for(detect_webui())
host.register_callbacks()  # Settings and the <lora:…> takeover
context = create_context(lambda: host)  # shared by the tab and the API: one long job at a time


def on_ui_tabs():
    return [(build_tab(lambda: host, context), "Train Tools", "train_tools")]


def on_app_started(_demo, app):
    credentials = parse_credentials(*host.logins())  # --api-auth and --gradio-auth alike: either login works
    app.include_router(build_router(lambda: host, credentials, context=context))


script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_app_started(on_app_started)
