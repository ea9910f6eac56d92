"""Use cases between the edges (the page in ``lora_ext/ui``, the REST API, the CLI) and the core.

Gradio-free and WebUI-free: the ``Context`` shared by the page and the API, the
job runner, starting a training / tagging / test-generation job, building a
training config from form values and the step plan shown before a run. ``ui/``
and ``api.py`` both call this package; it imports neither.
"""
