"""GPU check (issue 26), about 5 minutes on one GPU: speed, peak memory against the estimate, fp16 and bf16 paths,
and the loader's apply time, on the full-size architectures with random weights.

Rows:
- SD1.5 at 512², LoRA rank 16 (UNet and the 1-layer text encoder's width: UNet-only), fp16 with a GradScaler;
- the same in bf16;
- SDXL at 1024², UNet-only LoRA rank 16, fp8 base weights, gradient checkpointing, bf16.

Each prints it/s (steps after the first), the peak of ``torch.cuda.max_memory_allocated`` over the steps
after the first, the estimate shown before the run and estimate ÷ measured, then the time our loader takes
to apply the trained file (``<lora:…:1>``) to the model and to restore it. Without a CUDA device it says so
and ends with ``RESULT device=none skipped=1``. Usage: ``python bench/gpu.py [--steps 10]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import bench_pipeline, make_image, row_config  # noqa: E402
from lora_ext.hosts.standalone import StandaloneHost  # noqa: E402
from lora_ext.training.events import TrainEvents  # noqa: E402
from lora_ext.training.memory import GIB, estimate_memory, probe  # noqa: E402
from lora_ext.training.run import train_lora  # noqa: E402

# (label, model, weight dtype, resolution, config changes)
ROWS = (
    ("sd15-512-fp16", "sd15", torch.float16, 512, {"mixed_precision": "fp16"}),
    ("sd15-512-bf16", "sd15", torch.bfloat16, 512, {"mixed_precision": "bf16"}),
    (
        "sdxl-1024-fp8",
        "sdxl",
        torch.bfloat16,
        1024,
        {"mixed_precision": "bf16", "fp8_base": True, "gradient_checkpointing": True},
    ),
)


def run(label: str, model: str, dtype: torch.dtype, resolution: int, changes: dict, steps: int) -> dict:
    device = torch.device("cuda")
    host = StandaloneHost(bench_pipeline(model, dtype, "cuda"), name=label, lora_dir=Path(tempfile.mkdtemp()))
    work = Path(tempfile.mkdtemp())
    make_image(work / "data" / "1_bench", resolution)
    config = row_config(work / "data", resolution, steps, dtype, {}).replace(**changes)
    estimate = estimate_memory(host, config, probe(host, config))
    torch.cuda.empty_cache()
    stamps: list[float] = []
    peaks: list[int] = []

    def on_progress(info) -> None:
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        if info.step > 1:
            peaks.append(torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)

    path = train_lora(
        host, config, TrainEvents(on_progress=on_progress), out=host.lora_dir / f"{label}.safetensors"
    ).path
    seconds = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    apply_seconds, restore_seconds = loader_times(host, path.stem)
    measured = max(peaks)
    result = {
        "label": label,
        "its": 1.0 / seconds,
        "peak_gib": measured / GIB,
        "estimate_gib": estimate.total / GIB,
        "ratio": estimate.total / measured,
        "apply_ms": apply_seconds * 1000,
        "restore_ms": restore_seconds * 1000,
    }
    del host
    torch.cuda.empty_cache()
    return result


def loader_times(host: StandaloneHost, name: str) -> tuple[float, float]:
    """Seconds our loader takes to merge the trained file into the model, and to put the model back."""
    from lora_ext.loading.loader import NetworkLoader

    loader = NetworkLoader.for_host(host)
    torch.cuda.synchronize()
    started = time.perf_counter()
    loader.prompt_hook(f"<lora:{name}:1>")
    torch.cuda.synchronize()
    applied = time.perf_counter()
    loader.restore()
    torch.cuda.synchronize()
    return applied - started, time.perf_counter() - applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured (run this on a machine with a GPU)", flush=True)
        print("RESULT device=none skipped=1", flush=True)
        return
    print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
    results = []
    for label, model, dtype, resolution, changes in ROWS:
        row = run(label, model, dtype, resolution, changes, args.steps)
        results.append(row)
        print(
            f"{label:15} {row['its']:6.2f} it/s  peak {row['peak_gib']:6.2f} GiB  estimate {row['estimate_gib']:6.2f} "
            f"GiB  ratio {row['ratio']:.3f}  apply {row['apply_ms']:.0f} ms  restore {row['restore_ms']:.0f} ms",
            flush=True,
        )
    fields = " ".join(
        f"{row['label']}_its={row['its']:.2f} {row['label']}_peak_gib={row['peak_gib']:.2f} "
        f"{row['label']}_ratio={row['ratio']:.3f} {row['label']}_apply_ms={row['apply_ms']:.0f}"
        for row in results
    )
    print(f"RESULT device=cuda {fields}", flush=True)


if __name__ == "__main__":
    main()
