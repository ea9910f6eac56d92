"""Benchmark: the peak-memory estimate shown before a run against the peak a few real steps reach (issue 26).

For the full-size SD1.5 and SDXL UNet architectures (random weights; 1-layer full-width
text encoders and a tiny VAE beside them, since latents and conditioning are cached and
neither runs during the steps), at two resolutions, with and without gradient
checkpointing, fp8 base weights and Adafactor's fused backward pass, each row:

1. loads the model in a fresh process (so no row inherits another's freed memory),
2. estimates the run's memory (``lora_ext.training.memory``: a probe of the host's own
   forward at three small sizes, extrapolated),
3. trains ``--steps`` steps with ``train_lora`` (UNet-only LoRA rank 16, batch 1) and
   measures the peak of the steps after the first (the first allocates the optimizer
   state, which every later step holds too): on a CPU the process's peak RSS over its
   RSS with the model loaded (the kernel's high-water mark, reset through
   ``/proc/self/clear_refs``), on a GPU ``torch.cuda.max_memory_allocated``;
4. prints estimate ÷ measured. Target 0.85–1.15 for every row.

Rows that would not fit the machine's available memory are skipped and said so.
Usage: ``python bench/memory.py [--device cpu|cuda] [--models sd15,sdxl] [--steps 3]``; ends with a
``RESULT …`` line.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.full_models import SD15_UNET, SDXL_UNET  # noqa: E402
from lora_ext.config import TrainConfig  # noqa: E402
from lora_ext.hosts.standalone import StandaloneHost  # noqa: E402
from lora_ext.training.events import TrainEvents  # noqa: E402
from lora_ext.training.memory import GIB, estimate_memory, free_bytes, probe  # noqa: E402
from lora_ext.training.run import train_lora  # noqa: E402

# (name, resolutions on a CPU, resolutions on a GPU, weight dtype)
MODELS = {
    "sd15": ((256, 384), (512, 768), torch.float32),
    "sdxl": ((192, 256), (768, 1024), torch.bfloat16),
}
# (label, config changes)
VARIANTS = (
    ("plain", {}),
    ("ckpt", {"gradient_checkpointing": True}),
    ("ckpt+fp8", {"gradient_checkpointing": True, "fp8_base": True}),
    (
        "ckpt+fp8+fused",
        {"gradient_checkpointing": True, "fp8_base": True, "optimizer": "Adafactor", "fused_backward": True},
    ),
)
WEIGHT_BYTES = {"sd15": 0.86e9, "sdxl": 2.57e9}  # UNet parameters


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def high_water_mark() -> int:
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def reset_high_water_mark() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def trim() -> None:
    """Hand freed heap back to the kernel (glibc keeps it otherwise, and RSS would count it)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def random_weights(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Small normal weights, written in place (much faster than the layers' own init for 2.6 B parameters)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.02, generator=generator)
            elif "norm" in name and name.endswith("weight"):
                parameter.fill_(1.0)
            else:
                parameter.zero_()
    return module.to(dtype)


def bench_pipeline(model: str, dtype: torch.dtype, device: str):
    """The full-size UNet, 1-layer text encoders of the real widths and a tiny VAE, as a diffusers pipeline."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from lora_ext.demo import tiny_vae, write_tiny_clip_tokenizer

    with torch.device("meta"):
        unet = UNet2DConditionModel(**(SD15_UNET if model == "sd15" else SDXL_UNET))
    unet = random_weights(unet.to_empty(device="cpu"), dtype)
    tokenizer = CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(Path(tempfile.mkdtemp()) / "tok")))

    def clip(width: int, projection: bool = False):
        config = CLIPTextConfig(
            vocab_size=514, hidden_size=width, intermediate_size=width * 4, num_hidden_layers=1,
            num_attention_heads=width // 64, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
            pad_token_id=513, projection_dim=width,
        )  # fmt: skip
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).to(dtype)

    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    vae = tiny_vae().to(dtype)
    if model == "sd15":
        pipeline = StableDiffusionPipeline(
            vae=vae, text_encoder=clip(768), tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
    else:
        pipeline = StableDiffusionXLPipeline(
            vae=vae, text_encoder=clip(768), text_encoder_2=clip(1280, projection=True), tokenizer=tokenizer,
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
        )  # fmt: skip
    return pipeline.to(device)


def make_image(folder: Path, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "0.png")
    (folder / "0.txt").write_text("a photo, bench", encoding="utf-8")


def row_config(data: Path, resolution: int, steps: int, dtype: torch.dtype, changes: dict) -> TrainConfig:
    return TrainConfig(
        dataset_dir=str(data),
        resolution=resolution,
        min_bucket_reso=64,
        max_bucket_reso=max(1024, resolution),
        rank=16,
        alpha=8.0,
        max_steps=steps,
        batch_size=1,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        train_text_encoder=False,
        default_repeats=1,
        mixed_precision="bf16" if dtype == torch.bfloat16 else "no",
        save_dtype="fp16",
        **changes,
    )


def run_row(model: str, resolution: int, variant: str, steps: int, device: str) -> dict:
    """One row, in this (fresh) process: estimate, then train and measure."""
    dtype = MODELS[model][2]
    changes = dict(VARIANTS)[variant]
    torch_device = torch.device(device)
    host = StandaloneHost(
        bench_pipeline(model, dtype, device), name=f"{model}-random", lora_dir=Path(tempfile.mkdtemp())
    )
    work = Path(tempfile.mkdtemp())
    make_image(work / "data" / "1_bench", resolution)
    config = row_config(work / "data", resolution, steps, dtype, changes)
    started = time.perf_counter()
    profile = probe(host, config)
    probe_seconds = time.perf_counter() - started
    trim()
    if torch_device.type == "cuda":
        torch.cuda.empty_cache()
    estimate = estimate_memory(host, config, profile)
    baseline = rss_bytes() if torch_device.type == "cpu" else torch.cuda.memory_allocated(torch_device)
    peaks: list[int] = []

    def on_progress(info) -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize()
            if info.step > 1:
                peaks.append(torch.cuda.max_memory_allocated(torch_device))
            torch.cuda.reset_peak_memory_stats(torch_device)
        else:
            if info.step > 1:
                peaks.append(max(high_water_mark(), rss_bytes()))
            reset_high_water_mark()

    train_lora(host, config, TrainEvents(on_progress=on_progress), out=work / "out" / "x.safetensors")
    measured_peak = max(peaks)
    if torch_device.type == "cpu":
        measured, estimated = measured_peak - baseline, estimate.added
    else:
        measured, estimated = measured_peak, estimate.total
    return {
        "model": model,
        "resolution": resolution,
        "variant": variant,
        "estimate_gib": estimated / GIB,
        "measured_gib": measured / GIB,
        "ratio": estimated / measured,
        "activations_gib": estimate.activations / GIB,
        "probe_s": probe_seconds,
    }


def row_environment(device: torch.device) -> dict[str, str]:
    """A row's environment. On a CPU glibc's mmap threshold is fixed: by default it rises to the size of the
    largest block freed so far, after which freed activations stay in the heap and RSS counts them as live for
    the rest of the run; with the threshold fixed, RSS follows what is allocated, which is what is estimated."""
    environment = dict(os.environ)
    if device.type == "cpu":
        environment.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    return environment


ACTIVATIONS_AT_256 = {"sd15": 0.6e9, "sdxl": 1.0e9}  # measured orders of magnitude, with a margin


def needed_bytes(model: str, resolution: int, dtype: torch.dtype) -> float:
    """A generous guess of a row's peak (weights, their fp8 copies, activations), to skip rows this machine cannot
    hold."""
    weights = WEIGHT_BYTES[model] * torch.tensor([], dtype=dtype).element_size()
    return 1.4 * weights + 1.5 * ACTIVATIONS_AT_256[model] * (resolution / 256) ** 2


def wait_for_memory(needed: float, patience: float = 1200.0) -> bool:
    """Whether ``needed`` bytes are available, waiting up to ``patience`` seconds for others to free them."""
    deadline = time.monotonic() + patience
    while free_bytes(torch.device("cpu")) < needed:
        if time.monotonic() > deadline:
            return False
        time.sleep(30)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="sd15,sdxl")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--variants", default=",".join(name for name, _ in VARIANTS))
    parser.add_argument("--resolutions", default="", help="override, e.g. 128,256")
    parser.add_argument("--row", default="", help=argparse.SUPPRESS)  # model,resolution,variant: one row, JSON out
    args = parser.parse_args()
    if args.row:
        model, resolution, variant = args.row.split(",")
        print("ROW " + json.dumps(run_row(model, int(resolution), variant, args.steps, args.device)), flush=True)
        return
    device = torch.device(args.device)
    rows: list[dict] = []
    for model in args.models.split(","):
        cpu_res, gpu_res, dtype = MODELS[model]
        resolutions = (
            [int(r) for r in args.resolutions.split(",")]
            if args.resolutions
            else (gpu_res if device.type == "cuda" else cpu_res)
        )
        for resolution in resolutions:
            for variant in args.variants.split(","):
                # others share this machine's memory: a row starts only with a quarter of the available left over
                if device.type == "cpu" and not wait_for_memory(needed_bytes(model, resolution, dtype) / 0.75):
                    print(
                        f"{model} {resolution} {variant}: skipped (needs about "
                        f"{needed_bytes(model, resolution, dtype) / GIB:.1f} GiB, "
                        f"{free_bytes(device) / GIB:.1f} GiB available)",
                        flush=True,
                    )
                    continue
                command = [sys.executable, __file__, "--row", f"{model},{resolution},{variant}",
                           "--steps", str(args.steps), "--device", args.device]  # fmt: skip
                result = subprocess.run(command, capture_output=True, text=True, env=row_environment(device))
                line = next((text for text in result.stdout.splitlines() if text.startswith("ROW ")), None)
                if line is None:
                    print(f"{model} {resolution} {variant}: failed\n{result.stderr[-2000:]}", flush=True)
                    continue
                row = json.loads(line[4:])
                rows.append(row)
                print(
                    f"{model:5} {resolution:5} {variant:15} estimate {row['estimate_gib']:6.2f} GiB  "
                    f"measured {row['measured_gib']:6.2f} GiB  ratio {row['ratio']:.3f}  "
                    f"(activations {row['activations_gib']:.2f} GiB, probe {row['probe_s']:.1f} s)",
                    flush=True,
                )
    ratios = [row["ratio"] for row in rows]
    within = sum(0.85 <= ratio <= 1.15 for ratio in ratios)
    summary = f"rows={len(rows)} within_0.85_1.15={within}"
    if ratios:
        summary += f" min_ratio={min(ratios):.3f} max_ratio={max(ratios):.3f}"
    print(f"RESULT device={device.type} {summary}", flush=True)


if __name__ == "__main__":
    main()
