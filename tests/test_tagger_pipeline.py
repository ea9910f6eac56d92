"""Folder tagging end to end on a tiny real ONNX model: captions, skips, batching, overlap, progress, cancel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx_tagger_fixture import LABEL_ROWS, SIDE, build_tiny_tagger, expected_probabilities
from PIL import Image

import lora_ext.tagger.pipeline as pipeline
from lora_ext.errors import TaggerUnavailable, UsageError
from lora_ext.tagger import Tagger, TagOptions, WriteOptions
from lora_ext.tagger.postprocess import KAOMOJI

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def expected_caption(rgb: tuple[int, int, int]) -> str:
    """Default-option caption of a solid-colour square image, straight from the fixture's weights."""
    probabilities = expected_probabilities(np.full((1, SIDE, SIDE, 3), rgb[::-1], dtype=np.float64))[0]
    chosen = [
        (-probabilities[i], i, name)
        for i, (name, category, *_) in enumerate(LABEL_ROWS)
        if (category == 0 and probabilities[i] > 0.35) or (category == 4 and probabilities[i] > 0.85)
    ]
    return ", ".join(name if name in KAOMOJI else name.replace("_", " ") for *_, name in sorted(chosen))


def solid(path: Path, rgb: tuple[int, int, int], size: int = 40) -> Path:
    Image.new("RGB", (size, size), rgb).save(path)
    return path


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Tagger:
    return Tagger.load(build_tiny_tagger(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def fixed_tagger(tmp_path_factory: pytest.TempPathFactory) -> Tagger:
    return Tagger.load(build_tiny_tagger(tmp_path_factory.mktemp("fixed"), dynamic_batch=False))


class RecordingSession:
    """Wraps an onnxruntime session: records batch sizes, optionally slows inference down."""

    def __init__(self, inner: Any, delay: float = 0.0) -> None:
        self.inner, self.delay = inner, delay
        self.batches: list[int] = []
        self.running = threading.Event()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.running.set()
        try:
            time.sleep(self.delay)
            self.batches.append(next(iter(feeds.values())).shape[0])
            return self.inner.run(names, feeds)
        finally:
            self.running.clear()


@pytest.fixture
def recorder(tagger: Tagger) -> Any:
    original = tagger.session.session
    wrapped = RecordingSession(original)
    tagger.session.session = wrapped
    yield wrapped
    tagger.session.session = original


def many(folder: Path, count: int) -> list[Path]:
    colours = [RED, BLUE, WHITE]
    return [solid(folder / f"img{n:03d}.png", colours[n % 3], size=24) for n in range(count)]


def test_each_image_gets_the_caption_its_colours_call_for(tagger: Tagger, tmp_path: Path) -> None:
    solid(tmp_path / "red.png", RED)
    solid(tmp_path / "blue.webp", BLUE, size=50)
    solid(tmp_path / "white.bmp", WHITE, size=20)
    report = tagger.tag_dataset(tmp_path)
    assert (len(report.tagged), report.skipped, report.cancelled) == (3, [], False)
    for name, colour in [("red", RED), ("blue", BLUE), ("white", WHITE)]:
        assert (tmp_path / f"{name}.txt").read_text(encoding="utf-8") == expected_caption(colour)
    assert "red theme" in expected_caption(RED) and "blue theme" not in expected_caption(RED)


def test_bad_files_are_skipped_with_reasons_and_their_captions_untouched(tagger: Tagger, tmp_path: Path) -> None:
    solid(tmp_path / "good.png", RED)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(photo)
    photo.write_bytes(photo.read_bytes()[:800])
    for name in ("empty", "notes", "photo"):
        (tmp_path / f"{name}.txt").write_text("hand written, keep me")
    report = tagger.tag_dataset(tmp_path, write=WriteOptions(existing="overwrite"))
    assert report.tagged == [tmp_path / "good.png"]
    reasons = {path.name: reason for path, reason in report.skipped}
    assert reasons.keys() == {"empty.png", "notes.png", "photo.jpg"}
    assert "empty file" in reasons["empty.png"]
    assert "not an image" in reasons["notes.png"]
    assert "truncated JPG" in reasons["photo.jpg"]
    for name in ("empty", "notes", "photo"):
        assert (tmp_path / f"{name}.txt").read_text() == "hand written, keep me"
    assert not list(tmp_path.glob("*.bak"))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("skip", "mine, red theme"),
        ("overwrite", None),
        ("append", "mine, red theme, {rest}"),
        ("prepend", "{all}, mine"),
    ],
)
def test_existing_caption_modes_end_to_end(tagger: Tagger, tmp_path: Path, mode: str, expected: str | None) -> None:
    solid(tmp_path / "a.png", RED)
    (tmp_path / "a.txt").write_text("mine, red theme")
    tagger.tag_dataset(tmp_path, write=WriteOptions(existing=mode))  # type: ignore[arg-type]
    new = expected_caption(RED)
    rest = ", ".join(tag for tag in new.split(", ") if tag != "red theme")
    wanted = new if expected is None else expected.format(rest=rest, all=new)
    assert (tmp_path / "a.txt").read_text() == wanted
    backups = sorted(p.name for p in tmp_path.glob("*.bak"))
    assert backups == ([] if mode == "skip" else ["a.txt.000.bak"])


def test_skip_mode_does_not_even_decode_captioned_images(
    tagger: Tagger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    solid(tmp_path / "done.png", RED)
    solid(tmp_path / "new.png", BLUE)
    (tmp_path / "done.txt").write_text("finished")
    decoded: list[str] = []
    original = pipeline.load_model_input

    def spy(path: Path, *args: Any) -> np.ndarray:
        decoded.append(path.name)
        return original(path, *args)

    monkeypatch.setattr(pipeline, "load_model_input", spy)
    report = tagger.tag_dataset(tmp_path)
    assert decoded == ["new.png"]
    assert report.kept == [tmp_path / "done.png"]


def test_dynamic_batch_models_are_run_in_batches(tagger: Tagger, recorder: RecordingSession, tmp_path: Path) -> None:
    many(tmp_path, 10)
    tagger.tag_dataset(tmp_path, batch_size=4)
    assert recorder.batches == [4, 4, 2]


def test_fixed_batch_models_are_run_one_image_at_a_time(fixed_tagger: Tagger, tmp_path: Path) -> None:
    images = many(tmp_path, 5)
    report = fixed_tagger.tag_dataset(tmp_path, batch_size=4)
    assert len(report.tagged) == 5
    assert any("fixed to 1" in warning for warning in report.warnings)
    assert (tmp_path / "img000.txt").read_text() == expected_caption(RED)
    assert all(image.with_suffix(".txt").exists() for image in images)


def test_decoding_overlaps_inference(tagger: Tagger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many(tmp_path, 16)
    slow = RecordingSession(tagger.session.session, delay=0.05)
    monkeypatch.setattr(tagger.session, "session", slow)
    during_inference: list[bool] = []
    original = pipeline.load_model_input

    def spy(path: Path, *args: Any) -> np.ndarray:
        during_inference.append(slow.running.is_set())
        return original(path, *args)

    monkeypatch.setattr(pipeline, "load_model_input", spy)
    tagger.tag_dataset(tmp_path, batch_size=2, workers=2)
    assert sum(during_inference) >= 4


def test_memory_stays_bounded_on_big_folders(tagger: Tagger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    many(tmp_path, 60)
    slow = RecordingSession(tagger.session.session, delay=0.01)
    monkeypatch.setattr(tagger.session, "session", slow)
    prepared = [0]
    most_outstanding = [0]
    original = pipeline.load_model_input

    def spy(path: Path, *args: Any) -> np.ndarray:
        result = original(path, *args)
        prepared[0] += 1
        most_outstanding[0] = max(most_outstanding[0], prepared[0] - sum(slow.batches))
        return result

    monkeypatch.setattr(pipeline, "load_model_input", spy)
    tagger.tag_dataset(tmp_path, batch_size=2, workers=2)
    assert sum(slow.batches) == 60
    assert most_outstanding[0] <= 3 * 2 + 2  # the window (2 batches + workers) plus the batch being filled


def test_progress_reports_done_total_and_speed(tagger: Tagger, tmp_path: Path) -> None:
    many(tmp_path, 7)
    (tmp_path / "broken.png").write_bytes(b"")
    calls: list[tuple[int, int, float]] = []
    tagger.tag_dataset(tmp_path, batch_size=3, progress=lambda *call: calls.append(call))
    done = [call[0] for call in calls]
    assert done == sorted(done) and done[-1] == 8
    assert {call[1] for call in calls} == {8}
    assert all(call[2] > 0 for call in calls)


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_after_the_current_batch(tagger: Tagger, tmp_path: Path, kind: str) -> None:
    images = many(tmp_path, 12)
    stop = threading.Event()
    cancel = stop if kind == "event" else stop.is_set
    report = tagger.tag_dataset(tmp_path, batch_size=4, progress=lambda *_: stop.set(), cancel=cancel)
    assert report.cancelled
    assert [image.name for image in images if image.with_suffix(".txt").exists()] == [i.name for i in images[:4]]
    assert not list(tmp_path.glob(".*.tmp"))


def test_recursive_reaches_sub_folders_only_when_asked(tagger: Tagger, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    solid(tmp_path / "top.png", RED)
    solid(tmp_path / "sub" / "deep.png", BLUE)
    solid(tmp_path / ".hidden" / "secret.png", BLUE)
    (tmp_path / "readme.md").write_text("not an image")
    assert tagger.tag_dataset(tmp_path).tagged == [tmp_path / "top.png"]
    report = tagger.tag_dataset(tmp_path, recursive=True)
    assert report.tagged == [tmp_path / "sub" / "deep.png"] and report.kept == [tmp_path / "top.png"]
    assert (tmp_path / "sub" / "deep.txt").read_text() == expected_caption(BLUE)
    assert not (tmp_path / ".hidden" / "secret.txt").exists()


def test_tag_options_reach_the_written_captions(tagger: Tagger, tmp_path: Path) -> None:
    solid(tmp_path / "w.png", WHITE)
    options = TagOptions(exclude=("white_background",), always_first=("ohwx",), rating="last", max_tags=2)
    tagger.tag_dataset(tmp_path, options)
    top_two = [t for t in expected_caption(WHITE).split(", ") if t != "white background"][:2]
    assert (tmp_path / "w.txt").read_text() == ", ".join(["ohwx", *top_two, "sensitive"])


def test_tag_image_returns_tag_category_confidence(tagger: Tagger, tmp_path: Path) -> None:
    image = Image.new("RGBA", (SIDE, SIDE), (*BLUE, 255))
    result = tagger.tag_image(image)
    probabilities = expected_probabilities(np.full((1, SIDE, SIDE, 3), BLUE[::-1], dtype=np.float64))[0]
    by_name = {
        name.replace("_", " "): (category, probabilities[i]) for i, (name, category, *_) in enumerate(LABEL_ROWS)
    }
    codes = {"rating": 9, "general": 0, "character": 4}
    assert [t.category for t in result[:4]] == ["rating"] * 4
    assert {t.tag for t in result if t.category != "rating"} == set(expected_caption(BLUE).split(", "))
    for tag, category, confidence in result:
        assert by_name[tag][0] == codes[category]
        assert confidence == pytest.approx(by_name[tag][1], abs=1e-5)
    path = solid(tmp_path / "blue.png", BLUE)
    from_file = tagger.tag_image(path)
    assert [t[:2] for t in from_file] == [t[:2] for t in result]
    assert [t.confidence for t in from_file] == pytest.approx([t.confidence for t in result])
    assert tagger.caption(path) == expected_caption(BLUE)


def test_labels_that_do_not_match_the_model_are_refused(tmp_path: Path) -> None:
    folder = build_tiny_tagger(tmp_path / "model")
    lines = (folder / "selected_tags.csv").read_text().splitlines()
    (folder / "selected_tags.csv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(TaggerUnavailable, match=r"outputs 14 scores but selected_tags.csv lists 12 tags"):
        Tagger.load(folder)


def test_unload_frees_the_session_and_later_use_says_so(tmp_path: Path) -> None:
    tagger = Tagger.load(build_tiny_tagger(tmp_path / "model"))
    tagger.unload()
    with pytest.raises(TaggerUnavailable, match="unloaded"):
        tagger.tag_image(Image.new("RGB", (8, 8)))


def test_dataset_path_must_be_a_folder(tagger: Tagger, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        tagger.tag_dataset(tmp_path / "missing")


def test_cpu_fallback_is_said_once_per_loaded_model(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        tagger = Tagger.load(
            build_tiny_tagger(tmp_path / "model"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
    solid(tmp_path / "a.png", RED)
    first = tagger.tag_dataset(tmp_path, write=WriteOptions(existing="overwrite"))
    second = tagger.tag_dataset(tmp_path, write=WriteOptions(existing="overwrite"))
    assert [w for w in first.warnings if "runs on CPU" in w] != []
    assert [w for w in second.warnings if "runs on CPU" in w] == []
    assert list(tagger.warnings) == first.warnings  # still readable for a status line


def test_tag_paths_tags_only_the_selection(tagger: Tagger, tmp_path: Path) -> None:
    chosen = solid(tmp_path / "chosen.png", RED)
    solid(tmp_path / "other.png", BLUE)
    report = tagger.tag_paths([chosen])
    assert report.tagged == [chosen]
    assert not (tmp_path / "other.txt").exists()


def test_images_sharing_a_caption_file_are_not_both_written(tagger: Tagger, tmp_path: Path) -> None:
    solid(tmp_path / "a.png", RED)
    solid(tmp_path / "a.webp", BLUE)
    report = tagger.tag_dataset(tmp_path)
    assert report.tagged == [tmp_path / "a.png"]
    assert report.skipped == [(tmp_path / "a.webp", "a.png already uses the caption file a.txt")]
    assert (tmp_path / "a.txt").read_text() == expected_caption(RED)


def test_a_symlink_loop_does_not_trap_recursive_search(tagger: Tagger, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    solid(tmp_path / "sub" / "deep.png", BLUE)
    assert tagger.tag_dataset(tmp_path, recursive=True).tagged == [tmp_path / "sub" / "deep.png"]
