"""``modules.initialize_util.get_gradio_auth_creds`` (v1.10.1): the page's logins from ``--gradio-auth``
("user:pass,user2:pass2") and from every line of the ``--gradio-auth-path`` file, as (user, password) tuples
(an item without ":" comes out as a 1-tuple, as in the WebUI)."""

from modules.shared import cmd_opts


def get_gradio_auth_creds():
    texts = [cmd_opts.gradio_auth or ""]
    if cmd_opts.gradio_auth_path:
        with open(cmd_opts.gradio_auth_path, encoding="utf8") as file:
            texts += file.read().splitlines()
    for text in texts:
        for item in text.split(","):
            if item.strip():
                yield tuple(item.strip().split(":", 1))
