"""Training through the WebUI adapter on the fake WebUI: queue lock, clean model, previews, hand-back."""

from __future__ import annotations

import pytest
from train_support import fingerprint, make_dataset, tiny_train_config
from webui import reset_fake_webui

from lora_ext.config import TrainConfig
from lora_ext.errors import HostUnavailable
from lora_ext.host import GenerationRequest
from lora_ext.training.events import TrainEvents
from lora_ext.training.run import train_lora


@pytest.fixture
def webui(make_ldm_model, tmp_path):
    reset_fake_webui()
    from modules import sd_models, shared

    def load(layout: str):
        model = make_ldm_model(layout)
        model.sd_checkpoint_info = sd_models.CheckpointInfo("/m/tiny.safetensors", "tiny", shorthash="abcdef1234")
        shared.sd_model = model
        return model

    shared.cmd_opts.lora_dir = str(tmp_path / "Lora")
    yield shared, load
    reset_fake_webui()


def _config(dataset, **changes) -> TrainConfig:
    return tiny_train_config(dataset, max_bucket_reso=128, seed=3, **changes)


def test_training_holds_the_queue_lock_and_hands_the_model_back(webui, tmp_path):
    from modules import call_queue

    from lora_ext.hosts.a1111 import A1111Host

    shared, load = webui
    model = load("sd1")
    before = fingerprint(model)
    seen = []

    def on_progress(info):
        seen.append((call_queue.queue_lock.locked(), shared.state.job, shared.state.job_no))

    host = A1111Host()
    result = train_lora(host, _config(make_dataset(tmp_path / "data", 2)), TrainEvents(on_progress=on_progress))
    assert result.status == "finished" and result.path.is_file()
    assert result.path.parent == tmp_path / "Lora"
    assert seen and all(locked and job == "train_tools: training" for locked, job, _ in seen)
    assert not call_queue.queue_lock.locked()
    assert fingerprint(model) == before


def test_builtin_lora_is_made_inert_before_training(webui, tmp_path):
    import sys
    import types

    from lora_ext.hosts.a1111 import A1111Host

    _, load = webui
    load("sd1")
    fake_networks = types.ModuleType("networks")
    fake_networks.loaded_networks = ["a LoRA the built-in merged"]
    sys.modules["networks"] = fake_networks
    try:
        loaded_during = []
        events = TrainEvents(on_progress=lambda info: loaded_during.append(list(fake_networks.loaded_networks)))
        train_lora(A1111Host(), _config(make_dataset(tmp_path / "data", 1)), events)
        assert loaded_during and all(loaded == [] for loaded in loaded_during)
    finally:
        del sys.modules["networks"]


def test_sdxl_text_encoders_are_trainable_only_during_the_session(webui, tmp_path):
    from lora_ext.hosts.a1111 import A1111Host

    _, load = webui
    model = load("sdxl")
    host = A1111Host()
    embedders = model.conditioner.embedders
    with host.training_session(_config(tmp_path, train_text_encoder=True)):
        assert all(embedder.is_trainable for embedder in embedders)
    assert not any(embedder.is_trainable for embedder in embedders)
    with host.training_session(_config(tmp_path, train_text_encoder=False)):
        assert not any(embedder.is_trainable for embedder in embedders)


def test_previews_during_training_disable_extra_networks(webui, tmp_path):
    from modules import processing

    from lora_ext.hosts.a1111 import A1111Host

    _, load = webui
    load("sd1")
    host = A1111Host()
    request = GenerationRequest(prompt="a cat <lora:other:1>", width=64, height=64, steps=2)
    with host.training_session(_config(tmp_path)):
        host.generate(request)
    assert processing.process_log[-1]["disable_extra_networks"] is True
    host.generate(request)
    assert processing.process_log[-1]["disable_extra_networks"] is False


def test_session_refuses_under_lowvram_and_releases_nothing(webui, tmp_path):
    from modules import call_queue

    from lora_ext.hosts.a1111 import A1111Host

    shared, load = webui
    load("sd1")
    shared.cmd_opts.lowvram = True
    with pytest.raises(HostUnavailable, match="lowvram"):
        with A1111Host().training_session(_config(tmp_path)):
            pass
    assert not call_queue.queue_lock.locked()


def test_interrupt_button_is_reported(webui):
    from lora_ext.hosts.a1111 import A1111Host

    shared, load = webui
    load("sd1")
    host = A1111Host()
    assert not host.interrupted()
    shared.state.interrupt()
    assert host.interrupted()
    host.report_progress(3, 10, "step 3/10")
    assert (shared.state.job_no, shared.state.job_count) == (3, 10)


def test_vae_runs_in_fp32_during_the_session_and_returns_exactly(webui, tmp_path):
    import torch
    from train_support import fingerprint

    from lora_ext.hosts.a1111 import A1111Host

    _, load = webui
    model = load("sd1")
    model.first_stage_model.half()
    before = fingerprint(model)
    with A1111Host().training_session(_config(tmp_path, vae_fp32=True)):
        assert next(model.first_stage_model.parameters()).dtype == torch.float32
    assert next(model.first_stage_model.parameters()).dtype == torch.float16
    assert fingerprint(model) == before
