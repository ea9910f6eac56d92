"""The tiny fixtures really have the WebUI's (and diffusers') module and key names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def _names(module: torch.nn.Module) -> set[str]:
    return {name for name, _ in module.named_modules()}


def test_sd1_ldm_unet_has_webui_names_and_conv_proj(make_ldm_model):
    unet = make_ldm_model("sd1").model.diffusion_model
    names = _names(unet)
    assert "input_blocks.1.1.transformer_blocks.0.attn1.to_q" in names
    assert "middle_block.1.transformer_blocks.0.attn2.to_k" in names
    assert "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj" in names
    assert isinstance(dict(unet.named_modules())["input_blocks.1.1.proj_in"], torch.nn.Conv2d)
    assert type(unet).__module__ == "ldm.modules.diffusionmodules.openaimodel"


def test_sd2_ldm_unet_uses_linear_proj(make_ldm_model):
    unet = make_ldm_model("sd2").model.diffusion_model
    assert isinstance(dict(unet.named_modules())["input_blocks.1.1.proj_in"], torch.nn.Linear)


def test_sdxl_like_unet_has_attention_only_on_deeper_levels_and_label_emb(make_ldm_model):
    names = _names(make_ldm_model("sdxl").model.diffusion_model)
    assert not any(name.startswith("input_blocks.1.1.transformer_blocks") for name in names)
    assert "input_blocks.4.1.transformer_blocks.0.attn1.to_q" in names
    assert "label_emb.0.0" in names and "label_emb.0.2" in names


def test_sd1_text_encoder_has_transformers_4_naming(make_ldm_model):
    wrapped = make_ldm_model("sd1").cond_stage_model.wrapped
    assert "transformer.text_model.encoder.layers.0.self_attn.q_proj" in _names(wrapped)


def test_open_clip_text_encoder_has_fused_in_proj(make_ldm_model):
    wrapped = make_ldm_model("sd2").cond_stage_model.wrapped
    attn = dict(wrapped.named_modules())["model.transformer.resblocks.0.attn"]
    assert isinstance(attn, torch.nn.MultiheadAttention)
    assert attn.in_proj_weight.shape == (3 * attn.embed_dim, attn.embed_dim)
    names = _names(wrapped)
    for suffix in ("mlp.c_fc", "mlp.c_proj", "ln_1", "ln_2", "attn.out_proj"):
        assert f"model.transformer.resblocks.1.{suffix}" in names


def test_sdxl_conditioner_returns_crossattn_and_vector(make_ldm_model):
    model = make_ldm_model("sdxl")
    cond = model.get_learned_conditioning(["a", "b"])
    assert cond["crossattn"].shape == (2, 77, 64)
    assert cond["vector"].shape[1] == model.model.diffusion_model.label_emb[0][0].in_features


def test_checkpoint_keys_follow_a1111_layout(make_checkpoint):
    _, sd1 = make_checkpoint("sd1")
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight" in sd1
    assert "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight" in sd1
    assert any(key.startswith("first_stage_model.encoder.") for key in sd1)
    _, sd2 = make_checkpoint("sd2")
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in sd2
    _, sdxl = make_checkpoint("sdxl")
    assert "conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight" in sdxl
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in sdxl


def test_diffusers_pipelines_have_diffusers_names(make_pipeline):
    sd1 = make_pipeline("sd1")
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" in _names(sd1.unet)
    assert "text_model.encoder.layers.0.self_attn.q_proj" in _names(sd1.text_encoder)
    sdxl = make_pipeline("sdxl")
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q" in _names(sdxl.unet)
    assert not any(name.startswith("down_blocks.0.attentions") for name in _names(sdxl.unet))
    assert sdxl.text_encoder_2.config.projection_dim == 32


def test_a_test_run_leaves_no_fake_webui_data_folder_in_the_system_temp_folder(tmp_path):
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "FAKE_WEBUI_DATA"}
    env.update(TMPDIR=str(system_temp), TEMP=str(system_temp), TMP=str(system_temp))
    repo = Path(__file__).resolve().parent.parent
    test = "tests/test_install.py::test_installs_cpu_onnxruntime_when_none_present_and_torch_is_cpu"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(path.name for path in system_temp.glob("fake-webui-data-*")) == []
