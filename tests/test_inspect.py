"""``python -m lora_ext inspect``: what it reports, in text and JSON."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from lora_files import adapter_tensors, spell, write_lora

from lora_ext.cli import main

METADATA = {
    "ss_base_model_version": "sd_v1",
    "ss_output_name": "inkstyle",
    "ss_network_module": "networks.lora",
    "ss_tag_frequency": {"10_ink": {"ink": 30, "1girl": 12, "sketch": 20}, "5_more": {"sketch": 15}},
    "modelspec.trigger_phrase": "inkwash",
    "modelspec.architecture": "stable-diffusion-v1/lora",
    "unrelated_key": "not shown",
}


def _file(tmp_path):
    state = {}
    for i in range(3):
        state.update(
            spell(
                f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn{1 + i % 2}_to_{'qkv'[i]}",
                adapter_tensors("lora", torch.zeros(32, 32), rank=8 if i else 4, seed=i),
            )
        )
    state.update(spell("lora_te_text_model_encoder_layers_0_mlp_fc1", adapter_tensors("loha", torch.zeros(64, 32))))
    state.update(spell("unet.down_blocks.0.attentions.0.proj_in", adapter_tensors("lora", torch.zeros(32, 32)), "peft"))
    state.update(
        spell("lora_unet_down_blocks_0_attentions_0_proj_out", adapter_tensors("dora_out", torch.zeros(32, 32)))
    )
    state["odd.key.nobody.reads"] = torch.zeros(3)
    state["bundle_emb.hero.string_to_param.*"] = torch.zeros(1, 32)
    return write_lora(tmp_path / "ink.safetensors", state, METADATA)


def test_inspect_json_reports_everything(tmp_path, capsys):
    path = _file(tmp_path)
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["base_model"] == "sd1" and info["base_model_evidence"] == "metadata"
    assert info["formats"] == {"lora": 4, "loha": 1, "lora+dora": 1}
    assert (info["unet_modules"], info["text_encoder_modules"]) == (5, 1)
    assert info["ranks"] == {"8": 2, "4": 4}
    assert info["alphas"]["4"] == 2
    assert info["key_styles"]["kohya"] > 0 and info["key_styles"]["diffusers"] == 3
    assert info["unmatched"]["count"] == 1 and info["unmatched"]["examples"] == ["odd.key.nobody.reads"]
    assert info["unmatched"]["styles"] == {"other": 1}
    assert info["bundled_embeddings"] == ["hero"]
    assert info["trigger_words"] == ["inkwash"]  # named by the author: no guess from the tags
    assert info["top_tags"] == [["sketch", 35], ["ink", 30], ["1girl", 12]]
    assert info["metadata"]["ss_output_name"] == "inkstyle" and "unrelated_key" not in info["metadata"]
    data = path.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    assert info["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["hashes"]["autov2"] == hashlib.sha256(data).hexdigest()[:10]
    assert info["hashes"]["autov3"] == info["hashes"]["addnet"] == hashlib.sha256(data[header:]).hexdigest()


def test_tensor_hash_ignores_metadata_edits(tmp_path, capsys):
    state = spell("lora_te_text_model_encoder_layers_0_mlp_fc1", adapter_tensors("lora", torch.zeros(64, 32)))
    hashes = []
    for note in ("one", "two"):
        path = write_lora(tmp_path / f"{note}.safetensors", state, {"ss_training_comment": note})
        main(["inspect", str(path), "--json"])
        hashes.append(json.loads(capsys.readouterr().out)["hashes"])
    assert hashes[0]["autov3"] == hashes[1]["autov3"] and hashes[0]["autov2"] != hashes[1]["autov2"]


def test_inspect_text_output_is_readable(tmp_path, capsys):
    assert main(["inspect", str(_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    for expected in (
        "base model:     sd1",
        "lora×4",
        "UNet 5, text encoder 1",
        "trigger words:  inkwash",
        "AutoV2",
        "ss_output_name: inkstyle",
        "unmatched keys: 1",
    ):
        assert expected in out, expected


@pytest.mark.parametrize(
    "content,suffix,words",
    [
        (b"\xff" * 4, ".safetensors", ["too short"]),
        (b"\x00\x10\x00\x00\x00\x00\x00\x00" + b"{}", ".safetensors", ["malformed"]),
        (b"PK\x03\x04 not a pickle", ".ckpt", ["legacy pickle"]),
    ],
)
def test_inspect_refuses_broken_and_pickle_files_in_one_line(tmp_path, capsys, content, suffix, words):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(word in err[0] for word in words), err


def test_legacy_pickles_are_never_opened_not_even_weights_only(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    plain = tmp_path / "old.pt"
    torch.save(
        spell("lora_te_text_model_encoder_layers_0_mlp_fc1", adapter_tensors("lora", torch.zeros(64, 32))), plain
    )
    torch.save({"x": Evil()}, tmp_path / "evil.ckpt")
    for path in (plain, tmp_path / "evil.ckpt"):
        assert main(["inspect", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "never loaded" in err[0], err
    assert not marker.exists()
    with pytest.raises(SystemExit):  # the old opt-in is gone
        main(["inspect", str(plain), "--allow-pickle"])


def test_trigger_words_come_from_the_activation_text_else_the_most_frequent_tags(tmp_path, capsys):
    many = {f"tag{i}": 100 - i for i in range(40)}
    path = write_lora(
        tmp_path / "many.safetensors",
        spell("lora_unet_down_blocks_0_attentions_0_proj_out", adapter_tensors("lora", torch.zeros(32, 32))),
        {"ss_base_model_version": "sd_v1", "ss_tag_frequency": {"10_x": many}},
    )
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trigger_words"] == ["tag0", "tag1", "tag2"]
    assert len(info["top_tags"]) == 8 and info["top_tags"][0] == ["tag0", 100]
    path.with_suffix(".json").write_text(json.dumps({"activation text": "mychar, red scarf"}), encoding="utf-8")
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "trigger words:  mychar, red scarf" in text and "top tags:       tag0 (100), tag1 (99)" in text
    assert "tag20" not in text
