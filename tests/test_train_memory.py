"""The peak-memory estimate before a run, and ``memory_mode = auto`` fitting the settings to the free memory.

How close the estimate comes to measured peaks on the full-size architectures is ``bench/memory.py``'s
job; here: the probe's maths (exact polynomial, meta forward = real forward), the parts of the estimate,
what auto turns on and says, and the page's line.
"""

from __future__ import annotations

import dataclasses

import pytest
from train_support import make_dataset, tiny_train_config

from lora_ext.config import TrainConfig
from lora_ext.training import memory
from lora_ext.training.memory import GIB, MemoryEstimate, Polynomial, estimate_memory, fit_to_memory, probe


def test_three_probes_give_the_polynomial_exactly():
    truth = Polynomial(5e6, 3.5e4, 12.0)
    pixels = (64.0, 256.0, 576.0)
    fitted = Polynomial.fit(pixels, tuple(truth(p) for p in pixels))
    for p in (64.0, 4096.0, 16384.0):
        assert fitted(p) == pytest.approx(truth(p), rel=1e-9)


@pytest.mark.parametrize("naming", ["ldm", "diffusers"])
def test_the_meta_forward_keeps_what_the_real_forward_keeps(make_ldm_host, make_standalone_host, naming):
    host = make_ldm_host("sd1") if naming == "ldm" else make_standalone_host("sd1")
    config = TrainConfig(rank=4, alpha=2.0, train_text_encoder=False, resolution=64)
    from lora_ext.training.inject import attached
    from lora_ext.training.network import build_network, network_spec

    network = build_network(host.parts(), "sd1", network_spec(config))
    with attached(network, host.parts()):
        real = memory._forwards(host, config, network, meta=False)
        shapes = memory._forwards(host, config, network, meta=True)
    for measured, propagated in zip(real, shapes, strict=True):
        real_total = sum(measured["per_block"].values())
        assert real_total > 0
        assert sum(propagated["per_block"].values()) == pytest.approx(real_total, rel=0.1)
        assert sum(propagated["inputs"].values()) == sum(measured["inputs"].values())


def test_the_estimate_grows_with_resolution_and_shrinks_with_each_saving(make_standalone_host):
    host = make_standalone_host("sd1")
    base = TrainConfig(rank=4, alpha=2.0, train_text_encoder=False, resolution=256)
    profile = probe(host, base)
    plain = estimate_memory(host, base, profile)
    assert estimate_memory(host, base.replace(resolution=512), profile).activations > 3 * plain.activations
    assert estimate_memory(host, base.replace(batch_size=2), profile).activations == pytest.approx(
        2 * plain.activations
    )
    checkpointed = estimate_memory(host, base.replace(gradient_checkpointing=True), profile)
    assert checkpointed.activations < plain.activations
    adafactor = estimate_memory(host, base.replace(optimizer="Adafactor"), profile)
    fused = estimate_memory(host, base.replace(optimizer="Adafactor", fused_backward=True), profile)
    assert fused.network < adafactor.network < plain.network  # no full gradient; factored moments
    assert estimate_memory(host, base.replace(fp8_base=True), profile).fp8_change > 0  # on a CPU: the fp8 copies
    assert "GiB peak on cpu (this process now" in plain.describe()  # on a CPU: the whole process, not the model
    on_gpu = dataclasses.replace(plain, device="cuda")
    assert "GiB peak on cuda (model" in on_gpu.describe() and "process" not in on_gpu.describe()


def _estimate(added_by: dict[str, float]):
    """An estimate function whose added bytes drop by fixed amounts per saving turned on."""

    def estimate(config: TrainConfig) -> MemoryEstimate:
        added = 10 * GIB
        added -= added_by["ckpt"] if config.gradient_checkpointing else 0
        added -= added_by["fp8"] if config.fp8_base else 0
        added -= added_by["te"] if not config.train_text_encoder else 0
        return MemoryEstimate("cuda", 4 * GIB, 0.0, 0.0, added, 0.0)

    return estimate


def test_auto_turns_on_the_fewest_savings_that_fit_and_says_which():
    steps = {"ckpt": 4 * GIB, "fp8": 2 * GIB, "te": 1 * GIB}
    config = TrainConfig(train_text_encoder=True)
    fits_now = fit_to_memory(config, _estimate(steps), free=20 * GIB)
    assert fits_now.config == config and fits_now.fits and "the settings fit" in fits_now.line
    two = fit_to_memory(config, _estimate(steps), free=4.5 * GIB)
    assert (two.config.gradient_checkpointing, two.config.fp8_base, two.config.train_text_encoder) == (
        True,
        True,
        True,
    )
    assert "turned on gradient checkpointing, fp8 base weights to fit" in two.line
    never = fit_to_memory(config, _estimate(steps), free=1 * GIB)
    assert not never.fits and "lower the resolution or the batch size" in never.line


def test_auto_in_a_run_trains_the_fitted_settings_and_says_so(make_standalone_host, tmp_path, monkeypatch):
    host = make_standalone_host("sd1")
    dataset = make_dataset(tmp_path / "data", count=1)
    statuses: list[str] = []
    from lora_ext.training.events import TrainEvents
    from lora_ext.training.run import train_lora

    monkeypatch.setattr(memory, "free_bytes", lambda device: 1.0)  # nothing fits: every saving is turned on
    config = tiny_train_config(dataset, memory_mode="auto", train_text_encoder=True, max_steps=1)
    result = train_lora(host, config, TrainEvents(on_status=statuses.append), out=tmp_path / "o" / "x.safetensors")
    assert result.status == "finished"
    assert any(
        line.startswith("memory auto: even with gradient checkpointing, fp8 base weights, UNet only")
        for line in statuses
    )
    from safetensors import safe_open

    with safe_open(str(result.path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_gradient_checkpointing"] == "True" and metadata["ss_network_train_unet_only"] == "True"


def test_the_page_shows_the_estimate_next_to_the_free_memory(make_standalone_host, tmp_path):
    from lora_ext.app.context import Context, Workspace
    from lora_ext.ui import projects, train_section
    from lora_ext.ui.i18n import I18n

    host = make_standalone_host("sd1")
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())
    projects.create_project(ctx, name="x")
    make_dataset(ctx.version("x", "v1").dataset, count=1, folder="")
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    shown = train_section.plan(ctx, project="x", version="v1", **values)["plan"]
    assert "Memory: ≈ " in shown and "GiB peak on cpu" in shown and "GiB free" in shown


def test_a_job_waits_while_the_page_probes_the_model_and_the_page_never_probes_under_a_job(
    make_standalone_host, tmp_path
):
    """The probe puts the model's weights on the meta device for a moment: a generation or training that
    started then would run on meta tensors ("Tensor on device cpu is not on the expected device meta")."""
    import threading

    from lora_ext.app.context import Context, Workspace
    from lora_ext.training.memory import MemoryCache
    from lora_ext.ui import projects, train_section
    from lora_ext.ui.i18n import I18n

    host = make_standalone_host("sd1")
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())
    projects.create_project(ctx, name="x")
    make_dataset(ctx.version("x", "v1").dataset, count=1, folder="")
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    probing, release, seen_by_job = threading.Event(), threading.Event(), []

    def slow_probe(host_, config):
        probing.set()
        release.wait(30)
        try:
            return probe(host_, config)
        finally:
            probing.clear()

    ctx.memory_profiles = MemoryCache(slow_probe)
    ctx.step_costs.known = lambda *_: object()  # the step timings are not this test's subject
    page = threading.Thread(target=lambda: train_section.plan(ctx, project="x", version="v1", **values))
    page.start()
    assert probing.wait(60)
    job = ctx.jobs.start("Generate", lambda _job: seen_by_job.append((probing.is_set(), str(host.device))))
    ran_during_probe = job.finished_event.wait(2)  # with the model in use by the probe, the job must wait
    release.set()
    page.join(120)
    assert job.finished_event.wait(60) and job.error is None
    assert not ran_during_probe and seen_by_job == [(False, "cpu")]

    # The other way round: while a job holds the model, the plan shows no memory line rather than probing.
    ctx.memory_profiles = MemoryCache(lambda *_: pytest.fail("probed while a job used the model"))
    holding, done = threading.Event(), threading.Event()
    job = ctx.jobs.start("Training", lambda _job: (holding.set(), done.wait(30)))
    assert holding.wait(30)
    try:
        shown = train_section.plan(ctx, project="x", version="v1", **values)["plan"]
    finally:
        done.set()
    assert "Memory:" not in shown and job.finished_event.wait(30)


@pytest.mark.parametrize("naming", ["ldm", "diffusers"])
def test_other_threads_read_the_model_s_own_device_while_the_probe_holds_meta_weights(
    make_ldm_host, make_standalone_host, naming
):
    import threading

    import torch

    host = make_ldm_host("sd1") if naming == "ldm" else make_standalone_host("sd1")
    own = (host.device, host.dtype)
    seen: list[tuple] = []
    predict = host.predict

    def predicting(*args, **kwargs):
        if host.device.type == "meta" and not seen:  # inside the probe's meta forward, in its own thread
            reader = threading.Thread(target=lambda: seen.append((host.device, host.dtype)))
            reader.start()
            reader.join()
        return predict(*args, **kwargs)

    host.predict = predicting
    probe(host, TrainConfig(rank=4, alpha=2.0, train_text_encoder=False, resolution=64))
    assert seen == [own] and own[0] == torch.device("cpu")
    assert (host.device, host.dtype) == own
