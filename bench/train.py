"""Benchmark of the training engine (issue 4, item 11).

On one loaded diffusers model (the tiny demo architecture by default; with
``--full`` the full-size SD1.5 UNet/CLIP-L/VAE architecture with random weights,
trained at low resolution) it measures:

(a) our step time (``train_lora`` with cached latents and conditioning, UNet-only
    LoRA) against a bare loop that only does noise + UNet forward + MSE + backward
    + optimizer step with the same LoRA attached, on the same batch
    — target overhead ≤ 5 %;
(b) peak RSS during training ÷ RSS after the model was loaded — target ≤ 1.25
    (no second copy of the model);
(c) time to first step, from ``train_lora`` being called (model already loaded).

Step times are medians over the steps after the first; ours and the bare loop alternate
``--rounds`` times. ``overhead_pct`` compares the best round of each side, ``paired_overhead_pct``
is the median of the rounds' own ratios (steadier where the machine's speed drifts). The last line is
``RESULT key=value …``. Usage: ``python bench/train.py [--full] [--steps 20] [--resolution 64] [--device cpu]``.

With ``--ddp N`` it measures data-parallel training instead (issue 15): the same global
batch (``--batch`` per process × N) in one process, then in N processes started by
``torchrun`` (each running this file with ``--ddp-worker``), and prints step time and
samples/s of both and their ratio. Both runs are started by ``torchrun`` (the single
one with ``--nproc_per_node 1``), each process with its share of the CPU cores as
threads, or ``--threads`` each. On the CPU it shows the cost of the all-reduce and of
splitting the cores; on a machine with N GPUs, the scaling.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.full_models import CLIP_L, SD15_UNET, SD15_VAE  # noqa: E402
from lora_ext.config import TrainConfig  # noqa: E402
from lora_ext.hosts.standalone import StandaloneHost  # noqa: E402
from lora_ext.training.events import TrainEvents  # noqa: E402
from lora_ext.training.inject import attached  # noqa: E402
from lora_ext.training.network import build_network  # noqa: E402
from lora_ext.training.run import network_spec, train_lora  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


class PeakRss:
    """Peak resident memory while a block runs, from the kernel's own high-water mark.

    Writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS. No
    sampling thread: one waking every few milliseconds slowed the steps it watched
    by 10–15 % on this 2-core machine (it ran beside our loop only, so it showed as
    our overhead).
    """

    def __init__(self) -> None:
        self.peak = 0

    @staticmethod
    def _high_water_mark() -> int:
        with open("/proc/self/status") as handle:
            line = next(line for line in handle if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    def __enter__(self) -> PeakRss:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return self

    def __exit__(self, *exc) -> None:
        self.peak = max(self._high_water_mark(), rss_bytes())


def full_sd15_pipeline(device: str):
    """The SD1.5 architecture (UNet 860M, CLIP-L text, VAE) with random weights; no download."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from lora_ext.demo import write_tiny_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET)
    vae = AutoencoderKL(**SD15_VAE)
    tokenizer_dir = write_tiny_clip_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(str(tokenizer_dir)),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipeline.to(device)


def make_images(folder: Path, size: int, count: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{index}.png")
        (folder / f"{index}.txt").write_text("a photo, bench", encoding="utf-8")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(host, config: TrainConfig, steps: int) -> list[float]:
    """UNet forward + backward + optimizer step with the same LoRA on one fixed batch, nothing else."""
    network = build_network(host.parts(), host.info.family, network_spec(config)).to(host.device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.unet_lr, weight_decay=config.weight_decay)
    pixels = torch.rand(config.batch_size, 3, config.resolution, config.resolution) * 2 - 1
    with torch.no_grad():
        latents = host.encode_images(pixels)
        conditioning = host.encode_prompts(["a photo, bench"] * config.batch_size)
    alphas = host.alphas_cumprod.to(host.device)
    times = []
    with attached(network, host.parts()):
        network.train()
        for _ in range(steps):
            sync(host.device)
            started = time.perf_counter()
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, 1000, (latents.shape[0],), device=host.device)
            alpha = alphas[timesteps].view(-1, 1, 1, 1)
            noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
            loss = torch.nn.functional.mse_loss(host.predict(noisy, timesteps, conditioning).float(), noise)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()
            sync(host.device)
            times.append(time.perf_counter() - started)
    return times


def our_loop(host, config: TrainConfig, out: Path) -> tuple[list[float], float, int]:
    """Step times, time to first step and peak RSS of ``train_lora``."""
    stamps: list[float] = []
    events = TrainEvents(on_progress=lambda info: stamps.append(time.perf_counter()))
    started = time.perf_counter()
    with PeakRss() as sampler:
        train_lora(host, config, events, out=out)
    step_times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return step_times, stamps[0] - started, sampler.peak


def bench_config(data: Path, resolution: int, steps: int, batch_size: int) -> TrainConfig:
    return TrainConfig(
        dataset_dir=str(data),
        resolution=resolution,
        min_bucket_reso=64,
        rank=16,
        alpha=8.0,
        max_steps=steps,
        batch_size=batch_size,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        train_text_encoder=False,
        default_repeats=1,
        max_grad_norm=0.0,
    )


def load_host(args, lora_dir: Path, device: str):
    if args.full:
        return StandaloneHost(full_sd15_pipeline(device), name="sd15-random", lora_dir=lora_dir)
    from lora_ext.demo import build_tiny_pipeline

    return StandaloneHost(build_tiny_pipeline("sd1").to(device), name="tiny", lora_dir=lora_dir)


def ddp_worker(args) -> None:
    """One process of the N-process run (started by torchrun): rank 0 prints its median step time."""
    from lora_ext.training import distributed

    ranks = distributed.from_environment()
    device = distributed.device_for(ranks, args.device)
    group = distributed.join(ranks, torch.device(device))
    work = Path(args.work)
    host = load_host(args, work / "Lora", device)
    config = bench_config(work / "data", args.resolution, args.steps, args.batch)
    stamps: list[float] = []
    events = TrainEvents(on_progress=lambda info: stamps.append(time.perf_counter()))
    try:
        train_lora(host, config, events, out=work / "Lora" / "ddp.safetensors", group=group)
    finally:
        group.close()
    if ranks.is_main:
        step_times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        print(f"WORKER step_s={statistics.median(step_times):.6f}", flush=True)


def launch_workers(args, work: Path, resolution: int, procs: int, batch_size: int) -> float:
    """Median step time of a run of ``procs`` processes of ``batch_size`` each, started by torchrun.

    Each process gets its share of the CPU cores as OpenMP threads, so both runs use the whole machine.
    """
    import os
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_addr", "127.0.0.1",
        "--master_port", str(port), __file__, "--ddp-worker", "--work", str(work), "--steps", str(args.steps),
        "--resolution", str(resolution), "--batch", str(batch_size), "--device", args.device,
        *(["--full"] if args.full else []),
    ]  # fmt: skip
    threads = args.threads or max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WORKER ")]
    if done.returncode or not lines:
        sys.exit(f"the {procs}-process run failed:\n{done.stderr[-3000:]}")
    return float(lines[-1].split("step_s=")[1])


def ddp_main(args, resolution: int) -> None:
    """1 process with the global batch against ``args.ddp`` processes of ``args.batch`` each."""
    procs, global_batch = args.ddp, args.batch * args.ddp
    work = Path(tempfile.mkdtemp(prefix="bench-ddp-"))
    make_images(work / "data" / "1_bench", resolution, count=global_batch * 2)
    single = launch_workers(args, work, resolution, 1, global_batch)
    parallel = launch_workers(args, work, resolution, procs, args.batch)
    print(
        f"RESULT mode=ddp model={'sd15' if args.full else 'tiny'} device={args.device} res={resolution} "
        f"steps={args.steps} global_batch={global_batch} procs={procs} "
        f"step_ms_1={single * 1000:.1f} step_ms_{procs}={parallel * 1000:.1f} "
        f"samples_per_s_1={global_batch / single:.2f} samples_per_s_{procs}={global_batch / parallel:.2f} "
        f"speedup_{procs}_vs_1={single / parallel:.2f} threads={args.threads or 'shared'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size SD1.5 architecture (random weights)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=None, help="default 64 (tiny) or 256 (--full)")
    parser.add_argument("--rounds", type=int, default=4, help="alternate ours/bare this many times")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ddp", type=int, default=0, metavar="N", help="1 vs N processes on the same global batch")
    parser.add_argument("--batch", type=int, default=1, help="with --ddp: batch size per process")
    parser.add_argument("--threads", type=int, default=0, help="with --ddp: CPU threads per process (default: shared)")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    resolution = args.resolution or (256 if args.full else 64)
    if args.ddp_worker:
        args.resolution = resolution
        return ddp_worker(args)
    if args.ddp:
        return ddp_main(args, resolution)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    make_images(work / "data" / "1_bench", resolution)

    loaded_at = time.perf_counter()
    if args.full:
        host = StandaloneHost(full_sd15_pipeline(args.device), name="sd15-random", lora_dir=work / "Lora")
    else:
        from lora_ext.demo import build_tiny_pipeline

        host = StandaloneHost(build_tiny_pipeline("sd1").to(args.device), name="tiny", lora_dir=work / "Lora")
    load_seconds = time.perf_counter() - loaded_at
    rss_after_load = rss_bytes()
    config = TrainConfig(
        dataset_dir=str(work / "data"),
        resolution=resolution,
        min_bucket_reso=64,
        rank=16,
        alpha=8.0,
        max_steps=args.steps,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        train_text_encoder=False,
        default_repeats=1,
        max_grad_norm=0.0,
    )
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    bare_loop(host, config, 3)  # warm-up: allocator, kernels
    ours: list[float] = []
    bare: list[float] = []
    first_step, peak = 0.0, 0
    for round_index in range(args.rounds):
        step_times, first, round_peak = our_loop(host, config, work / "Lora" / f"bench{round_index}.safetensors")
        ours.append(statistics.median(step_times))
        first_step, peak = (first, round_peak) if round_index == 0 else (min(first_step, first), max(peak, round_peak))
        bare.append(statistics.median(bare_loop(host, config, args.steps)[1:]))
    our_step, bare_step = min(ours), min(bare)
    overhead = our_step / bare_step - 1
    # this VM's speed drifts by ±10 % between runs a few seconds apart: a ratio of each round's pair is steadier
    paired = statistics.median(o / b for o, b in zip(ours, bare, strict=True)) - 1
    ratio = peak / rss_after_load
    gpu = f" gpu_peak_gib={torch.cuda.max_memory_allocated() / 2**30:.2f}" if device.type == "cuda" else ""
    print(
        f"model={'sd15-full-random' if args.full else 'tiny'} device={args.device} resolution={resolution} "
        f"load_s={load_seconds:.1f}"
    )
    print(
        f"RESULT model={'sd15' if args.full else 'tiny'} device={args.device} res={resolution} steps={args.steps} "
        f"our_step_ms={our_step * 1000:.1f} bare_step_ms={bare_step * 1000:.1f} overhead_pct={overhead * 100:.1f} "
        f"paired_overhead_pct={paired * 100:.1f} rounds={args.rounds} "
        f"rss_load_mib={rss_after_load / 2**20:.0f} rss_peak_mib={peak / 2**20:.0f} rss_ratio={ratio:.3f} "
        f"first_step_s={first_step:.2f}{gpu}"
    )


if __name__ == "__main__":
    main()
