"""``python -m lora_ext train`` on the demo model, end to end."""

from __future__ import annotations

import json

from safetensors import safe_open
from train_support import make_dataset

from lora_ext.cli import main

FAST = ["--preset", "fast-test", "--steps", "3", "--rank", "2", "--resolution", "64", "--seed", "3"]


def test_cli_trains_the_demo_model_end_to_end(tmp_path, capsys):
    make_dataset(tmp_path / "data", count=2)
    out = tmp_path / "Lora" / "toy.safetensors"
    code = main(
        [
            "train",
            "--model",
            "demo",
            "--dataset",
            str(tmp_path / "data"),
            "--out",
            str(out),
            *FAST,
            "trigger_word=toy",
            "flip_aug=true",
            "--save-config",
            str(tmp_path / "used.toml"),
        ]
    )
    assert code == 0
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
    config = json.loads(metadata["train_tools_config"])
    assert (config["max_steps"], config["rank"], config["flip_aug"], config["trigger_word"]) == (3, 2, True, "toy")
    assert metadata["ss_output_name"] == "toy" and metadata["ss_steps"] == "3"
    assert (tmp_path / "Lora" / "toy.json").is_file()
    # The working folder goes beside the dataset, not into the LoRA folder the WebUI lists (sub-folders are buttons).
    assert not [path for path in (tmp_path / "Lora").iterdir() if path.is_dir()]
    assert (tmp_path / "toy-training" / "loss.csv").is_file()
    assert "max_steps = 3" in (tmp_path / "used.toml").read_text()
    assert "saved" in capsys.readouterr().out


def test_cli_exits_1_when_images_were_skipped(tmp_path, capsys):
    make_dataset(tmp_path / "data", count=1)
    (tmp_path / "data" / "1_toy" / "bad.jpg").write_bytes(b"nope")
    code = main(
        [
            "train",
            "--model",
            "demo",
            "--dataset",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "o.safetensors"),
            *FAST,
            "--no-progress",
            "--work-dir",
            str(tmp_path / "runs" / "o"),
        ]
    )
    assert code == 1
    assert (tmp_path / "runs" / "o" / "loss.csv").is_file() and not (tmp_path / "o-training").exists()
    assert "bad.jpg" in capsys.readouterr().err


def test_cli_exits_2_on_bad_settings(tmp_path, capsys):
    make_dataset(tmp_path / "data", count=1)
    base = ["train", "--model", "demo", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "o.safetensors")]
    assert main([*base, "no_such_setting=1"]) == 2
    assert main([*base, "rank=0"]) == 2
    err = capsys.readouterr().err
    assert "no_such_setting" in err and "rank must be at least 1" in err


def test_a_kohya_config_file_is_read_and_what_is_not_used_is_said(tmp_path):
    from lora_ext.cli import build_parser
    from lora_ext.commands import train

    (tmp_path / "kohya.toml").write_text(
        'network_dim = 8\nnetwork_alpha = 4\nmax_train_epochs = 2\noutput_dir = "/elsewhere"\n', "utf-8"
    )
    args = build_parser().parse_args(
        ["train", "--model", "demo", "--dataset", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]
        + ["--config", str(tmp_path / "kohya.toml")]
    )
    said = []
    config = train.build_config(args, "sd1", warn=said.append)
    assert (config.rank, config.alpha, config.epochs) == (8, 4.0, 2)
    assert said == ["not used from kohya.toml: output_dir"]


def test_an_existing_lora_is_replaced_only_with_overwrite(tmp_path, capsys):
    make_dataset(tmp_path / "data", count=1)
    out = tmp_path / "Lora" / "kept.safetensors"
    out.parent.mkdir()
    out.write_bytes(b"a finished LoRA")
    args = ["train", "--model", "demo", "--dataset", str(tmp_path / "data"), "--out", str(out), *FAST]
    assert main(args) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("exists already (choose another --out, or pass --overwrite to replace it)")
    )
    assert out.read_bytes() == b"a finished LoRA"
    assert main([*args, "--overwrite"]) == 0 and out.read_bytes() != b"a finished LoRA"
