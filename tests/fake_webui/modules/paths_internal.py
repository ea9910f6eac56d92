from modules.paths import data_path, models_path, script_path  # noqa: F401

default_output_dir = "outputs"
