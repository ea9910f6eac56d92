"""The patcher through the loader: exact restore, incremental re-merge, caching, refusals."""

from __future__ import annotations

import os
import time

import pytest
import torch
from loader_helpers import all_roots, loader_for, snapshot
from lora_files import adapter_tensors, lora_for_model, spell, write_lora

from lora_ext.formats.keymap import keymap_for_parts
from lora_ext.loading.cache import LoraCache
from lora_ext.loading.prompt import LoraToken


def _host(make_ldm_host, make_standalone_host, kind: str):
    naming, layout = kind.split("-")
    return make_ldm_host(layout) if naming == "ldm" else make_standalone_host(layout)


@pytest.mark.parametrize("kind", ["ldm-sd1", "ldm-sd2", "ldm-sdxl", "diffusers-sd1", "diffusers-sdxl"])
def test_apply_then_restore_leaves_every_parameter_bit_identical(make_ldm_host, make_standalone_host, kind):
    host = _host(make_ldm_host, make_standalone_host, kind)
    if kind.startswith("ldm"):
        host.sd_model.half()
    before = snapshot(*all_roots(host))
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap, seed=1))
    write_lora(host.lora_dir / "b.safetensors", lora_for_model(keymap, seed=2, text_encoder=False))
    loader = loader_for(host)
    report = loader.apply([LoraToken("a", te=0.7, unet=1.1), LoraToken("b", te=1.0, unet=-0.4)])
    assert all(f.applied for f in report.files) and not report.warnings
    changed = {k for k, v in snapshot(*all_roots(host)).items() if before[k] != v}
    assert len(changed) >= report.files[0].matched * 0.9
    loader.apply([LoraToken("b", unet=0.3)])
    assert loader.restore() > 0
    assert snapshot(*all_roots(host)) == before


def test_two_loras_add_up_with_one_rounding(make_ldm_host):
    host = make_ldm_host("sd1")
    host.sd_model.half()
    module = host.parts().unet.get_submodule("input_blocks.1.1.transformer_blocks.0.attn2.to_v")
    prefix = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_v"
    w = module.weight.detach().clone()
    first, second = adapter_tensors("lora", w.float(), seed=1), adapter_tensors("loha", w.float(), seed=2)
    write_lora(host.lora_dir / "one.safetensors", spell(prefix, first))
    write_lora(host.lora_dir / "two.safetensors", spell(prefix, second))
    loader_for(host).apply([LoraToken("one", unet=0.8), LoraToken("two", unet=0.5)])
    lora = 0.8 * float(first["alpha"]) / 4 * first["lora_up.weight"] @ first["lora_down.weight"]
    loha = (
        0.5
        * float(second["alpha"])
        / 4
        * (second["hada_w1_a"] @ second["hada_w1_b"])
        * (second["hada_w2_a"] @ second["hada_w2_b"])
    )
    exact = w.double() + lora.double() + loha.double()
    assert torch.equal(module.weight.detach(), (w.float() + lora + loha).half())
    assert (module.weight.detach().double() - exact).abs().max() <= exact.abs().max() * 2**-11  # ≤ half an fp16 ulp


def _versions(module: torch.nn.Module) -> dict[str, int]:
    return {name: p._version for name, p in module.named_parameters()}


def test_only_modules_whose_patch_set_changed_are_re_merged(make_ldm_host):
    host = make_ldm_host("sd1")
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap, seed=1))
    loader = loader_for(host)
    first = loader.apply([LoraToken("a", te=1.0, unet=1.0)])
    unet_versions = _versions(host.parts().unet)
    second = loader.apply([LoraToken("a", te=0.5, unet=1.0)])
    te_targets = sum(1 for t in keymap.targets() if t.is_text_encoder and len(t.shape) >= 2)
    assert second.stats.merged == te_targets and second.stats.unchanged == first.stats.merged - te_targets
    assert _versions(host.parts().unet) == unet_versions


def test_same_set_again_touches_nothing_and_is_fast(make_ldm_host):
    host = make_ldm_host("sd1")
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=1))
    loader = loader_for(host)
    specs = [LoraToken("a", te=0.9)]
    loader.apply(specs)
    versions = {k: _versions(r) for k, r in enumerate(all_roots(host))}
    started = time.perf_counter()
    again = loader.apply(specs)
    elapsed = time.perf_counter() - started
    assert again.unchanged and again.stats.merged == 0
    assert {k: _versions(r) for k, r in enumerate(all_roots(host))} == versions
    assert elapsed < 0.05


def test_switching_loras_restores_modules_the_new_one_does_not_touch(make_ldm_host):
    host = make_ldm_host("sd1")
    keymap = keymap_for_parts(host.parts())
    before = snapshot(*all_roots(host))
    write_lora(host.lora_dir / "unet.safetensors", lora_for_model(keymap, seed=1, text_encoder=False))
    write_lora(host.lora_dir / "te.safetensors", lora_for_model(keymap, seed=2, unet=False))
    loader = loader_for(host)
    loader.apply([LoraToken("unet")])
    switched = loader.apply([LoraToken("te")])
    assert switched.stats.restored > 0
    now = snapshot(*all_roots(host))
    assert all(now[k] == v for k, v in before.items() if k.startswith("0:"))  # UNet back to the original
    assert any(now[k] != v for k, v in before.items() if k.startswith("1:"))


def test_a_changed_file_is_reloaded_and_the_cache_is_an_lru(make_ldm_host):
    host = make_ldm_host("sd1")
    module = host.parts().unet.get_submodule("input_blocks.1.1.proj_in")
    prefix = "lora_unet_input_blocks_1_1_proj_in"
    path = host.lora_dir / "x.safetensors"
    write_lora(path, spell(prefix, adapter_tensors("lora", module.weight.detach(), seed=1)))
    write_lora(host.lora_dir / "y.safetensors", spell(prefix, adapter_tensors("lora", module.weight.detach(), seed=3)))
    cache = LoraCache(max_items=1)
    loader = loader_for(host, cache=cache)
    loader.apply([LoraToken("x")])
    first = module.weight.detach().clone()
    write_lora(path, spell(prefix, adapter_tensors("lora", module.weight.detach(), seed=2)))
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    loader.apply([LoraToken("x")])
    assert cache.loads == 2 and not torch.equal(module.weight.detach(), first)
    loader.apply([LoraToken("y")])
    loader.apply([LoraToken("x")])
    assert cache.loads == 4 and len(cache) == 1  # size 1: switching back re-reads
    cache.set_limit(5)
    loader.apply([LoraToken("y")])
    loader.apply([LoraToken("x")])
    assert cache.loads == 5


def test_non_finite_tensors_are_rejected_with_a_warning(make_ldm_host):
    host = make_ldm_host("sd1")
    before = snapshot(*all_roots(host))
    tensors = adapter_tensors("lora", torch.zeros(32, 32))
    tensors["lora_up.weight"][0, 0] = float("nan")
    write_lora(
        host.lora_dir / "nan.safetensors", spell("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q", tensors)
    )
    report = loader_for(host).apply([LoraToken("nan")])
    assert not report.files[0].applied and any("NaN" in w for w in report.warnings)
    assert snapshot(*all_roots(host)) == before


@pytest.mark.parametrize("metadata", [{}, {"ss_base_model_version": "sd_v1"}])
def test_an_sd1_lora_on_sdxl_is_skipped_with_a_clear_warning(make_ldm_host, metadata):
    sd1 = make_ldm_host("sd1")
    state = lora_for_model(keymap_for_parts(sd1.parts()), seed=1)
    host = make_ldm_host("sdxl")
    before = snapshot(*all_roots(host))
    write_lora(host.lora_dir / "old.safetensors", state, metadata)
    report = loader_for(host).apply([LoraToken("old")])
    assert report.files[0].skipped
    assert any("SD1" in w and "SDXL" in w for w in report.warnings)
    assert snapshot(*all_roots(host)) == before


def test_unmatched_keys_are_counted_and_reported_with_examples(make_ldm_host):
    host = make_ldm_host("sd1")
    good = spell("lora_unet_input_blocks_1_1_proj_in", adapter_tensors("lora", torch.zeros(32, 32, 1, 1)))
    bad = spell("lora_unet_not_a_block_7", adapter_tensors("lora", torch.zeros(32, 32)))
    write_lora(host.lora_dir / "mixed.safetensors", {**good, **bad, "weird_key": torch.zeros(2)})
    report = loader_for(host).apply([LoraToken("mixed")])
    file = report.files[0]
    assert file.applied and file.matched == 1
    assert set(file.unmatched_keys) == {*bad, "weird_key"}
    assert any("4 keys unmatched" in w and "lora_unet_not_a_block_7" in w for w in report.warnings)


def test_weights_reloaded_behind_our_back_invalidate_the_backup(make_ldm_host):
    host = make_ldm_host("sd1")
    unet = host.parts().unet
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap, seed=1, text_encoder=False))
    loader = loader_for(host)
    loader.apply([LoraToken("a")])
    other = {k: v + 0.01 if v.is_floating_point() else v.clone() for k, v in unet.state_dict().items()}
    unet.load_state_dict(other)  # A1111 loading another checkpoint into the same modules
    loader.apply([LoraToken("a", unet=0.5)])
    loader.restore()
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in other.items())


def test_a_new_model_object_gets_fresh_backups_and_the_old_one_is_restored(make_ldm_host):
    first, second = make_ldm_host("sd1"), make_ldm_host("sd1")
    original = snapshot(*all_roots(first))
    current = {"host": first}
    from lora_ext.loading.loader import NetworkLoader

    loader = NetworkLoader(lambda: current["host"].parts(), [first.lora_dir])
    first.lora_dir.mkdir(parents=True, exist_ok=True)
    write_lora(first.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(first.parts()), seed=1))
    loader.apply([LoraToken("a")])
    current["host"] = second
    second_before = snapshot(*all_roots(second))
    loader.apply([LoraToken("a")])
    assert snapshot(*all_roots(first)) == original
    loader.restore()
    assert snapshot(*all_roots(second)) == second_before


def test_bundled_embeddings_are_reported_and_ignored(make_ldm_host):
    host = make_ldm_host("sd1")
    state = spell("lora_unet_input_blocks_1_1_proj_in", adapter_tensors("lora", torch.zeros(32, 32, 1, 1)))
    state["bundle_emb.mychar.string_to_param.*"] = torch.randn(2, 32)
    write_lora(host.lora_dir / "b.safetensors", state)
    report = loader_for(host).apply([LoraToken("b")])
    assert report.files[0].applied and report.files[0].bundled_embeddings == ["mychar"]
    assert any("mychar" in w for w in report.warnings) and not report.files[0].unmatched_keys


def test_a_weight_moved_between_devices_keeps_its_backup(make_ldm_host):
    """lowvram moves modules (new storage, same values): still ours, so restore must still happen."""
    host = make_ldm_host("sd1")
    module = host.parts().unet.get_submodule("input_blocks.1.1.proj_in")
    original = module.weight.detach().clone()
    write_lora(
        host.lora_dir / "x.safetensors", spell("lora_unet_input_blocks_1_1_proj_in", adapter_tensors("lora", original))
    )
    loader = loader_for(host)
    loader.apply([LoraToken("x")])
    patched = module.weight.detach().clone()
    module.weight.data = module.weight.data.clone()  # what Module.to() does to each parameter
    again = loader.apply([LoraToken("x")])
    assert again.stats.dropped == 0 and torch.equal(module.weight.detach(), patched)
    loader.restore()
    assert torch.equal(module.weight.detach(), original)


def test_backups_outlive_a_restore_and_the_next_lora_merges_from_them(make_ldm_host):
    host = make_ldm_host("sd1")
    host.sd_model.half()
    before = snapshot(*all_roots(host))
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap, seed=1))
    write_lora(host.lora_dir / "b.safetensors", lora_for_model(keymap, seed=2))
    loader = loader_for(host)
    first = loader.apply([LoraToken("b")])
    b_alone = snapshot(*all_roots(host))
    loader.restore()
    assert snapshot(*all_roots(host)) == before and loader.patches.backed_up == first.stats.backed_up > 0
    sizes = {f"{i}:{n}": p.numel() for i, r in enumerate(all_roots(host)) for n, p in r.named_parameters()}
    changed = [name for name, digest in b_alone.items() if before[name] != digest]
    assert loader.patches.backup_bytes == 2 * sum(sizes[name] for name in changed)  # fp16: exactly what was touched
    assert len(loader.patches) == 0  # nothing patched, backups kept
    loader.apply([LoraToken("a")])
    again = loader.apply([LoraToken("b")])
    assert again.stats.backed_up == 0 and again.stats.merged == first.stats.merged
    assert snapshot(*all_roots(host)) == b_alone  # merged from the kept backups: same bits as the first time
    assert loader.restore(release=True) > 0 and loader.patches.backed_up == 0
    assert snapshot(*all_roots(host)) == before


def test_without_keep_backups_a_restore_frees_them(make_ldm_host):
    host = make_ldm_host("sd1")
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=1))
    loader = loader_for(host, keep_backups=False)
    taken = loader.apply([LoraToken("a")]).stats.backed_up
    loader.restore()
    assert taken > 0 and loader.patches.backed_up == 0
    assert loader.apply([LoraToken("a")]).stats.backed_up == taken


def test_a_kept_backup_is_dropped_when_new_weights_are_loaded_after_a_restore(make_ldm_host):
    """Weights replaced while no LoRA is applied: the kept backup is stale and must never be written back."""
    host = make_ldm_host("sd1")
    unet = host.parts().unet
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=1))
    loader = loader_for(host)
    loader.apply([LoraToken("a")])
    loader.restore()
    other = {k: v + 0.01 if v.is_floating_point() else v.clone() for k, v in unet.state_dict().items()}
    unet.load_state_dict(other)
    report = loader.apply([LoraToken("a")])
    assert report.stats.dropped > 0 and report.stats.backed_up == report.stats.dropped
    loader.restore()
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in other.items())


def test_a_file_is_hashed_only_when_the_infotext_asks_and_then_once(make_ldm_host, monkeypatch):
    from lora_ext.formats.hashes import lora_short_hash

    host = make_ldm_host("sd1")
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap_for_parts(host.parts()), seed=1))
    calls = []
    loader = loader_for(host, lora_hash=lambda *args: calls.append(args) or lora_short_hash(*args))
    report = loader.apply([LoraToken("a")])
    assert report.files[0].applied and calls == []
    first = report.infotext()
    assert first.startswith("a: ") and len(calls) == 1
    loader.apply([LoraToken("a", unet=0.5)])
    assert loader.last_report.infotext() == first and len(calls) == 1


def test_a_file_deleted_after_apply_is_left_out_of_the_infotext(make_ldm_host):
    host = make_ldm_host("sd1")
    keymap = keymap_for_parts(host.parts())
    write_lora(host.lora_dir / "a.safetensors", lora_for_model(keymap, seed=1))
    write_lora(host.lora_dir / "b.safetensors", lora_for_model(keymap, seed=2, text_encoder=False))
    report = loader_for(host).apply([LoraToken("a"), LoraToken("b")])
    (host.lora_dir / "a.safetensors").unlink()
    assert report.infotext().startswith("b: ") and "a:" not in report.infotext()
