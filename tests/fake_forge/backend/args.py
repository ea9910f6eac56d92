"""``backend.args.dynamic_args``: what ``forge_model_reload`` hands the loader (storage dtype override…)."""

dynamic_args = dict(forge_unet_storage_dtype=None, embedding_dir=None, emphasis_name="Original")
