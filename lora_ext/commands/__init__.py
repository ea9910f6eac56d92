"""Sub-commands of ``python -m lora_ext`` (see ``lora_ext.cli``)."""
