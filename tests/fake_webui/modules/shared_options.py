"""``modules.shared_options`` (v1.10.1): the WebUI's own options that Train Tools reads, with their defaults.
(The built-in Lora adds ``sd_lora`` and ``lora_add_hashes_to_infotext``: ``extensions_builtin_lora_fake.py``.)"""

from modules.options import OptionInfo

options_templates = {
    "persistent_cond_cache": OptionInfo(True, "Persistent cond cache"),
    "extra_networks_default_multiplier": OptionInfo(1.0, "Default multiplier for extra networks"),
}


def register(opts) -> None:
    for key, info in options_templates.items():
        opts.add_option(key, info)
