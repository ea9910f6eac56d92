"""Host adapters. Only ``a1111.py`` may import the WebUI's ``modules``; the others wrap
``ldm``-style model objects (``ldm.py``) or diffusers pipelines (``standalone.py``)."""
