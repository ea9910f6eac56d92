"""``modules.shared``: opts, state, cmd_opts and the loaded model (set by tests)."""

from types import SimpleNamespace

from modules.options import OptionInfo, Options  # noqa: F401  (re-exported as in the WebUI)
from modules.shared_options import register as _register_webui_options
from modules.shared_state import State

cmd_opts = SimpleNamespace(
    lowvram=False, medvram=False, medvram_sdxl=False, lora_dir="models/Lora", api_auth=None, api=False,
    gradio_auth=None, gradio_auth_path=None,
    data_dir=".", no_half=True, ui_debug_mode=False,
)
opts = Options()
_register_webui_options(opts)
state = State()
sd_model = None
demo = None
parallel_processing_allowed = True
