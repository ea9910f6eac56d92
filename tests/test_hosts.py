"""Every host implements the protocol with working model calls."""

from __future__ import annotations

import pytest
import torch

from lora_ext.host import Host, SizeCondition


def _exercise(host, family: str) -> None:
    assert isinstance(host, Host)
    assert host.info.family == family
    latents = host.encode_images(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert latents.shape == (2, 4, 8, 8)
    sizes = [SizeCondition((64, 64), (0, 0), (64, 64))] * 2
    cond = host.encode_prompts(["a photo", "a cat"], sizes)
    assert (cond.vector is not None) == (family == "sdxl")
    out = host.predict(latents, torch.tensor([10, 900]), cond)
    assert out.shape == latents.shape and torch.isfinite(out).all()
    assert host.alphas_cumprod.shape == (1000,) and host.alphas_cumprod.dtype == torch.float32
    counter_input = host.tokenizer()("a cat", add_special_tokens=False)["input_ids"]
    assert len(counter_input) == len("acat")  # the tiny tokenizer: one token per character, spaces split words
    parts = host.parts()
    expected_encoders = 2 if family == "sdxl" else 1
    assert len(parts.text_encoders) == expected_encoders


@pytest.mark.parametrize("layout", ["sd1", "sd2", "sdxl"])
def test_ldm_host_runs_every_family(make_ldm_host, layout):
    host = make_ldm_host(layout)
    _exercise(host, layout)
    kinds = [part.kind for part in host.parts().text_encoders]
    assert kinds == {"sd1": ["hf_clip"], "sd2": ["open_clip"], "sdxl": ["hf_clip", "open_clip"]}[layout]
    assert host.info.naming == "ldm"


def test_ldm_host_reads_v_prediction(make_ldm_host):
    assert make_ldm_host("sd2", "v").info.prediction == "v"


def test_sdxl_size_conditioning_changes_the_vector(make_ldm_host):
    host = make_ldm_host("sdxl")
    a = host.encode_prompts(["x"], [SizeCondition((64, 64), (0, 0), (64, 64))])
    b = host.encode_prompts(["x"], [SizeCondition((96, 64), (16, 0), (64, 64))])
    assert torch.equal(a.crossattn, b.crossattn)
    assert not torch.equal(a.vector, b.vector)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_standalone_host_runs_diffusers_pipelines(make_standalone_host, family):
    host = make_standalone_host(family)
    _exercise(host, family)
    assert host.info.naming == "diffusers"


def test_ldm_host_generate_is_seeded(make_ldm_host):
    from lora_ext.host import GenerationRequest

    host = make_ldm_host("sd1")
    request = GenerationRequest(prompt="a cat <lora:x:1>", seed=3, width=64, height=64, steps=3)
    first, second = host.generate(request)[0], host.generate(request)[0]
    other = host.generate(GenerationRequest(prompt="a cat", seed=4, width=64, height=64, steps=3))[0]
    assert first.size == (64, 64)
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != other.tobytes()


def test_prompt_hook_sees_the_raw_prompt(make_standalone_host):
    from lora_ext.host import GenerationRequest

    host = make_standalone_host("sd1")
    seen = []
    host.set_prompt_hook(lambda prompt: seen.append(prompt) or prompt)
    host.generate(GenerationRequest(prompt="a <lora:foo:0.5> cat", width=64, height=64, steps=2))
    assert seen == ["a <lora:foo:0.5> cat"]


def test_demo_model_builds_offline_and_loads(train_tools_home):
    from lora_ext.hosts.standalone import StandaloneHost

    host = StandaloneHost.load("demo")
    assert host.info.is_demo and host.info.family == "sd1"
    assert (train_tools_home / "models" / "demo-sd1" / "DEMO_MODEL.txt").is_file()


def test_single_file_family_is_told_from_keys(make_checkpoint):
    from lora_ext.hosts.standalone import _checkpoint_family

    for layout in ("sd1", "sd2", "sdxl"):
        path, _ = make_checkpoint(layout)
        assert _checkpoint_family(path) == layout


def test_single_file_without_offline_configs_names_missing_files(make_checkpoint):
    from lora_ext.errors import ModelLoadError
    from lora_ext.hosts.standalone import load_pipeline

    path, _ = make_checkpoint("sd1")
    with pytest.raises(ModelLoadError) as caught:
        load_pipeline(str(path))
    message = caught.value.one_line()
    assert "stable-diffusion-v1-5" in message and "unet/config.json" in message


def test_standalone_training_session_restores_loras_and_upcasts_the_vae(make_standalone_host):
    from types import SimpleNamespace

    host = make_standalone_host("sd1")
    host.pipeline.vae.half()
    seen = []
    host.set_prompt_hook(lambda prompt: seen.append(prompt) or prompt)
    with host.training_session(SimpleNamespace(vae_fp32=True)):
        assert host.pipeline.vae.dtype == torch.float32
    assert seen == [""]
    assert host.pipeline.vae.dtype == torch.float16
