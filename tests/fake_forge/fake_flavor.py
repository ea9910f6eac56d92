"""Which WebUI the fake ``backend`` stands for: lllyasviel's Forge (main ``dfdcbab685e5``, the default) or Forge Neo
(``NEO``: Haoming02's branch ``neo`` as packaged in exo101/sd-webui-forge-neo-v3 ``5692d2d1``, "neo-2.26").

Neo continues Forge 2, so one fake serves both; the modules that differ read ``NEO`` once, at import
(``tests/forge.py`` sets it before anything imports ``backend`` and drops ``backend`` afterwards):
``args`` (``dynamic_args`` is a class), ``operations`` (``Linear`` subclasses ``nn.Linear``, online LoRAs in
``weight_function``), ``patcher.base`` (ComfyUI's ``ModelPatcher``: ``patches``, a ``backup`` shared by clones, no
``LoraLoader``), ``patcher.lora`` (weight-adapter objects), ``memory_management`` (``model_offloaded_memory``).
"""

NEO = False
