"""``ui``: the standalone Train Tools app."""

from __future__ import annotations

import argparse

HELP = "start the standalone Train Tools UI (on the demo model unless --model is given)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="demo", help="diffusers folder, single-file .safetensors checkpoint, or 'demo' (default)"
    )
    parser.add_argument(
        "--config-dir",
        default=None,
        help="local folder with the diffusers config files for a single-file checkpoint (offline use)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7861)
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

    if args.model == "demo":
        print("Building the demo model (tiny, random weights; for trying the flow)…", flush=True)
    config_dir = Path(args.config_dir) if args.config_dir else None
    host = StandaloneHost.load(args.model, config_dir=config_dir, device=args.device)
    loader = NetworkLoader.for_host(host)
    print(f"Train Tools on http://{args.host}:{args.port} — model: {host.info.name} ({host.info.family})", flush=True)
    serve(
        host,
        args.host,
        args.port,
        block=True,
        loader=loader,
        language=args.lang,
        api_credentials=parse_credentials(args.api_auth),
    )
    return 0
