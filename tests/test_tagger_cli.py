"""``python -m lora_ext tag``: options, exit codes 0/1/2, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from onnx_tagger_fixture import build_tiny_tagger
from PIL import Image

import lora_ext.cli as cli

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def only_the_tag_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other sub-commands are built elsewhere; this suite exercises the tag command only.
    monkeypatch.setattr(cli, "COMMANDS", ("tag",))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_tagger(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_tagger(tmp_path_factory.mktemp("fixed"), dynamic_batch=False)


def images(folder: Path, **colours: tuple[int, int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in colours.items():
        Image.new("RGB", (36, 36), rgb).save(folder / f"{name}.png")
    return folder


def tag(folder: Path, model: Path | str, *options: str) -> int:
    return cli.main(["tag", str(folder), "--model", str(model), *options])


def caption(folder: Path, name: str) -> list[str]:
    return (folder / f"{name}.txt").read_text(encoding="utf-8").split(", ")


def test_all_images_tagged_exits_0(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = images(tmp_path / "data", red=RED, blue=BLUE)
    assert tag(folder, model) == 0
    assert "red theme" in caption(folder, "red") and "hatsune miku" in caption(folder, "blue")
    assert "tagged 2 image(s)" in capsys.readouterr().out


def test_skipped_images_exit_1_and_are_named_with_a_reason(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = images(tmp_path / "data", red=RED)
    (folder / "zero.png").write_bytes(b"")
    assert tag(folder, model) == 1
    err = capsys.readouterr().err
    assert f"skipped: {folder / 'zero.png'}: empty file" in err
    assert "Traceback" not in err
    assert (folder / "red.txt").exists() and not (folder / "zero.txt").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tag", "{missing}", "--model", "{model}"], "is not a folder"),
        (["tag", "{data}", "--model", "{data}/nowhere"], "unknown tagger model"),
        (["tag", "{data}", "--model", "wd-vit-tagger-v3", "--model-dir", "{data}/models"], "could not be reached"),
    ],
    ids=["missing-folder", "missing-model-folder", "model-not-downloaded-offline"],
)
def test_fatal_errors_exit_2_with_one_line(
    tmp_path: Path,
    model: Path,
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def offline(*_args: object, **kwargs: object) -> str:
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        raise huggingface_hub.errors.OfflineModeIsEnabled("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    data = images(tmp_path / "data", red=RED)
    filled = [a.format(missing=tmp_path / "missing", model=model, data=data) for a in arguments]
    assert cli.main(filled) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    "bad", [["--general-threshold", "1.5"], ["--batch-size", "0"], ["--existing", "merge"], ["--threads", "x"]]
)
def test_bad_option_values_exit_2(tmp_path: Path, model: Path, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        tag(images(tmp_path / "data", red=RED), model, *bad)
    assert caught.value.code == 2


def test_thresholds(tmp_path: Path, model: Path) -> None:
    default = images(tmp_path / "a", white=WHITE)
    tag(default, model)
    assert "smile" in caption(default, "white") and "kirisame marisa" not in caption(default, "white")
    strict = images(tmp_path / "b", white=WHITE)
    tag(strict, model, "--general-threshold", "0.45", "--character-threshold", "0.7")
    assert "smile" not in caption(strict, "white") and "kirisame marisa" in caption(strict, "white")


def test_mcut(tmp_path: Path, model: Path) -> None:
    folder = images(tmp_path / "data", white=WHITE)
    tag(folder, model, "--mcut")
    # White: general scores .953 .881 | .5 .378 …; characters .881 | .731: MCut keeps what is above each gap.
    assert sorted(caption(folder, "white")) == ["1girl", "hatsune miku", "white background"]


@pytest.mark.parametrize("flag", ["--general-mcut", "--character-mcut"])
def test_per_category_mcut(tmp_path: Path, model: Path, flag: str) -> None:
    folder = images(tmp_path / "data", white=WHITE)
    tag(folder, model, flag, "--character-threshold", "0.5")
    tags = caption(folder, "white")
    assert ("long hair" in tags) is (flag == "--character-mcut")
    assert ("kirisame marisa" in tags) is (flag == "--general-mcut")


@pytest.mark.parametrize(
    ("mode", "first", "has_mine"),
    [
        ("skip", "mine", True),
        ("overwrite", "white background", False),
        ("append", "mine", True),
        ("prepend", "white background", True),
    ],
)
def test_existing_modes(tmp_path: Path, model: Path, mode: str, first: str, has_mine: bool) -> None:
    folder = images(tmp_path / "data", white=WHITE)
    (folder / "white.txt").write_text("mine")
    tag(folder, model, "--existing", mode)
    tags = caption(folder, "white")
    assert tags[0] == first and ("mine" in tags) is has_mine
    assert (folder / "white.txt.000.bak").exists() is (mode != "skip")


def test_no_backup(tmp_path: Path, model: Path) -> None:
    folder = images(tmp_path / "data", white=WHITE)
    (folder / "white.txt").write_text("mine")
    tag(folder, model, "--existing", "overwrite", "--no-backup")
    assert not list(folder.glob("*.bak"))


def test_exclude_and_add(tmp_path: Path, model: Path) -> None:
    folder = images(tmp_path / "data", white=WHITE)
    tag(folder, model, "--exclude", "white_background, 1girl", "--add", "ohwx, smile", "--add", "style")
    tags = caption(folder, "white")
    assert tags[:3] == ["ohwx", "smile", "style"] and tags.count("smile") == 1
    assert "white background" not in tags and "1girl" not in tags


def test_ordering_and_naming_options(tmp_path: Path, model: Path) -> None:
    folder = images(tmp_path / "data", white=WHITE)
    tag(folder, model, "--max-tags", "2", "--characters-first", "--rating", "first", "--keep-underscores")
    assert caption(folder, "white") == ["sensitive", "hatsune_miku", "white_background"]


def test_batch_size_on_a_fixed_batch_model_warns_once(
    tmp_path: Path, fixed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = images(tmp_path / "data", red=RED, blue=BLUE, white=WHITE)
    assert tag(folder, fixed_model, "--batch-size", "8", "--threads", "1", "--workers", "2") == 0
    assert capsys.readouterr().err.count("fixed to 1") == 1
    assert all((folder / f"{name}.txt").exists() for name in ("red", "blue", "white"))


def test_recursive(tmp_path: Path, model: Path) -> None:
    folder = images(tmp_path / "data", top=RED)
    images(folder / "nested", deep=BLUE)
    tag(folder, model)
    assert not (folder / "nested" / "deep.txt").exists()
    tag(folder, model, "--recursive")
    assert "blue theme" in caption(folder / "nested", "deep")


def test_registry_name_is_found_in_model_dir(tmp_path: Path) -> None:
    build_tiny_tagger(tmp_path / "models" / "wd-convnext-tagger-v3")
    folder = images(tmp_path / "data", red=RED)
    assert tag(folder, "wd-convnext-tagger-v3", "--model-dir", str(tmp_path / "models")) == 0


def test_module_entry_point_runs_without_a_traceback(tmp_path: Path, model: Path) -> None:
    folder = images(tmp_path / "data", red=RED)
    (folder / "bad.png").write_text("text")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "lora_ext", "tag", str(folder), "--model", str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "skipped:" in result.stderr and "Traceback" not in result.stderr


def test_cli_choices_match_the_tagger_modes() -> None:
    from lora_ext.commands.tag import EXISTING_CHOICES
    from lora_ext.tagger import EXISTING_MODES

    assert EXISTING_CHOICES == EXISTING_MODES


def test_help_does_not_import_numpy_or_pil() -> None:
    code = "import sys, lora_ext.commands.tag as t; print(sorted(m for m in ('numpy', 'PIL', 'onnxruntime') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_a_folder_name_in_the_tagger_folder_is_found_as_the_ui_lists_it(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lora_ext.tagger.models import model_choices

    tagger_dir = tmp_path / "wd14_tagger"
    build_tiny_tagger(tagger_dir / "tiny-tagger")
    monkeypatch.chdir(tmp_path)  # "tiny-tagger" is no folder here: only the tagger folder has it
    assert model_choices(tagger_dir)[0] == "tiny-tagger"
    folder = images(tmp_path / "data", red=RED)
    assert tag(folder, "tiny-tagger", "--model-dir", str(tagger_dir)) == 0
    assert "red theme" in caption(folder, "red")


def test_without_model_the_first_local_model_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tagger_dir = tmp_path / "wd14_tagger"
    build_tiny_tagger(tagger_dir / "tiny-tagger")
    monkeypatch.setenv("TRAIN_TOOLS_TAGGER_DIR", str(tagger_dir))
    folder = images(tmp_path / "data", blue=BLUE)
    assert cli.main(["tag", str(folder)]) == 0
    assert "hatsune miku" in caption(folder, "blue")
