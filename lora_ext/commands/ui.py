"""``ui``: the standalone Train Tools app."""

from __future__ import annotations

import argparse

HELP = "start the standalone Train Tools UI (on the demo model unless --model is given)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="demo",
        help="diffusers folder, single-file .safetensors checkpoint, 'demo' (default) or 'demo-vpred' "
        "(tiny SDXL, v-prediction with zero terminal SNR)",
    )
    parser.add_argument(
        "--config-dir",
        default=None,
        help="local folder with the diffusers config files for a single-file checkpoint (offline use)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7861, help="port to serve on (default 7861; make run PORT=N)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--lang", default="en", choices=("en", "ja"), help="UI language (switchable in the page)")
    parser.add_argument(
        "--api-auth",
        default=None,
        metavar="USER:PASS[,USER:PASS]",
        help="require these credentials on every route: the page shows a login form, the REST API under"
        " /train-tools/v1/ takes HTTP Basic (as the WebUI's --api-auth)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lora_ext.api import parse_credentials
    from lora_ext.hosts.standalone import StandaloneHost
    from lora_ext.loading.loader import NetworkLoader
    from lora_ext.ui.app import serve

    ensure_port_free(args.host, args.port)  # before the model loads: a busy port is known at once
    if args.model in ("demo", "demo-vpred"):
        print("Building the demo model (tiny, random weights; for trying the flow)…", flush=True)
    config_dir = Path(args.config_dir) if args.config_dir else None
    host = StandaloneHost.load(args.model, config_dir=config_dir, device=args.device)
    loader = NetworkLoader.for_host(host)
    app = serve(
        host,
        args.host,
        args.port,
        block=False,
        loader=loader,
        language=args.lang,
        api_credentials=parse_credentials(args.api_auth),
    )
    # Printed once the server answers, so the address is never shown for a server that failed to start.
    print(f"Train Tools on http://{args.host}:{args.port} — model: {host.info.name} ({host.info.family})", flush=True)
    app.block_thread()
    return 0


def ensure_port_free(host: str, port: int) -> None:
    """Raise ``UsageError`` when ``host:port`` cannot be bound (another server has it)."""
    import socket

    from lora_ext.errors import UsageError
    from lora_ext.ui.app import port_busy_message

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(port_busy_message(port), hint=error.strerror or None) from None
