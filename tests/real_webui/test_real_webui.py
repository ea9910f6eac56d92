"""Train Tools in a real, running WebUI (A1111, Forge, reForge, Neo) with an SD1 checkpoint: its contract holds, our
``<lora:…>`` equals the built-in's image, removal and training leave the model bit-identical, nothing of ours logs a
traceback, a failing loader still gives the user the built-in's LoRA, and a replaced file is seen at once."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from real_webui.client import HTTPError, max_difference
from real_webui.loras import write_random_lora

PREFIX = "tt_real_"  # every file these tests write into the WebUI's Lora folder
OURS, BUILTIN = "Train Tools", "Built-in"
# token variants, each compared with the built-in's image
TOKENS = ["<lora:{n}:0.8>", "<lora:{n}:0.8:0.3>", "<lora:{n}:1:unet=0>", "<lora:{n}:0:0.8>", "<lora:{h}:0.7>"]


@pytest.fixture(scope="module")
def files(lora_dir):
    names = {"n": f"{PREFIX}lora", "h": f"{PREFIX}loha"}
    write_random_lora(lora_dir / f"{names['n']}.safetensors", seed=1)
    write_random_lora(lora_dir / f"{names['h']}.safetensors", seed=2, kind="loha")
    yield names
    for path in lora_dir.glob(f"{PREFIX}*"):
        path.unlink()


def _cycle(webui, names) -> None:
    """One LoRA generation and one without (Neo changes the model's requires_grad flags at its first LoRA)."""
    webui.txt2img("a cat " + TOKENS[0].format(**names))
    webui.txt2img("a cat")


def _ours_traceback(log: str) -> list[str]:
    blocks = re.split(r"(?=Traceback \(most recent call last\))", log)
    return [block[:2000] for block in blocks[1:] if "lora_ext" in block or "train_tools" in block]


def test_the_webui_keeps_the_contract_our_code_relies_on(webui):
    answer = webui.get("/train-tools-probe/contract")
    failures = {name: outcome for name, outcome in answer["results"].items() if outcome != "ok"}
    assert failures == {}, answer["webui"]


def test_our_lora_equals_the_builtin_s_image_and_logs_no_traceback(webui, files, log_since):
    base, _ = webui.txt2img("a cat")
    images = {}
    try:
        for loader in (BUILTIN, OURS):
            webui.options(train_tools_lora_loader=loader)
            images[loader] = [webui.txt2img("a cat " + token.format(**files)) for token in TOKENS]
    finally:
        webui.options(train_tools_lora_loader=OURS)
    for token, (builtin, _), (ours, info) in zip(TOKENS, images[BUILTIN], images[OURS], strict=True):
        assert max_difference(ours, base) > 4, f"{token} changed nothing: the test cannot compare loaders"
        assert max_difference(ours, builtin) <= 1, token
        assert "Lora hashes" in info["infotexts"][0], token
    assert _ours_traceback(log_since()) == []


def test_our_lora_hashes_are_the_ones_the_builtin_writes(webui, files):
    try:
        webui.options(train_tools_lora_loader=BUILTIN)
        _, builtin = webui.txt2img("a cat " + TOKENS[0].format(**files))
    finally:
        webui.options(train_tools_lora_loader=OURS)
    _, ours = webui.txt2img("a cat " + TOKENS[0].format(**files))
    assert ours["extra_generation_params"].get("Lora hashes") == builtin["extra_generation_params"].get("Lora hashes")


def test_removal_restores_the_base_image_and_the_model_bit_for_bit(webui, files):
    _cycle(webui, files)
    base, _ = webui.txt2img("a cat")
    before = webui.model_hash()
    for token in TOKENS:
        with_lora, _ = webui.txt2img("a cat " + token.format(**files))
        assert max_difference(with_lora, base) > 0
        again, _ = webui.txt2img("a cat")
        assert max_difference(again, base) == 0, token
        assert webui.model_hash() == before, token


def test_a_failing_loader_gives_the_builtin_s_lora_and_one_log_line(webui, files, log_since):
    prompt = "a cat " + TOKENS[0].format(**files)
    try:
        webui.options(train_tools_lora_loader=BUILTIN)
        builtin, _ = webui.txt2img(prompt)
    finally:
        webui.options(train_tools_lora_loader=OURS)
    tag = f"{os.getpid()}-{time.time_ns()}"  # a new cause: logged once in this WebUI's life
    webui.post(f"/train-tools-probe/fault?on=1&tag={tag}")
    try:
        for _ in range(2):
            image, _ = webui.txt2img(prompt)
            assert max_difference(image, builtin) <= 1
    finally:
        webui.post("/train-tools-probe/fault?on=0")
    log = log_since()
    assert log.count(f"train-tools-probe fault {tag}") == 1, log[-3000:]
    assert "Traceback" not in log


def test_a_lora_replaced_on_disk_gives_the_new_image_on_the_next_generation(webui, lora_dir):
    name, fresh = f"{PREFIX}replaced", f"{PREFIX}fresh"
    write_random_lora(lora_dir / f"{name}.safetensors", seed=11, unet=False)
    prompt = "a cat <lora:{}:1>"
    old, _ = webui.txt2img(prompt.format(name))
    time.sleep(1.1)  # a new modification time, whatever the file system's resolution
    write_random_lora(lora_dir / f"{name}.safetensors", seed=12, unet=False)
    replaced, _ = webui.txt2img(prompt.format(name))
    write_random_lora(lora_dir / f"{fresh}.safetensors", seed=12, unet=False)
    reference, _ = webui.txt2img(prompt.format(fresh))
    assert max_difference(reference, old) > 0, "the two files give the same image: the test cannot tell"
    assert max_difference(replaced, reference) == 0


def _train(webui, project: str, output: str, **settings) -> Path:
    body = {"preset": "fast-test", "max_steps": 4, "resolution": 64, "output_name": output, "seed": 7, **settings}
    webui.post(f"/train-tools/v1/projects/{project}/versions/v1/train", body)
    status = webui.wait_for_job()
    assert status["result"]["status"] == "finished", status
    (entry,) = [entry for entry in webui.get("/train-tools/v1/loras") if entry["name"] == output]
    return Path(entry["path"])


def _project(webui, tmp_path: Path) -> str:
    """A new project whose version ``v1`` holds two captioned images, or a skip where the WebUI does not train."""
    host = webui.get("/train-tools/v1/host")
    if not host["can_train"]:
        pytest.skip("this WebUI does not train: " + "; ".join(host["reasons"]))
    project = webui.create_project(f"real-webui-{os.getpid()}-{time.time_ns()}")
    webui.post(f"/train-tools/v1/projects/{project}/versions/v1/ingest", {"paths": _dataset(tmp_path)})
    return project


def _dataset(tmp_path: Path) -> list[str]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        path = tmp_path / f"image{index}.png"
        Image.fromarray(pixels).save(path)
        path.with_suffix(".txt").write_text("a photo, test pattern", encoding="utf-8")
        paths.append(str(path))
    return paths


def test_training_on_the_loaded_model_applies_and_leaves_it_bit_identical(webui, files, tmp_path, lora_dir):
    project = _project(webui, tmp_path)
    _cycle(webui, files)
    base, _ = webui.txt2img("a cat")
    before = webui.model_hash()
    clean = _train(webui, project, f"{PREFIX}trained_clean")
    assert webui.model_hash() == before
    again, _ = webui.txt2img("a cat")
    assert max_difference(again, base) == 0
    _, info = webui.txt2img(f"a cat <lora:{clean.stem}:1>")
    assert f"{clean.stem}: " in info["extra_generation_params"].get("Lora hashes", ""), info  # applied, no warning
    webui.txt2img("a cat")
    # Neo sets requires_grad for good on the weights a LoRA patches for the first time (with or without us): the
    # trained file touches weights no LoRA here touched before, so the model is compared from here on
    before = webui.model_hash()
    webui.txt2img("a cat " + TOKENS[0].format(**files))  # a LoRA generation right before the next run
    after_lora = _train(webui, project, f"{PREFIX}trained_after_lora")
    first, second = load_file(str(clean)), load_file(str(after_lora))
    assert first.keys() == second.keys()
    assert all(first[key].equal(second[key]) for key in first), "the run after a LoRA generation trained otherwise"
    webui.txt2img("a cat")
    assert webui.model_hash() == before


def test_a_training_preview_is_rendered_by_the_webui_s_own_pipeline(webui, files, tmp_path):
    """Previews go through the WebUI's ``process_images`` (``Host.generate``) with the network live in hooks."""
    project = _project(webui, tmp_path)
    _cycle(webui, files)
    before = webui.model_hash()
    _train(webui, project, f"{PREFIX}previewed", max_steps=2, sample_prompts="a cat --w 64 --h 64 --s 2 --d 3")
    run = webui.get(f"/train-tools/v1/projects/{project}/versions/v1/runs")[0]
    previews = sorted(Path(run["work_dir"], "samples").glob("*.png"))
    assert previews, run
    from PIL import Image

    with Image.open(previews[-1]) as image:
        assert image.size == (64, 64)
    webui.txt2img("a cat")
    assert webui.model_hash() == before


def test_no_route_of_ours_answers_without_the_login(webui):
    if not webui.login:
        pytest.skip("set TRAIN_TOOLS_REAL_WEBUI_LOGIN=user:pass for a WebUI started with --gradio-auth / --api-auth")
    for method, path in [
        ("GET", "/train-tools/v1/host"),
        ("GET", "/train-tools/v1/projects"),
        ("GET", "/train-tools/v1/loras"),
    ]:
        assert webui.status_of(method, path, login=False) == 401, path
        assert webui.status_of(method, path) == 200, path
    with pytest.raises(HTTPError):
        webui.post("/train-tools/v1/projects", {"name": "intruder"}, login=False)


def test_the_grid_is_rendered_by_the_webui_s_sampler_and_leaves_the_model_bit_identical(webui, files, tmp_path, where):
    import base64
    import io

    import numpy as np
    from PIL import Image

    if not webui.get("/train-tools/v1/host")["can_train"]:
        pytest.skip("this WebUI does not train: " + "; ".join(webui.get("/train-tools/v1/host")["reasons"]))
    project = webui.create_project(f"real-webui-grid-{os.getpid()}-{int(time.time())}")
    webui.post(f"/train-tools/v1/projects/{project}/versions/v1/ingest", {"paths": _dataset(tmp_path)})
    body = {"preset": "fast-test", "max_steps": 0, "epochs": 2, "save_every_n_epochs": 1, "resolution": 64}
    webui.post(f"/train-tools/v1/projects/{project}/versions/v1/train", {**body, "output_name": f"{PREFIX}grid"})
    assert webui.wait_for_job()["result"]["status"] == "finished"
    _cycle(webui, files)  # Neo's first LoRA generation changes requires_grad flags for good
    before = webui.model_hash()
    grid = {"prompts": ["a cat"], "weights": [0, 1], "steps": 2, "size": 64, "seed": 3}
    webui.post(f"/train-tools/v1/projects/{project}/versions/v1/grid", grid)
    result = webui.wait_for_job()["result"]
    assert not result["cancelled"] and result["renders"] == 3 and len(result["cells"]) == 4, result
    if where["webui"] in ("a1111", "reforge"):  # our merge is in place there: put back at the grid's end
        assert webui.model_hash() == before
    # (Forge and Neo merge the patches we hand them when the model loads, and put them back at the next load, as
    # with their built-in's LoRAs: the last cell's LoRA stays in the weights until the next generation, below)
    # Each cell is the WebUI's own image for its prompt: /sdapi/v1/txt2img with the WebUI's default sampler.
    sampler = webui.get("/sdapi/v1/samplers")[0]["name"]
    for cell in result["cells"]:
        answer = webui.post(
            "/sdapi/v1/txt2img",
            {"prompt": cell["prompt"], "seed": 3, "steps": 2, "width": 64, "height": 64, "cfg_scale": 7}
            | {"sampler_name": sampler, "save_images": False},
        )
        expected = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))).convert("RGB"))
        assert max_difference(np.asarray(Image.open(cell["path"]).convert("RGB")), expected) == 0, cell["prompt"]
    webui.txt2img("a cat")
    assert webui.model_hash() == before
