"""Host adapters. Only the WebUI ones (``webui.py``, ``a1111.py``, ``a1111_loader.py``, ``forge.py``,
``forge_loader.py``, ``reforge.py``, ``unsupported.py``, ``detect.py``) import the WebUI's ``modules`` (or
Forge's ``backend``), always inside functions; the others wrap ``ldm``-style model objects (``ldm.py``) or
diffusers pipelines (``standalone.py``)."""
