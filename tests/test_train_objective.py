"""v-prediction and zero terminal SNR are read from the model and trained as the model is.

A tiny SDXL v-prediction zero-terminal-SNR model (a diffusers pipeline with
``rescale_betas_zero_snr``, and an ldm model flagged as A1111 dev flags it) is detected,
trained on the rescaled schedule (last ᾱ exactly 0) with the v target, and its file says so.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open
from train_support import make_dataset, tiny_train_config

from lora_ext.config import TrainConfig
from lora_ext.demo import build_tiny_pipeline
from lora_ext.errors import ConfigError
from lora_ext.host import ModelInfo
from lora_ext.hosts.standalone import StandaloneHost
from lora_ext.noise_schedule import checkpoint_flags, is_zero_terminal, rescale_zero_terminal_snr
from lora_ext.training import loss as losses
from lora_ext.training.objective import choose, objective_for, objective_note
from lora_ext.training.run import train_lora

A1111_TAIL = 4.8973451890853435e-08  # A1111/Forge keep this last ᾱ so the sampler's σ stays finite


def _scaled_linear() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def _lin_et_al_algorithm_1(betas: torch.Tensor) -> torch.Tensor:
    """The paper's Algorithm 1 (also kohya's ``--zero_terminal_snr``), through betas, as written there."""
    alphas_bar_sqrt = torch.cumprod(1 - betas, 0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return torch.cumprod(alphas, 0)


def test_rescaled_schedule_is_lin_et_al_with_a_last_alpha_bar_of_exactly_zero():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    rescaled = rescale_zero_terminal_snr(_scaled_linear().float())
    assert rescaled.dtype == torch.float32 and rescaled[-1].item() == 0.0
    assert torch.allclose(rescaled.double(), _lin_et_al_algorithm_1(betas), atol=2e-7)
    assert math.isclose(rescaled[0].item(), _scaled_linear()[0].item(), rel_tol=1e-6)
    assert not is_zero_terminal(_scaled_linear()) and is_zero_terminal(rescaled)


@pytest.mark.parametrize("tail", [A1111_TAIL, 2.0**-24])
def test_a_schedule_a_host_already_rescaled_only_gets_its_exact_zero_back(tail):
    hosts = rescale_zero_terminal_snr(_scaled_linear()).double()
    hosts[-1] = tail
    again = rescale_zero_terminal_snr(hosts)
    assert again[-1].item() == 0.0 and torch.equal(again[:-1], hosts[:-1].float())


def test_checkpoint_keys_say_v_pred_and_ztsnr_only_beside_it():
    assert checkpoint_flags(["model.diffusion_model.x", "v_pred", "ztsnr"]) == (True, True)
    assert checkpoint_flags(["v_pred"]) == (True, False)
    assert checkpoint_flags(["ztsnr"]) == (False, False)  # ComfyUI reads ztsnr only for v_pred files


@pytest.fixture(scope="module")
def vpred_ztsnr_pipeline():
    return build_tiny_pipeline("sdxl", "v", zero_terminal_snr=True)


@pytest.fixture
def vpred_host(vpred_ztsnr_pipeline, tmp_path):
    import copy

    return StandaloneHost(copy.deepcopy(vpred_ztsnr_pipeline), name="tiny-vpred", lora_dir=tmp_path / "Lora")


def test_a_diffusers_vpred_ztsnr_model_is_detected(vpred_host, make_standalone_host):
    assert (vpred_host.info.prediction, vpred_host.info.zero_terminal_snr) == ("v", True)
    plain_v = make_standalone_host("sdxl", "v").info
    assert (plain_v.prediction, plain_v.zero_terminal_snr) == ("v", False)


def test_an_ldm_model_flagged_ztsnr_is_detected_only_when_it_predicts_v(make_ldm_host):
    host = make_ldm_host("sdxl", "v")
    assert not host.info.zero_terminal_snr
    host.sd_model.ztsnr = True  # what A1111 dev sets from the checkpoint's ztsnr key
    assert (host.info.prediction, host.info.zero_terminal_snr) == ("v", True)
    eps = make_ldm_host("sdxl", "eps")
    eps.sd_model.ztsnr = True
    assert not eps.info.zero_terminal_snr


def test_an_a1111_style_rescaled_schedule_counts_as_ztsnr(make_ldm_host):
    host = make_ldm_host("sdxl", "v")
    alphas = rescale_zero_terminal_snr(host.sd_model.alphas_cumprod)
    alphas[-1] = A1111_TAIL  # the WebUI's "Zero Terminal SNR" noise schedule
    host.sd_model.alphas_cumprod.copy_(alphas)
    assert host.info.zero_terminal_snr


def _info(prediction="v", ztsnr=True) -> ModelInfo:
    return ModelInfo("m", "sdxl", prediction, "ldm", zero_terminal_snr=ztsnr)


def test_auto_trains_what_the_model_is():
    assert (choose(TrainConfig(), _info()).prediction, choose(TrainConfig(), _info()).zero_terminal_snr) == ("v", True)
    chosen = choose(TrainConfig(), _info("eps", False))
    assert (chosen.prediction, chosen.zero_terminal_snr, chosen.matches_model) == ("eps", False, True)


def test_a_vpred_lora_without_ztsnr_on_a_ztsnr_model_needs_the_explicit_override():
    with pytest.raises(ConfigError, match="zero-terminal-SNR schedule; training it as v-prediction gives"):
        choose(TrainConfig(zero_terminal_snr="off"), _info())
    with pytest.raises(ConfigError, match="is ε-prediction; training it as v-prediction"):
        choose(TrainConfig(prediction="v"), _info("eps", False))
    chosen = choose(TrainConfig(zero_terminal_snr="off", override_detection=True), _info())
    assert (chosen.prediction, chosen.zero_terminal_snr, chosen.matches_model) == ("v", False, False)
    line, kind = objective_note(TrainConfig(zero_terminal_snr="off", override_detection=True), _info())
    assert kind == "warn" and "the model is v-prediction, zero-terminal-SNR schedule" in line


def test_ztsnr_with_eps_prediction_is_refused_even_with_the_override():
    with pytest.raises(ConfigError, match="needs v-prediction"):
        choose(TrainConfig(prediction="eps", zero_terminal_snr="on", override_detection=True), _info())


def test_the_training_targets_on_the_ztsnr_schedule(vpred_host):
    objective = objective_for(TrainConfig(min_snr_gamma=5.0), vpred_host.info, vpred_host.alphas_cumprod)
    alphas = objective.alphas_cumprod
    assert alphas[-1].item() == 0.0 and vpred_host.alphas_cumprod[-1].item() > 0  # the sampler's nudge is gone
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([999, 500, 0])
    noisy, target = objective.add_noise(latents, noise, timesteps), objective.target(latents, noise, timesteps)
    assert torch.equal(noisy[0], noise[0]) and torch.equal(target[0], -latents[0])  # pure noise → v = −x0
    a = alphas[500].double()
    want = (a.sqrt() * noise[1].double() - (1 - a).sqrt() * latents[1].double()).float()
    assert torch.allclose(target[1], want, atol=1e-6)
    snr = a / (1 - a)
    weights = objective.weights(timesteps)
    assert weights[0].item() == 0.0  # min(snr, γ)/(snr + 1) at snr 0
    assert math.isclose(weights[1].item(), min(snr.item(), 5.0) / (snr.item() + 1), rel_tol=1e-6)


def test_debiased_estimation_weights_in_both_forms():
    alphas = _scaled_linear().float()
    timesteps = torch.tensor([0, 400, 999])
    snr = (alphas[timesteps].double() / (1 - alphas[timesteps].double())).clamp(max=1000)
    eps = losses.debiased_weights(timesteps, alphas, "eps")
    v = losses.debiased_weights(timesteps, alphas, "v")
    assert torch.allclose(eps.double(), 1 / snr.sqrt(), rtol=1e-6) and torch.allclose(v.double(), 1 / (snr + 1))
    assert eps[0].item() == pytest.approx(1000**-0.5)  # capped at snr 1000, as sd-scripts


def test_a_vpred_ztsnr_training_says_so_in_its_file(vpred_host, tmp_path):
    dataset = make_dataset(tmp_path / "data", count=1)
    config = tiny_train_config(dataset, train_text_encoder=False, debiased_estimation=True, max_steps=1)
    seen: list[torch.Tensor] = []
    predict = vpred_host.predict

    def spy(noisy, timesteps, conditioning):
        seen.append(timesteps.clone())
        return predict(noisy, timesteps, conditioning)

    vpred_host.predict = spy
    path = train_lora(vpred_host, config, out=tmp_path / "out" / "v.safetensors").path
    assert seen
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_v_parameterization"] == "True" and metadata["ss_zero_terminal_snr"] == "True"
    assert metadata["ss_debiased_estimation"] == "True" and metadata["modelspec.prediction_type"] == "v"


def test_an_override_run_records_what_it_trained_not_what_the_model_is(vpred_host, tmp_path):
    dataset = make_dataset(tmp_path / "data", count=1)
    config = tiny_train_config(dataset, train_text_encoder=False, zero_terminal_snr="off", max_steps=1)
    with pytest.raises(ConfigError):
        train_lora(vpred_host, config, out=tmp_path / "out" / "refused.safetensors")
    assert not (tmp_path / "out" / "refused.safetensors").exists()
    path = train_lora(vpred_host, config.replace(override_detection=True), out=tmp_path / "out" / "o.safetensors").path
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_v_parameterization"] == "True" and metadata["ss_zero_terminal_snr"] == "False"


def test_the_page_shows_what_was_detected_and_what_will_be_trained(vpred_host, tmp_path):
    from lora_ext.app.context import Context, Workspace
    from lora_ext.ui import projects, train_section
    from lora_ext.ui.i18n import I18n
    from lora_ext.ui.model_line import describe_host

    assert "prediction `v + ztsnr`" in describe_host(vpred_host)
    ctx = Context(lambda: vpred_host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())
    projects.create_project(ctx, name="x")
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    shown = train_section.plan(ctx, project="x", version="v1", **values)["plan"]
    assert "Training objective: v-prediction, zero-terminal-SNR schedule (as the model)" in shown
    values["cfg_zero_terminal_snr"] = "off"
    shown = train_section.plan(ctx, project="x", version="v1", **values)["plan"]
    assert "tt-msg-error" in shown and "does not match it" in shown


def test_the_demo_model_has_a_vpred_ztsnr_variant(tmp_path):
    host = StandaloneHost.load("demo-vpred", lora_dir=tmp_path / "Lora", device="cpu")
    info = host.info
    assert (info.name, info.family, info.prediction, info.zero_terminal_snr, info.is_demo) == (
        "demo-vpred",
        "sdxl",
        "v",
        True,
        True,
    )
    assert StandaloneHost.load("demo", lora_dir=tmp_path / "Lora", device="cpu").info.prediction == "eps"


def test_a_single_file_with_v_pred_and_ztsnr_keys_gets_a_vpred_ztsnr_scheduler(vpred_ztsnr_pipeline):
    import copy

    from lora_ext.hosts.standalone import scheduler_flags, with_checkpoint_flags

    pipeline = copy.deepcopy(vpred_ztsnr_pipeline)
    pipeline.scheduler = type(pipeline.scheduler).from_config(
        pipeline.scheduler.config, prediction_type="epsilon", rescale_betas_zero_snr=False
    )  # what diffusers' single-file loader builds from the SDXL base config
    assert scheduler_flags(pipeline.scheduler) == (False, False)
    assert scheduler_flags(with_checkpoint_flags(pipeline, True, True).scheduler) == (True, True)
