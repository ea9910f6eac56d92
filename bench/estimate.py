"""Benchmark of the time estimate before a run (issue 24): estimate ÷ the run's measured wall time.

For each model — the demo model (``lora_ext.demo``, what ``make run`` trains) and, unless
``--skip-full``, the full-size SD1.5 architecture (UNet, CLIP-L, VAE) with random weights at
128 px — and each of four settings (with and without regularisation images, with and without
previews), it does what the page does before a run: ``estimate.estimate_for`` over the
folders' plan, with costs measured on the host right before the run (the app keeps one
measurement per model and step-time settings; that measurement is not part of the run). Then it trains with
``train_lora`` and times the call from start to the saved file. Every row prints
estimate ÷ wall; the target is 0.7–1.3 on an idle machine. The last line is
``RESULT key=value …`` (``worst``: the row furthest from 1, ``in_target``: all rows within it).

Usage: ``python bench/estimate.py [--skip-full] [--device cpu] [--full-resolution 128]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_ext.config import resolve_preset  # noqa: E402
from lora_ext.hosts.standalone import StandaloneHost  # noqa: E402
from lora_ext.training.estimate import CostCache, estimate_for  # noqa: E402
from lora_ext.training.events import TrainEvents  # noqa: E402
from lora_ext.training.run import train_lora  # noqa: E402

LOW, HIGH = 0.7, 1.3


@dataclass(frozen=True)
class Row:
    model: str
    reg: bool
    previews: bool
    steps: int
    estimate: float
    wall: float

    @property
    def ratio(self) -> float:
        return self.estimate / self.wall


def make_images(folder: Path, size: int, count: int, caption: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text(f"{caption}, picture {index}", encoding="utf-8")


def demo_host(work: Path, device: str) -> StandaloneHost:
    os.environ.setdefault("TRAIN_TOOLS_HOME", str(work / "home"))
    return StandaloneHost.load("demo", lora_dir=work / "Lora", device=device)


def full_host(work: Path, device: str) -> StandaloneHost:
    from bench.train import full_sd15_pipeline

    pipeline = full_sd15_pipeline(device)
    pipeline.set_progress_bar_config(disable=True)
    return StandaloneHost(pipeline, name="sd15-random", lora_dir=work / "Lora")


def rows_for(
    name: str, host: StandaloneHost, base, work: Path, images: int, size: int, sampler_steps: int
) -> list[Row]:
    """The four settings on one model: (reg, previews) in {no, yes}²; previews of two prompts each epoch."""
    data, reg = work / name / "data", work / name / "reg"
    make_images(data / f"{base.default_repeats}_subject", size, images, "subject")
    make_images(reg / "1_person", size, max(1, images // 2), "person")
    rows = []
    for with_reg in (False, True):
        for with_previews in (False, True):
            config = base.replace(
                dataset_dir=str(data),
                reg_dir=str(reg) if with_reg else "",
                sample_prompts=f"subject, a photo --s {sampler_steps}\nperson --s {sampler_steps}"
                if with_previews
                else "",
                sample_every_n_epochs=1 if with_previews else 0,
                output_name=f"{name}-{int(with_reg)}{int(with_previews)}",
            )
            # Measured right before the run (the app keeps one measurement per model and settings; measured
            # again here, a change of this shared machine's load between rows does not count as the estimate's)
            cache = CostCache()
            estimate = estimate_for(host, config, cache)
            started = time.perf_counter()
            result = train_lora(host, config, TrainEvents(), costs=cache.known(host, config))
            wall = time.perf_counter() - started
            assert result.status == "finished", result
            row = Row(name, with_reg, with_previews, result.total_steps, estimate.estimate.total, wall)
            rows.append(row)
            print(
                f"{name:5} reg={'yes' if with_reg else 'no ':3} previews={'yes' if with_previews else 'no ':3} "
                f"steps={row.steps:4}  estimate {row.estimate:7.1f} s  wall {row.wall:7.1f} s  "
                f"ratio {row.ratio:.2f}  ({', '.join(f'{k} {v:.1f}' for k, v in _parts(estimate.estimate).items())})",
                flush=True,
            )
    return rows


def _parts(estimate) -> dict[str, float]:
    names = ("setup", "caching", "training", "validation", "previews", "saving")
    return {name: getattr(estimate, name) for name in names if getattr(estimate, name) > 0.05}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-full", action="store_true", help="only the demo model")
    parser.add_argument("--full-resolution", type=int, default=128)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-estimate-"))
    rows: list[Row] = []

    host = demo_host(work, args.device)
    demo = resolve_preset("auto", host.info.family, has_gpu=args.device != "cpu", is_demo=True).config
    rows += rows_for("demo", host, demo, work, images=8, size=64, sampler_steps=8)

    if not args.skip_full:
        host = full_host(work, args.device)
        full = resolve_preset("quick", "sd1").config.replace(
            resolution=args.full_resolution, default_repeats=1, epochs=2, min_bucket_reso=64
        )
        rows += rows_for("sd15", host, full, work, images=4, size=args.full_resolution, sampler_steps=4)

    worst = max(rows, key=lambda row: abs(row.ratio - 1))
    fields = {f"{r.model}_{'reg' if r.reg else 'noreg'}_{'prev' if r.previews else 'noprev'}": r.ratio for r in rows}
    in_target = all(LOW <= row.ratio <= HIGH for row in rows)
    print(
        "RESULT "
        + " ".join(f"{key}={value:.2f}" for key, value in fields.items())
        + f" worst={worst.ratio:.2f} in_target={str(in_target).lower()} load={os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
