"""Each WebUI host says what its model predicts and whether its schedule ends at zero SNR, the way the WebUI does."""

from __future__ import annotations

import pytest
import torch
from forge import FORGE_ROOT, add_checkpoint, fake_forge, select_checkpoint
from safetensors.torch import save_file
from webui import reset_fake_webui

from lora_ext.noise_schedule import rescale_zero_terminal_snr


@pytest.fixture
def webui(make_ldm_model, tmp_path):
    reset_fake_webui()
    from modules import sd_models, shared

    def load(layout: str, prediction: str, keys: tuple[str, ...] = ()):
        path = tmp_path / f"{layout}-{prediction}.safetensors"
        save_file({"model.diffusion_model.x": torch.zeros(1), **{key: torch.tensor([]) for key in keys}}, str(path))
        model = make_ldm_model(layout, prediction)
        model.sd_checkpoint_info = sd_models.CheckpointInfo(str(path), "tiny", shorthash="abcdef1234")
        shared.sd_model = model
        return model

    shared.cmd_opts.lora_dir = str(tmp_path / "Lora")
    yield shared, load
    reset_fake_webui()


def _info():
    from lora_ext.hosts.a1111 import A1111Host

    info = A1111Host().info
    return info.prediction, info.zero_terminal_snr


def test_a1111_reads_the_checkpoints_v_pred_and_ztsnr_keys(webui):
    _, load = webui
    load("sdxl", "eps", ("v_pred", "ztsnr"))  # A1111 1.10 loads such a file as ε; its weights are v
    assert _info() == ("v", True)
    load("sdxl", "eps", ("v_pred",))
    assert _info() == ("v", False)
    load("sdxl", "eps")
    assert _info() == ("eps", False)


def test_a1111_zero_terminal_noise_schedule_setting_counts_for_a_v_model_only(webui):
    shared, load = webui
    shared.opts.data["sd_noise_schedule"] = "Zero Terminal SNR"
    load("sdxl", "v")
    assert _info() == ("v", True)
    load("sdxl", "eps")
    assert _info() == ("eps", False)


@pytest.fixture
def forge(make_ldm_model, monkeypatch, tmp_path):
    with fake_forge(FORGE_ROOT, monkeypatch) as forge:
        from modules import paths, shared

        monkeypatch.setattr(paths, "data_path", str(tmp_path / "webui"))
        monkeypatch.setattr(paths, "models_path", str(tmp_path / "webui" / "models"))
        monkeypatch.setattr(shared.cmd_opts, "lora_dir", str(tmp_path / "webui" / "models" / "Lora"))
        forge.make = make_ldm_model
        yield forge


def _forge_info(forge, model):
    from lora_ext.hosts.forge import ForgeHost

    engine = add_checkpoint(forge, model, engine="sdxl")
    select_checkpoint(engine)
    from modules import sd_models

    sd_models.forge_model_reload()
    info = ForgeHost().info
    return engine, (info.prediction, info.zero_terminal_snr)


def test_forge_reads_the_predictor_and_its_schedule(forge):
    model = forge.make("sdxl", "v")
    alphas = rescale_zero_terminal_snr(model.alphas_cumprod)
    alphas[-1] = 4.8973451890853435e-08
    model.alphas_cumprod.copy_(alphas)
    assert _forge_info(forge, model)[1] == ("v", True)
    assert _forge_info(forge, forge.make("sdxl", "v"))[1] == ("v", False)
    assert _forge_info(forge, forge.make("sdxl", "eps"))[1] == ("eps", False)


def test_forge_neo_marks_ztsnr_on_the_model(forge):
    engine, _ = _forge_info(forge, forge.make("sdxl", "v"))
    engine.ztsnr = True  # what Forge Neo sets from the checkpoint's ztsnr key
    from lora_ext.hosts.forge import ForgeHost

    assert ForgeHost().info.zero_terminal_snr
