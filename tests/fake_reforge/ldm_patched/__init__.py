"""reForge's ComfyUI copy behind the A1111 shell."""
