"""reForge's ``ldm_patched.modules`` (a ComfyUI copy), as far as its built-in LoRA and memory manager use it."""
