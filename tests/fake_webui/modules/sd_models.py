"""``modules.sd_models``: only what a trainer touches (checkpoint identity and reload)."""

reload_calls = []


class CheckpointInfo:
    def __init__(self, filename, name_for_extra="model", shorthash=None, hash=None):
        self.filename = filename
        self.name = name_for_extra + ".safetensors"
        self.name_for_extra = name_for_extra
        self.model_name = name_for_extra
        self.shorthash = shorthash
        self.hash = hash
        self.title = f"{self.name} [{shorthash}]" if shorthash else self.name


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    reload_calls.append(info)
