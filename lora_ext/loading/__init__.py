"""The network loader: ``<lora:…>`` tokens (``prompt``) → parsed files (``cache``) → resolved patches
(``resolve``) → in-place merges with exact restore (``patcher``), for one host's model (``loader``);
``merge`` bakes the same patches into a checkpoint file. See ``docs/loader.md``."""
