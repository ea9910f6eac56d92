"""``<lora:…>`` tokens, block weights, presets, name resolution, and generation through the hosts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loader_helpers import all_roots, loader_for, snapshot
from lora_files import adapter_tensors, lora_for_model, spell, write_lora

from lora_ext.formats.keymap import keymap_for_parts
from lora_ext.host import GenerationRequest
from lora_ext.loading.prompt import LoraToken, block_weights, parse_prompt


@pytest.mark.parametrize(
    "token,expected",
    [
        ("<lora:cat:0.5>", LoraToken("cat", 0.5, None)),
        ("<lora:cat:0.5:0.8>", LoraToken("cat", 0.5, 0.8)),
        ("<lora:cat:0.5:0.8:4>", LoraToken("cat", 0.5, 0.8, 4)),
        ("<lora:cat:1:unet=0.3:dyn=2>", LoraToken("cat", 1.0, 0.3, 2)),
        ("<lora:cat:te=0.2:unet=0.7:lbw=INS>", LoraToken("cat", 0.2, 0.7, None, "INS")),
        (
            "<lora:sub/cat:1:lbw=1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1>",
            LoraToken("sub/cat", 1.0, None, None, "1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1"),
        ),
        ("<lyco:cat:0.9>", LoraToken("cat", 0.9)),
    ],
)
def test_token_forms_parse_like_a1111(token, expected):
    parsed = parse_prompt(f"a photo, {token}, best")
    assert parsed.specs == [expected] and not parsed.warnings
    assert parsed.prompt == "a photo, , best"
    assert expected.unet_multiplier == (expected.unet if expected.unet is not None else expected.te)


@pytest.mark.parametrize(
    "token,applied,message",
    [
        ("<lora:x:abc>", False, "'abc' is not a number"),
        ("<lora:x>", True, "no weight given"),
        ("<lora::1>", False, "no LoRA name"),
        ("<lora:x:1:0.5:two>", False, "not a whole number"),
    ],
)
def test_bad_tokens_become_warnings(token, applied, message):
    parsed = parse_prompt(f"x {token} <lora:good:1>")
    assert [spec.name for spec in parsed.specs] == (["x", "good"] if applied else ["good"])
    assert len(parsed.warnings) == 1 and message in parsed.warnings[0] and token in parsed.warnings[0]


@pytest.mark.parametrize(
    "family,values,checks",
    [
        ("sd1", "INS", {"BASE": 1, "IN01": 1, "IN04": 1, "IN05": 0, "OUT11": 0, "IN00": 0}),
        ("sd1", ",".join(["0.5"] * 26), {"IN00": 0.5, "IN03": 0.5, "OUT11": 0.5}),
        ("sd2", "OUTS", {"BASE": 1, "OUT06": 0, "OUT07": 1, "OUT11": 1, "M00": 0}),
        ("sdxl", "1,0,0,0,0,1,0,0,0,0,0,0.25", {"BASE": 1, "M00": 1, "OUT05": 0.25, "IN04": 0}),
        ("sdxl", ",".join(["2"] * 20), {"IN00": 2, "OUT08": 2}),
        ("sdxl", "MIDD", {"IN07": 1, "M00": 1, "OUT02": 1, "OUT03": 0}),
    ],
)
def test_block_weight_lists_and_presets(family, values, checks):
    weights = block_weights(values, family)
    assert weights is not None
    assert {block: weights.ratio(block) for block in checks} == checks
    assert weights.ratio(None) == 1.0


def test_block_weight_lengths_must_suit_the_model_and_user_presets_are_read(tmp_path):
    warnings: list[str] = []
    assert block_weights(",".join(["1"] * 17), "sdxl", warnings=warnings) is None
    assert block_weights("NOPE", "sd1", warnings=warnings) is None
    assert len(warnings) == 2 and "12 or 20" in warnings[0]
    presets = tmp_path / "lbw.txt"
    presets.write_text("# mine\nHALFOUT:1,0,0,0,0,0,0,0,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5\nBROKEN:a,b\n")
    from lora_ext.loading.prompt import read_user_presets

    user = read_user_presets(presets)
    assert set(user) == {"HALFOUT"}
    assert block_weights("HALFOUT", "sd1", user).ratio("OUT09") == 0.5


def test_block_weights_scale_only_their_blocks(make_ldm_host):
    host = make_ldm_host("sd1")
    unet = host.parts().unet
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=4))
    before = snapshot(*all_roots(host))
    loader = loader_for(host)
    loader.prompt_hook("<lora:a:1:lbw=INS>")
    after = snapshot(*all_roots(host))
    changed = {k.split(":", 1)[1] for k, v in after.items() if v != before[k]}
    assert any(k.startswith("input_blocks.1.1.") for k in changed) and any(
        k.startswith("input_blocks.4.1.") for k in changed
    )
    assert not any(k.startswith(("input_blocks.5.", "middle_block.", "output_blocks.")) for k in changed)
    assert any(k.startswith("transformer.text_model") for k in changed)  # BASE = 1
    q = unet.get_submodule("input_blocks.1.1.transformer_blocks.0.attn1.to_q").weight
    half_lbw = ",".join(["0.5"] * 17)
    loader.prompt_hook(f"<lora:a:1:lbw={half_lbw}>")
    by_lbw = q.detach().clone()
    loader.prompt_hook("<lora:a:1:0.5>")
    assert torch.equal(q.detach(), by_lbw)


def test_names_resolve_by_alias_stem_and_subfolder(make_ldm_host):
    host = make_ldm_host("sd1")
    state = spell("lora_unet_input_blocks_1_1_proj_in", adapter_tensors("lora", torch.zeros(32, 32, 1, 1)))
    write_lora(host.lora_dir / "styles" / "ink_v2.safetensors", state, {"ss_output_name": "InkStyle"})
    write_lora(host.lora_dir / "plain.safetensors", state)
    loader = loader_for(host)
    for name in ("ink_v2", "InkStyle", "styles/ink_v2", "styles\\ink_v2", "inkstyle", "plain"):
        assert loader.resolve(name) is not None, name
    assert loader.resolve("styles/plain") is None
    entries = {e.relative: e for e in loader.available()}
    assert entries["styles/ink_v2"].alias == "InkStyle" and entries["plain"].alias == "plain"
    write_lora(host.lora_dir / "late.safetensors", state)  # added after the first scan: found by rescanning
    assert loader.resolve("late") is not None


def test_prompt_hook_warns_and_carries_on(make_ldm_host):
    host = make_ldm_host("sd1")
    write_lora(
        host.lora_dir / "good.safetensors",
        spell("lora_unet_input_blocks_1_1_proj_in", adapter_tensors("lora", torch.zeros(32, 32, 1, 1))),
    )
    seen: list[str] = []
    loader = loader_for(host, warn=seen.append)
    prompt = loader.prompt_hook("cat <lora:missing:1> <lora:good:x> <lora:good:0.7>")
    assert prompt.split() == ["cat"]
    assert any("not found: missing" in w for w in seen) and any("'x' is not a number" in w for w in seen)
    assert loader.last_report.files[-1].applied and loader.last_report.infotext().startswith("good: ")


def _image(host, prompt: str) -> np.ndarray:
    request = GenerationRequest(prompt=prompt, seed=5, width=64, height=64, steps=2)
    return np.asarray(host.generate(request)[0], dtype=np.int16)


@pytest.mark.parametrize("kind", ["ldm", "diffusers"])
def test_generation_honours_tokens_and_restores_without_them(make_ldm_host, make_standalone_host, kind):
    host = make_ldm_host("sd1") if kind == "ldm" else make_standalone_host("sd1")
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "strong.safetensors", lora_for_model(keymap, seed=9, rank=8))
    loader_for(host)
    before = snapshot(*all_roots(host))
    plain = _image(host, "a cat")
    with_lora = _image(host, "a cat <lora:strong:1>")
    assert np.abs(plain - with_lora).max() > 0
    again = _image(host, "a cat <lora:nothing_here:1>")
    assert np.array_equal(plain, again)
    assert snapshot(*all_roots(host)) == before


def test_x_values_take_the_tokens_x_and_offsets():
    spec = parse_prompt("<lora:a:1:lbw=LIST:x=0.5>").specs[0]
    assert spec.x == 0.5 and spec.lbw == "LIST"
    values = ",".join(["X", "x+0.25", "X - 0.5", "0"] + ["1"] * 13)
    weights = block_weights(values, "sd1", x=spec.x)
    assert weights is not None and not weights.random
    assert [weights.ratio(b) for b in ("BASE", "IN01", "IN02", "IN04", "IN05")] == [0.5, 0.75, 0.0, 0.0, 1.0]


def test_r_and_u_values_are_drawn_in_their_ranges_and_mark_the_weights_random(tmp_path):
    import random as random_module

    from lora_ext.loading.prompt import read_user_presets

    presets = tmp_path / "lbw.txt"
    presets.write_text("RANDOMIN:1," + ",".join(["R"] * 6) + "," + ",".join(["U"] * 10) + "\nBAD:1,Q\n")
    user = read_user_presets(presets)
    assert set(user) == {"RANDOMIN"}
    draws = [block_weights("RANDOMIN", "sd1", user, draw=random_module.Random(seed)) for seed in range(20)]
    assert all(w is not None and w.random for w in draws)
    r_values = [w.ratio("IN01") for w in draws]
    u_values = [w.ratio("OUT11") for w in draws]
    assert all(0 <= v <= 1 for v in r_values) and all(-0.5 <= v <= 1.5 for v in u_values)
    assert len(set(r_values)) > 10 and min(u_values) < 0 < 1 < max(u_values)  # really drawn, over the full range


def test_unknown_block_values_are_ignored_with_a_warning():
    warnings: list[str] = []
    assert block_weights(",".join(["1"] * 16 + ["Q"]), "sd1", warnings=warnings) is None
    assert "R, U, X" in warnings[0]


def test_random_block_weights_are_drawn_again_for_every_generation(make_ldm_host):
    host = make_ldm_host("sd1")
    unet = host.parts().unet
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=4))
    loader = loader_for(host)
    q = unet.get_submodule("input_blocks.1.1.transformer_blocks.0.attn1.to_q").weight
    prompt = "<lora:a:1:lbw=" + ",".join(["1"] + ["R"] * 16) + ">"
    seen = set()
    for _ in range(4):
        loader.prompt_hook(prompt)
        assert not loader.last_report.unchanged and any(
            "random block weights" in w for w in loader.last_report.warnings
        )
        seen.add(q.detach().sum().item())
    assert len(seen) > 1


NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(
    "form",
    ["<lora:x:{}>", "<lora:x:1:{}>", "<lora:x:te={}>", "<lora:x:1:unet={}>", "<lora:x:1:x={}>", "<lora:x:1:dyn={}>"],
)
def test_non_finite_weights_are_refused_with_the_same_warning_as_abc(form, value):
    like_abc = parse_prompt(f"{form.format('abc')} <lora:good:1>").warnings
    parsed = parse_prompt(f"{form.format(value)} <lora:good:1>")
    assert [spec.name for spec in parsed.specs] == ["good"]
    assert parsed.warnings == [warning.replace("abc", value) for warning in like_abc]


@pytest.mark.parametrize("value", [*NON_FINITE, "X+" + "9" * 400])
def test_non_finite_block_weights_are_refused_like_abc_and_never_become_a_preset(tmp_path, value):
    from lora_ext.loading.prompt import read_user_presets

    like_abc: list[str] = []
    warnings: list[str] = []
    assert block_weights(",".join(["1"] * 16 + ["abc"]), "sd1", warnings=like_abc) is None
    assert block_weights(",".join(["1"] * 16 + [value]), "sd1", warnings=warnings) is None
    assert warnings == [warning.replace("abc", value) for warning in like_abc]
    presets = tmp_path / "lbw.txt"
    presets.write_text("BROKEN:" + ",".join(["1"] * 16 + [value]) + "\n")
    assert read_user_presets(presets) == {}


def test_non_finite_weights_leave_every_weight_untouched(make_ldm_host):
    host = make_ldm_host("sd1")
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=4))
    seen: list[str] = []
    loader = loader_for(host, warn=seen.append)
    before = snapshot(*all_roots(host))
    tokens = ["<lora:a:nan>", "<lora:a:inf>", "<lora:a:-inf>", "<lora:a:1e309>", "<lora:a:te=inf>"]
    tokens += ["<lora:a:1:unet=nan>", "<lora:a:1:dyn=inf>", "<lora:a:1:x=nan:lbw=X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X>"]
    tokens += ["<lora:a:1e200:lbw=" + ",".join(["1e200"] * 17) + ">"]  # finite values whose product is not
    for token in tokens:
        seen.clear()
        assert loader.prompt_hook(f"cat {token}") == "cat "
        assert snapshot(*all_roots(host)) == before, token
        assert len(seen) == 1 and ("is not a" in seen[0] or "too large" in seen[0]), (token, seen)


def test_a_non_finite_block_weight_is_ignored_exactly_like_abc(make_ldm_host):
    host = make_ldm_host("sd1")
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=4))
    seen: list[str] = []
    loader = loader_for(host, warn=seen.append)
    ones = ",".join(["1"] * 16)
    loader.prompt_hook(f"<lora:a:0.5:lbw={ones},abc>")
    like_abc, abc_warnings = snapshot(*all_roots(host)), list(seen)
    for value in ("nan", "inf", "1e309"):
        loader.restore()
        seen.clear()
        loader.prompt_hook(f"<lora:a:0.5:lbw={ones},{value}>")
        assert snapshot(*all_roots(host)) == like_abc
        assert seen == [warning.replace("abc", value) for warning in abc_warnings]
