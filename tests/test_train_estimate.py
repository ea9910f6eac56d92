"""The run's time is said before it starts, auto picks a quick preset without a GPU, and every phase reports."""

from __future__ import annotations

from pathlib import Path

from train_support import fingerprint, host_roots, make_dataset

from lora_ext.app.context import Context, Workspace
from lora_ext.config import TrainConfig, resolve_preset
from lora_ext.host import GenerationRequest
from lora_ext.training import estimate
from lora_ext.training.events import TrainEvents
from lora_ext.training.run import train_lora
from lora_ext.ui import projects, train_section


def injected(step_seconds: float) -> estimate.CostCache:
    """Costs as if measured: ``step_seconds`` per micro-batch at the config's own resolution and batch."""
    return estimate.CostCache(
        measure=lambda host, config: estimate.StepCosts(
            config.resolution, config.batch_size, step_seconds, step_seconds / 3, step_seconds / 10, 0.01
        )
    )


def _ctx(make_standalone_host, tmp_path: Path, step_seconds: float) -> Context:
    host = make_standalone_host("sd1")  # on the CPU, as every test host
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"))
    ctx.step_costs = injected(step_seconds)
    projects.create_project(ctx, name="cat")
    make_dataset(ctx.version("cat", "v1").dataset, count=8, folder="")
    return ctx


def test_plan_says_how_long_the_run_takes_and_what_auto_picked(make_standalone_host, tmp_path: Path) -> None:
    ctx = _ctx(make_standalone_host, tmp_path, step_seconds=1.0)
    values = train_section.apply_preset(ctx, preset_name="auto")
    assert values["cfg_resolution"] == 256  # the quick preset: this host has no GPU
    line = train_section.plan(ctx, project="cat", version="v1", preset="auto", **values)["plan"]
    # 8 images × 2 repeats × 4 epochs = 64 steps of 1 s, latents and a save: about a minute.
    assert "64 steps" in line and "≈ 1 min on this machine" in line
    assert "auto picked the quick preset: this machine has no GPU" in line
    assert "over an hour" not in line


def test_a_run_over_an_hour_names_the_two_settings_that_shorten_it_most(make_standalone_host, tmp_path: Path) -> None:
    ctx = _ctx(make_standalone_host, tmp_path, step_seconds=30.0)
    values = train_section.apply_preset(ctx, preset_name="sd1-beginner")
    line = train_section.plan(ctx, project="cat", version="v1", **values)["plan"]
    # 8 × 10 repeats × 10 epochs = 800 steps of 30 s.
    assert "800 steps" in line and "≈ 6 h 40 min on this machine" in line and "over an hour" in line
    assert "resolution 512 → 256 (≈ 1 h 40 min)" in line  # a quarter of the pixels: a quarter of the time
    assert "epochs 10 → 5 (≈ 3 h 20 min)" in line
    assert line.count("→") == 2


def test_auto_picks_the_quick_preset_without_a_gpu_and_on_the_demo() -> None:
    cpu = resolve_preset("auto", "sdxl", has_gpu=False)
    assert cpu.name == "quick" and cpu.reason == "auto picked the quick preset: this machine has no GPU"
    assert cpu.config.resolution == 256 and cpu.config.vae_fp32  # over SDXL's own defaults
    demo = resolve_preset("auto", "sd1", has_gpu=True, is_demo=True)
    assert demo.name == "quick" and demo.config.resolution == 64 and "demo" in demo.reason
    gpu = resolve_preset("auto", "sd1", has_gpu=True)
    assert gpu.name == "sd1-beginner" and gpu.config.resolution == 512
    assert resolve_preset("fast-test", "sd1", has_gpu=False).reason == ""  # a named preset is taken as named


def test_previews_and_saves_the_plan_still_has_are_counted_for_the_eta() -> None:
    config = TrainConfig(sample_prompts="a cat", sample_every_n_steps=2, save_every_n_steps=3, max_steps=8)
    plan, _images = estimate.dataset_plan(config.replace(dataset_dir="/nonexistent"), Path("/nonexistent"))
    assert plan.total_steps == 8
    assert estimate.preview_count(config, plan, 0) == 4 and estimate.preview_count(config, plan, 5) == 2
    assert estimate.save_count(config, plan, 0) == 3  # steps 3 and 6, then the final file
    assert estimate.preview_count(config.replace(sample_every_n_steps=0), plan, 8) == 1  # the final preview
    assert estimate.preview_count(config.replace(sample_every_n_steps=0), plan, 8, previewed_at=8) == 0
    # every 3 steps: 3 and 6, then a final render at 8 (the final file's card is a render of its own weights)
    assert estimate.preview_count(config.replace(sample_every_n_steps=3), plan, 0) == 3
    assert estimate.preview_count(config.replace(sample_every_n_steps=3), plan, 7, previewed_at=6) == 1
    pending = estimate.pending_seconds(config, plan, 5, 4, preview_each=10.0, save_each=1.0)
    assert pending == 2 * 10.0 + 2 * 1.0


def test_phases_report_in_order_each_with_its_own_progress(make_standalone_host, tmp_path: Path) -> None:
    host = make_standalone_host("sd1")
    dataset = make_dataset(tmp_path / "data", count=2)
    config = TrainConfig(
        dataset_dir=str(dataset),
        resolution=64,
        min_bucket_reso=64,
        rank=4,
        alpha=4.0,
        max_steps=2,
        default_repeats=1,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        sample_prompts="toy --w 64 --h 64 --s 2 --d 5",
    )
    seen = []
    result = train_lora(host, config, TrainEvents(on_phase=seen.append))
    assert result.status == "finished"
    order = [
        info.phase for position, info in enumerate(seen) if position == 0 or seen[position - 1].phase != info.phase
    ]
    assert order == ["scanning", "caching", "training", "preview", "saving"]
    by_phase = {phase: [(i.done, i.total) for i in seen if i.phase == phase] for phase in order}
    assert by_phase["scanning"][-1] == (2, 2)
    assert by_phase["caching"] == [(0, 2), (1, 2), (2, 2)]
    assert by_phase["training"] == [(1, 2), (2, 2)]
    assert by_phase["preview"] == [(0, 2), (1, 2), (2, 2)]
    assert by_phase["saving"] == [(0, 1), (1, 1)]
    assert [i.text for i in seen if i.phase == "preview"][-1] == "rendering preview 1/1 (sampler step 2/2)"
    training = [i for i in seen if i.phase == "training"]
    assert training[0].eta_seconds > 0  # the step left, and the preview and save still to come


def test_the_standalone_host_reports_each_sampler_step(make_standalone_host) -> None:
    host = make_standalone_host("sd1")
    steps = []
    host.generate(GenerationRequest("a cat", width=64, height=64, steps=3, on_step=lambda i, n: steps.append((i, n))))
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_timing_steps_hands_the_model_back_unchanged(make_standalone_host, tmp_path: Path) -> None:
    host = make_standalone_host("sd1")
    before = fingerprint(*host_roots(host))
    config = TrainConfig(dataset_dir=str(tmp_path), resolution=64, rank=4, alpha=4.0)
    costs = estimate.measure_costs(host, config)
    assert fingerprint(*host_roots(host)) == before
    assert costs.resolution == 64 and costs.step_seconds > 0 and costs.forward_seconds > 0


def test_the_running_eta_walks_the_network_s_parameters_once_a_run_not_once_a_step(
    make_standalone_host, tmp_path: Path, monkeypatch
) -> None:
    from lora_ext.training.network import LoraNetwork

    walks = []
    parameters = LoraNetwork.parameters

    def counted(self, *args, **kwargs):
        walks.append(1)
        return parameters(self, *args, **kwargs)

    monkeypatch.setattr(LoraNetwork, "parameters", counted)
    host = make_standalone_host("sd1")
    dataset = make_dataset(tmp_path / "data", count=2)
    counts = []
    for steps in (2, 6):
        walks.clear()
        config = TrainConfig(
            dataset_dir=str(dataset),
            resolution=64,
            min_bucket_reso=64,
            rank=4,
            max_steps=steps,
            default_repeats=1,
            train_text_encoder=False,
            output_name=f"walks{steps}",
        )
        assert train_lora(host, config, TrainEvents(), out=tmp_path / f"walks{steps}.safetensors").status == "finished"
        counts.append(len(walks))
    assert counts[0] == counts[1]  # more steps, no more walks (each took ~1 ms a step on the tiny model)
