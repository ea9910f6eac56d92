"""Gradio UI built by the core; ``scripts/`` and the standalone app only host it.

Gradio is imported inside the builders, never at package import, so the core
stays importable without it. Everything here runs on gradio 3.41.2 (A1111
v1.10.1); APIs that differ in gradio 4 are avoided.
"""
