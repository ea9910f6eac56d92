"""Neo's ``modules_forge.packages.comfy.lora`` (a ComfyUI port): the fake needs only its ``weight_adapter``."""

from modules_forge.packages.comfy import weight_adapter  # noqa: F401
