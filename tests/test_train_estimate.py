"""The run's time is said before it starts, auto picks a quick preset without a GPU, and every phase reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_support import fingerprint, host_roots, make_dataset

from lora_ext.app.context import Context, Workspace
from lora_ext.config import TrainConfig, resolve_preset
from lora_ext.host import GenerationRequest
from lora_ext.training import estimate
from lora_ext.training.eta import Eta, StepCosts, estimate_run
from lora_ext.training.events import TrainEvents
from lora_ext.training.plan import dataset_counts, make_plan
from lora_ext.training.run import train_lora
from lora_ext.ui import projects, train_section


def injected(step_seconds: float) -> estimate.CostCache:
    """Costs as if measured: ``step_seconds`` per micro-batch at the config's own resolution and batch."""
    return estimate.CostCache(
        measure=lambda host, config: StepCosts(
            config.resolution, config.batch_size, step_seconds, 0.0, step_seconds / 10, 0.0, 0.01
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
    # 8 × 10 repeats × 10 epochs = 800 steps of 30 s, and the final file's validation loss (4 images × 4
    # timesteps, each forward a third of a step: 160 s).
    assert "800 steps" in line and "≈ 6 h 43 min on this machine" in line and "over an hour" in line
    assert "resolution 512 → 256 (≈ 1 h 41 min)" in line  # a quarter of the pixels: a quarter of the time
    assert "epochs 10 → 5 (≈ 3 h 23 min)" in line
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


def test_the_plan_counts_the_previews_saves_and_validations_still_to_come() -> None:
    config = TrainConfig(sample_prompts="a cat", sample_every_n_steps=2, save_every_n_steps=3, max_steps=8)
    plan = make_plan(config, dataset_counts(config, [1] * 3))  # 3 steps per epoch
    assert plan.total_steps == 8 and plan.steps_per_epoch == 3
    assert plan.previews_left(0) == 4 and plan.previews_left(5) == 2
    assert [step for step in range(1, 9) if plan.previews_at(step)] == [2, 4, 6, 8]
    assert plan.saves_left(0) == 3  # steps 3 and 6, then the final file
    assert [step for step in range(1, 9) if plan.saves_at_step(step)] == [3, 6]
    no_steps = make_plan(config.replace(sample_every_n_steps=0), plan.counts)
    assert no_steps.previews_left(8) == 1 and no_steps.final_preview(None)  # the final file's card
    assert no_steps.previews_left(8, previewed_at=8) == 0  # a request previewed the last step
    every3 = make_plan(config.replace(sample_every_n_steps=3), plan.counts)
    assert every3.previews_left(0) == 3  # 3 and 6 on schedule, then the final render of step 8
    assert every3.previews_left(7, previewed_at=6) == 1
    # by steps and by epochs at once: a step that is both previews once
    both = make_plan(config.replace(sample_every_n_epochs=1), plan.counts)
    assert [step for step in range(1, 9) if both.previews_at(step)] == [2, 3, 4, 6, 8]
    assert both.previews_left(0) == 5
    validating = make_plan(config, dataset_counts(config, [1] * 3, validation_images=1))  # each epoch's end
    assert [step for step in range(1, 9) if validating.validates_at(step)] == [3, 6, 8]
    assert validating.validations_left(0) == 3
    # none held out: a sample of the training images, with each saved file (steps 3 and 6, and the final file)
    assert [step for step in range(1, 9) if plan.validates_at(step)] == [3, 6, 8]
    assert plan.validations_left(0) == 3 and plan.validations_left(6) == 1


def test_the_running_eta_counts_what_the_plan_still_has_at_the_run_s_own_costs() -> None:
    config = TrainConfig(sample_prompts="a cat --s 10", sample_every_n_steps=2, save_every_n_steps=3, max_steps=8)
    plan = make_plan(config, dataset_counts(config, [1] * 3))
    eta = Eta(config, plan)
    eta.stepped(5, 10.0)  # 2 s a step
    eta.previewed(4, 10.0)
    eta.saved(1.0)
    # steps 6–8, previews at 6 and 8, a save at 6 and the final, validations at 6 and 8 (4 timesteps × 3
    # images, each forward a third of a 2 s step)
    validation = 4 * 3 * 2.0 / 3
    assert eta.remaining() == 3 * 2.0 + 2 * 10.0 + 2 * 1.0 + 2 * validation
    costs = StepCosts(config.resolution, 1, 2.0, 0.5, 0.1, 3.0, 4.0, 1.0, 0.25)
    before = Eta(config, plan, costs)  # nothing timed yet: the measured costs
    preview = 1.0 + 10 * 0.25
    assert before.remaining() == pytest.approx(8 * 2.5 + 4 * preview + 3 * 4.0 + 3 * validation)
    estimate = estimate_run(config, plan, costs)
    # setup, and 3 latents cached for training and 3 for the validation (their own fixed seed)
    assert estimate.total == pytest.approx(before.remaining() + 3.0 + 6 * 0.1)


def test_regularisation_images_count_in_the_page_s_steps_and_in_its_time(make_standalone_host, tmp_path) -> None:
    ctx = _ctx(make_standalone_host, tmp_path, step_seconds=60.0)
    make_dataset(tmp_path / "reg", count=4, folder="1_person")
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    plain = train_section.plan(ctx, project="cat", version="v1", **values)["plan"]
    values["cfg_reg_dir"] = str(tmp_path / "reg")
    with_reg = train_section.plan(ctx, project="cat", version="v1", **values)["plan"]
    # 8 images × 1 repeat × 1 epoch = 8 steps of a minute and 8 latents of 6 s, then the final file's
    # validation (4 images × 4 timesteps, each forward a third of a step: 5 min 20 s, and their 4 latents); the
    # 4 reg images double the samples and steps, and add their latents.
    assert "8 steps" in plain and "≈ 15 min on this machine" in plain
    assert "16 steps" in with_reg and "≈ 23 min on this machine" in with_reg


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
    make_dataset(tmp_path / "data", count=2)
    config = TrainConfig(
        dataset_dir=str(tmp_path / "data"), resolution=64, rank=4, alpha=4.0, sample_prompts="toy --s 2"
    )
    costs = estimate.measure_costs(host, config)
    assert fingerprint(*host_roots(host)) == before
    assert costs.resolution == 64 and costs.micro_batch_seconds > 0 and costs.optimizer_seconds > 0
    assert costs.encode_seconds > 0 and costs.save_seconds > 0 and costs.sampler_step_seconds > 0


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
