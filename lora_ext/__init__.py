"""Train Tools: LoRA training, loading and dataset tools for Stable Diffusion.

The package is the host-independent core. It never imports the WebUI; host
adapters live in ``lora_ext.hosts``.
"""

__version__ = "0.1.0"
