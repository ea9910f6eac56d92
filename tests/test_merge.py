"""``python -m lora_ext merge``: the black-box contract."""

from __future__ import annotations

import pytest
import torch
from lora_files import adapter_tensors, spell, write_lora
from safetensors import safe_open
from safetensors.torch import load_file

from lora_ext.cli import main

SD1_Q = (
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
)
SD1_TE = (
    "lora_te_text_model_encoder_layers_0_mlp_fc1",
    "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
)


def _lora_delta(t: dict[str, torch.Tensor]) -> torch.Tensor:
    return (
        float(t["alpha"])
        / t["lora_down.weight"].shape[0]
        * t["lora_up.weight"].flatten(1)
        @ t["lora_down.weight"].flatten(1)
    )


def _assert_rounded_once(merged: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> None:
    """``merged`` is ``exact`` (float64) rounded to ``dtype`` once: within one ulp, stored as ``dtype``."""
    assert merged.dtype == dtype
    ulp = {torch.float16: 2**-10, torch.bfloat16: 2**-7, torch.float32: 2**-21}[dtype]
    error = (merged.double() - exact).abs()
    assert bool((error <= exact.abs() * ulp + 1e-7).all()), float(error.max())


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_merge_bakes_weighted_loras_and_copies_everything_else(make_checkpoint, tmp_path, capsys, dtype):
    base_path, base = make_checkpoint("sd1", dtype)
    q = adapter_tensors("lora", base[SD1_Q[1]].float(), seed=1)
    te = adapter_tensors("lora", base[SD1_TE[1]].float(), seed=2)
    q2 = adapter_tensors("lora", base[SD1_Q[1]].float(), seed=3)
    first = write_lora(tmp_path / "first.safetensors", {**spell(SD1_Q[0], q), **spell(SD1_TE[0], te)})
    second = write_lora(tmp_path / "second.safetensors", spell(SD1_Q[0], q2))
    out = tmp_path / "merged.safetensors"
    code, stdout, stderr = _run(
        capsys, "merge", str(base_path), "--lora", f"{first}:0.8", "--lora", str(second), "--out", str(out)
    )
    assert code == 0, stderr
    assert stderr == "" and "merged" in stdout
    merged = load_file(str(out))
    assert merged.keys() == base.keys()
    exact_q = base[SD1_Q[1]].double() + 0.8 * _lora_delta(q).double() + _lora_delta(q2).double()
    _assert_rounded_once(merged[SD1_Q[1]], exact_q, dtype)
    assert not torch.equal(merged[SD1_Q[1]], base[SD1_Q[1]])
    _assert_rounded_once(merged[SD1_TE[1]], base[SD1_TE[1]].double() + 0.8 * _lora_delta(te).double(), dtype)
    untouched = [k for k in base if k not in (SD1_Q[1], SD1_TE[1])]
    assert all(torch.equal(merged[k], base[k]) and merged[k].dtype == base[k].dtype for k in untouched)


def test_merge_save_dtype_applies_to_merged_weights(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sd1", torch.float16)
    q = adapter_tensors("lora", base[SD1_Q[1]].float())
    lora = write_lora(tmp_path / "l.safetensors", spell(SD1_Q[0], q))
    out = tmp_path / "m.safetensors"
    code, _, stderr = _run(
        capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out), "--save-dtype", "fp32"
    )
    assert code == 0, stderr
    merged = load_file(str(out))
    _assert_rounded_once(merged[SD1_Q[1]], base[SD1_Q[1]].double() + _lora_delta(q).double(), torch.float32)
    assert merged["model.diffusion_model.out.2.weight"].dtype == torch.float16
    assert torch.equal(merged["model.diffusion_model.out.2.weight"], base["model.diffusion_model.out.2.weight"])


def test_merge_patches_fused_open_clip_rows_of_sd2(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sd2", torch.float32)
    key = "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"
    width = base[key].shape[1]
    v = adapter_tensors("lora", base[key][:width], seed=4)
    lora = write_lora(tmp_path / "v.safetensors", spell("lora_te_text_model_encoder_layers_1_self_attn_v_proj", v))
    out = tmp_path / "m.safetensors"
    assert _run(capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out))[0] == 0
    merged = load_file(str(out))[key]
    assert torch.equal(merged[: 2 * width], base[key][: 2 * width])
    torch.testing.assert_close(merged[2 * width :], base[key][2 * width :] + _lora_delta(v))


def test_merge_sdxl_both_text_encoders_and_ldm_unet_names(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sdxl", torch.float16)
    unet_key = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    te1_key = "conditioner.embedders.0.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight"
    te2_key = "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight"
    parts = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": unet_key,
        "lora_te1_text_model_encoder_layers_1_self_attn_q_proj": te1_key,
        "lora_te2_text_model_encoder_layers_0_mlp_fc1": te2_key,
    }
    state, deltas = {}, {}
    for seed, (prefix, key) in enumerate(parts.items()):
        tensors = adapter_tensors("lora", base[key].float(), seed=seed)
        state.update(spell(prefix, tensors))
        deltas[key] = _lora_delta(tensors)
    lora = write_lora(tmp_path / "xl.safetensors", state, {"ss_base_model_version": "sdxl_base_v1-0"})
    out = tmp_path / "m.safetensors"
    code, _, stderr = _run(capsys, "merge", str(base_path), "--lora", f"{lora}:0.5", "--out", str(out))
    assert code == 0, stderr
    merged = load_file(str(out))
    for key, delta in deltas.items():
        _assert_rounded_once(merged[key], base[key].double() + 0.5 * delta.double(), torch.float16)


def test_unmatched_keys_warn_and_the_merge_proceeds(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sd1")
    state = {
        **spell(SD1_Q[0], adapter_tensors("lora", base[SD1_Q[1]].float())),
        **spell("lora_unet_nowhere_block", adapter_tensors("lora", torch.zeros(8, 8))),
    }
    lora = write_lora(tmp_path / "l.safetensors", state)
    code, _, stderr = _run(
        capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(tmp_path / "m.safetensors")
    )
    assert code == 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "lora_unet_nowhere_block" in lines[0]
    assert not torch.equal(load_file(str(tmp_path / "m.safetensors"))[SD1_Q[1]], base[SD1_Q[1]])


def _assert_one_line_failure(code: int, stderr: str, out, *words: str) -> None:
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr, stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not out.exists()


def test_a_lora_that_matches_nothing_fails_with_one_line(make_checkpoint, tmp_path, capsys):
    base_path, _ = make_checkpoint("sd1")
    lora = write_lora(
        tmp_path / "l.safetensors", spell("lora_unet_nowhere", adapter_tensors("lora", torch.zeros(8, 8)))
    )
    out = tmp_path / "m.safetensors"
    code, _, stderr = _run(capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out))
    _assert_one_line_failure(code, stderr, out, "matches nothing")


def test_a_shape_mismatch_fails_with_one_line(make_checkpoint, tmp_path, capsys):
    base_path, _ = make_checkpoint("sd1")
    lora = write_lora(tmp_path / "l.safetensors", spell(SD1_Q[0], adapter_tensors("lora", torch.zeros(48, 48))))
    out = tmp_path / "m.safetensors"
    code, _, stderr = _run(capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out))
    _assert_one_line_failure(code, stderr, out, "shape mismatch")


@pytest.mark.parametrize("broken", ["truncated", "garbage", "missing"])
def test_an_unreadable_file_fails_with_one_line(make_checkpoint, tmp_path, capsys, broken):
    base_path, base = make_checkpoint("sd1")
    lora = write_lora(tmp_path / "l.safetensors", spell(SD1_Q[0], adapter_tensors("lora", base[SD1_Q[1]].float())))
    target = base_path if broken == "truncated" else lora
    if broken == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif broken == "garbage":
        target.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    else:
        target.unlink()
    out = tmp_path / "m.safetensors"
    code, _, stderr = _run(capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out))
    _assert_one_line_failure(code, stderr, out)


def test_an_sdxl_lora_on_an_sd1_base_is_refused(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sd1")
    lora = write_lora(
        tmp_path / "l.safetensors",
        spell(SD1_Q[0], adapter_tensors("lora", base[SD1_Q[1]].float())),
        {"ss_base_model_version": "sdxl_base_v1-0"},
    )
    out = tmp_path / "m.safetensors"
    code, _, stderr = _run(capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out))
    _assert_one_line_failure(code, stderr, out, "SDXL")


def test_merge_output_keeps_base_metadata(make_checkpoint, tmp_path, capsys):
    base_path, base = make_checkpoint("sd1")
    from safetensors.torch import save_file

    save_file(base, str(base_path), metadata={"note": "keep me"})
    lora = write_lora(tmp_path / "l.safetensors", spell(SD1_Q[0], adapter_tensors("lora", base[SD1_Q[1]].float())))
    out = tmp_path / "m.safetensors"
    assert _run(capsys, "merge", str(base_path), "--lora", str(lora), "--out", str(out))[0] == 0
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata() == {"note": "keep me"}
