import os

script_path = os.path.abspath(os.path.dirname(os.path.dirname(__file__)))
data_path = os.environ.get("FAKE_WEBUI_DATA", script_path)
models_path = os.path.join(data_path, "models")
