"""LoRA / LoCon training in-process on the host's loaded model.

``run.train_lora(host, config, events=...)`` is the one entry point the UI and
the CLI call; ``loop.train`` is the loop itself.
"""
