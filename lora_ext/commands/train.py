"""``train``: train a LoRA on the standalone host.

Settings are layered: the beginner preset of the model's family, then
``--preset``, then ``--config FILE``, then the named flags, then ``KEY=VALUE``
overrides (any ``TrainConfig`` field). Ctrl-C stops after the current step and
saves a resumable state (``--resume`` continues it).

Under ``torchrun`` or ``accelerate launch`` every process runs this command and
they train data-parallel (``training/distributed.py``): the global batch is
``batch_size × processes``, rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "train a LoRA on a dataset folder with a diffusers or single-file model (or the demo model)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lora_ext.config import NETWORK_TYPES, PRESETS

    parser.add_argument(
        "--model", required=True, help="diffusers folder, single-file checkpoint, 'demo' or 'demo-vpred'"
    )
    parser.add_argument("--dataset", required=True, help="dataset folder (images + .txt captions, or N_name folders)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--config", help="settings file (.toml or .json) with TrainConfig fields")
    parser.add_argument(
        "--preset",
        help="built-in preset: auto (the quick one on a CPU or the demo model, else the model's beginner preset), "
        + ", ".join(PRESETS),
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="total optimizer steps")
    length.add_argument("--epochs", type=int, help="number of epochs")
    parser.add_argument("--rank", type=int, help="LoRA rank")
    parser.add_argument("--alpha", type=float, help="LoRA alpha")
    parser.add_argument("--lr", type=float, help="UNet learning rate")
    parser.add_argument("--resolution", type=int, help="training resolution")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--network", choices=NETWORK_TYPES, help="network type (DoRA: dora=true)")
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        help="the run's working folder (loss.csv, samples/, resume/); default: NAME-training/ beside the dataset "
        "folder (a project version's dataset: the version's outputs/NAME/), never inside the LoRA folder",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the state saved in the working folder's resume/"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out when it exists (else the run is refused before it starts)",
    )
    parser.add_argument("--save-config", metavar="FILE", help="also write the final settings to FILE (.toml/.json)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--config-dir", help="offline diffusers config folder for single-file checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any training setting, e.g. flip_aug=true")


def build_config(args: argparse.Namespace, family: str, warn=None, has_gpu: bool = True, is_demo: bool = False):
    """The TrainConfig the flags describe, layered as the module docstring says (``auto``: for this machine)."""
    from lora_ext.config import AUTO_PRESET, TrainConfig, default_config, load_settings, preset, resolve_preset
    from lora_ext.errors import UsageError

    config = default_config(family)
    if args.preset == AUTO_PRESET:
        config = resolve_preset(args.preset, family, has_gpu, is_demo).config
    elif args.preset:
        config = preset(args.preset, config)
    data = config.to_dict()
    if args.config:  # ours, or kohya's (sd-scripts' --config_file, the kohya_ss GUI's JSON)
        from lora_ext.kohya_settings import from_kohya

        read = from_kohya(load_settings(args.config))
        data.update(read.settings)
        if read.not_used and warn is not None:
            warn(f"not used from {Path(args.config).name}: {', '.join(read.not_used)}")
    flags = {
        "max_steps": args.steps,
        "epochs": args.epochs,
        "rank": args.rank,
        "alpha": args.alpha,
        "unet_lr": args.lr,
        "resolution": args.resolution,
        "seed": args.seed,
        "network_type": args.network,
    }
    data.update({key: value for key, value in flags.items() if value is not None})
    if args.steps is not None:
        data["max_steps"] = args.steps
    elif args.epochs is not None:
        data["max_steps"] = 0
    data["output_name"] = _name_of(Path(args.out))
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"override {item!r} is not KEY=VALUE")
        if key not in data:
            raise UsageError(f"unknown setting {key!r}", hint="see TrainConfig in lora_ext/config.py")
        data[key] = value  # output_name=… included: TrainConfig refuses one that is not a plain name
    data["dataset_dir"] = args.dataset
    return TrainConfig.from_dict(data, warn=warn)


def _name_of(out: Path) -> str:
    """The output name for ``--out``: its stem, made a valid name if it is not one (the path itself is kept)."""
    from lora_ext.dataset.names import sanitize_filename, validate_name
    from lora_ext.errors import DatasetError

    try:
        return validate_name(out.stem, "output name")
    except DatasetError:
        return sanitize_filename(out.stem, fallback="lora")


class ProgressBar:
    """A one-line terminal progress bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0

    def phase(self, info) -> None:
        """Scanning, caching, previews and saves: their own line (training steps are the bar)."""
        if not self.enabled or info.phase == "training":
            return
        now = time.monotonic()
        if now - self.last < 0.2 and info.done < info.total:
            return
        self.last = now
        sys.stderr.write(f"\r{info.text}\x1b[K" + ("\n" if info.done >= info.total else ""))
        sys.stderr.flush()

    def __call__(self, info) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and info.step < info.total_steps:
            return
        self.last = now
        width = 24
        filled = int(width * info.step / max(1, info.total_steps))
        eta = time.strftime("%H:%M:%S", time.gmtime(info.eta_seconds))
        line = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {info.step}/{info.total_steps} "
            f"epoch {info.epoch}/{info.epochs} loss {info.loss:.4f} (avg {info.smoothed_loss:.4f}) "
            f"lr {info.lr:.2e} {info.its_per_second:.2f} it/s ETA {eta}"
        )
        sys.stderr.write(line)
        if info.step >= info.total_steps:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Train; under ``torchrun``/``accelerate launch`` this is one process of a data-parallel run.

    Rank 0 prints and writes; another rank prints only an error of its own (with its
    rank), never one every rank shares (bad arguments) or the echo of a peer's end.
    """
    from lora_ext.errors import LoraExtError
    from lora_ext.training import distributed

    ranks = distributed.from_environment()
    try:
        build_config(args, "sd1", warn=lambda message: None)  # refuse bad settings before loading a model
        _check_out(args)
        group = distributed.join(ranks, _device_of(distributed.device_for(ranks, args.device)))
    except (LoraExtError, KeyboardInterrupt):
        if ranks.is_main:
            raise
        return 2  # the same arguments on every rank: rank 0 says what is wrong
    try:
        return _train(args, group)
    except (distributed.PeerStopped, KeyboardInterrupt):
        if ranks.is_main:
            raise
        return 2  # rank 0, or the rank that failed, says why
    except LoraExtError as error:
        if ranks.is_main:
            raise
        print(f"error: rank {ranks.rank}: {error.one_line()}", file=sys.stderr)
        return error.exit_code
    finally:
        group.close()


def _check_out(args: argparse.Namespace) -> None:
    """A finished LoRA is never replaced without asking: ``--out`` may exist only with ``--overwrite`` (or
    ``--resume``, which continues the run that writes it)."""
    from lora_ext.errors import UsageError

    out = Path(args.out)
    out = out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")
    if out.exists() and not (args.overwrite or args.resume):
        raise UsageError(f"{out} exists already", hint="choose another --out, or pass --overwrite to replace it")


def _device_of(device: str | None):
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _train(args: argparse.Namespace, group) -> int:
    import signal

    from lora_ext.config import save_config
    from lora_ext.hosts.standalone import StandaloneHost
    from lora_ext.training.distributed import device_for
    from lora_ext.training.events import TrainEvents
    from lora_ext.training.run import train_lora

    ranks = group.ranks
    say = ranks.is_main
    warn = (lambda message: print(f"warning: {message}", file=sys.stderr)) if say else (lambda message: None)
    if not say:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # one "Loading pipeline components" bar, rank 0's
    host = StandaloneHost.load(
        args.model,
        lora_dir=Path(args.out).parent,
        config_dir=Path(args.config_dir) if args.config_dir else None,
        device=device_for(ranks, args.device),
    )
    machine = {"has_gpu": host.device.type != "cpu", "is_demo": host.info.is_demo}
    config = build_config(args, host.info.family, warn=warn, **machine)
    if args.preset and say:
        from lora_ext.config import resolve_preset

        reason = resolve_preset(args.preset, host.info.family, **machine).reason
        if reason:
            print(reason, file=sys.stderr)
    if args.save_config and say:
        save_config(config, args.save_config)
    if say:
        bar = ProgressBar(not args.no_progress)
        events = TrainEvents(on_progress=bar, on_status=lambda text: print(text, file=sys.stderr), on_phase=bar.phase)
    else:
        events = TrainEvents()
    # A launcher passes Ctrl-C on as SIGINT and ends the others with SIGTERM when one rank
    # failed: both ask for a stop, which every rank agrees on after the current step.
    stop_signals = (signal.SIGINT,) if ranks.world_size == 1 else (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda *_: events.request_stop()) for number in stop_signals}
    try:
        result = train_lora(host, config, events, out=args.out, resume=args.resume, work_dir=args.work_dir, group=group)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if not say:
        return 1 if result.status == "cancelled" or result.skipped else 0
    for skipped in result.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    if result.status == "cancelled":
        print(
            f"stopped at step {result.steps}/{result.total_steps}; resume with --resume (state: {result.state_path})",
            file=sys.stderr,
        )
        return 1
    print(f"saved {result.path} ({result.steps} steps, final loss {result.final_loss:.4f})")
    print(f"loss log and previews: {result.work_dir}", file=sys.stderr)
    return 1 if result.skipped else 0
