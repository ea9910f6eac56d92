"""The lines a Japanese page shows from real work have no English left: a training's log, progress and chart,
an import's skip reasons and notices, an editor error, the tagger's confidence bars and the toast's title.

``test_ui_i18n_status.py`` finds every line in the code; this file runs the flows and reads what they show,
so a line built somewhere the scan cannot see (a text box, a chart, a reason handed through) fails too.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from ui_fixtures import write_images

from lora_ext.app.context import Context, Workspace
from lora_ext.app.jobs import Job
from lora_ext.errors import LoraExtError
from lora_ext.training.events import PhaseInfo
from lora_ext.ui import compat, confidence_bars, dataset_section, editor_section, projects, train_section
from lora_ext.ui.common import user_message
from lora_ext.ui.i18n import I18n
from lora_ext.ui.labels_ja import GRADIO_JA

# What a line may quote as it is: paths, file names, values of the user's and the machine's.
_NAMED = re.compile(
    r"\S*[/\\]\S*|\S+\.(?:safetensors|png|jpg|zip|heic|txt|toml|csv)\b|<lora:[^>]*>"
    r"|\b(?:PNG|JPEG|RGB|HEIC|RAW|zip|Pillow|iPhone)\b"  # file formats and a library's name
)


def english(text: str) -> list[str]:
    """The words of ``text`` (markup removed) that are English, names and values aside."""
    words = _NAMED.sub(" ", re.sub(r"<[^>]*>", " ", text))
    return re.findall(r"[A-Za-z]{3,}", words)


@pytest.fixture
def ctx(make_standalone_host, tmp_path: Path) -> Context:
    host = make_standalone_host("sd1")
    return Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n("ja"))


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says ``width``×``height`` (a photo too large to hold, without its pixels)."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def test_an_import_report_in_japanese_has_no_english_reason_or_notice(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="猫")
    drop = tmp_path / "drop"
    files = write_images(drop)  # red, blue and a broken one
    transparent = drop / "clear.png"
    image = Image.new("RGBA", (64, 64), (200, 10, 10, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.save(transparent)
    huge = drop / "huge.png"
    huge.write_bytes(_png_claiming(20000, 20000))  # a bomb (a large photo is scaled down instead)
    (drop / "photo.heic").write_bytes(b"not read")
    with zipfile.ZipFile(drop / "bad.zip", "w") as archive:
        archive.writestr("../escape.png", b"x")
        archive.writestr("ok/inner.zip", b"x")
    dropped = [*files, transparent, huge, drop / "photo.heic", drop / "bad.zip"]
    out = dataset_section.add_files(
        ctx, "猫", "v1", files=[SimpleNamespace(name=str(path)) for path in dropped], target_folder=""
    )
    report, status = ctx.i18n.status(out["report"]), ctx.i18n.status(out["dataset_status"])
    assert report.count("<tr>") >= 6 and "tt-notice" in report  # every kind of line above is there
    assert not english(report + status), (english(report + status), report)


def test_a_japanese_training_shows_its_log_progress_and_chart_in_japanese(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="猫")
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / "drop")]
    dataset_section.add_files(ctx, "猫", "v1", files=files, target_folder="")
    values = {**train_section.apply_preset(ctx, preset_name="fast-test"), "cfg_max_steps": 2, "cfg_save_state": True}
    train_section.start_training(ctx, project="猫", version="v1", **values)
    job = ctx.jobs.current
    assert job.finished_event.wait(600) and job.error is None
    shown = train_section.render_job(ctx, job)
    log = shown["train_log"].splitlines()
    assert len(log) >= 3 and any("学習状態を保存" in line for line in log)  # "saved training state at step 2"
    assert not [line for line in log if english(line)], log
    assert not english(ctx.i18n.status(shown["train_progress"]))
    assert set(shown["loss_plot"]["series"]) == {"損失", "平滑化"}  # the chart's legend


def test_the_loss_chart_titles_follow_the_page_language(make_standalone_host, tmp_path: Path) -> None:
    from lora_ext.ui.app import build_app, switch_language

    app = build_app(make_standalone_host("sd1"), language="ja", workspace=Workspace(tmp_path / "p", tmp_path / "t"))
    ctx, ui = app.train_tools
    plot = ui["loss_plot"]
    legend = next(name for name in compat.plot_titles("", "", "") if name.startswith("color"))
    assert (plot.x_title, plot.y_title, getattr(plot, legend), plot.label) == ("ステップ", "損失", "系列", "損失")
    switched = switch_language(ctx, "English")
    if compat.plots_drawn_on_server():  # gradio 3: the next chart drawn has them
        assert (plot.x_title, plot.y_title, getattr(plot, legend)) == ("Step", "Loss", "Series")
    else:  # gradio 4: the page's plot gets them
        assert {name: switched[plot][name] for name in ("x_title", "y_title", legend)} == {
            "x_title": "Step",
            "y_title": "Loss",
            legend: "Series",
        }


def test_a_phase_line_says_its_eta_once(ctx: Context) -> None:
    from lora_ext.training.run import _caching_reporter

    phases: list[PhaseInfo] = []
    eta = SimpleNamespace(caching=lambda done, total: (1.0, 2.0))  # (the caching's seconds left, the run's)
    report = _caching_reporter(SimpleNamespace(phase=phases.append), eta)
    report(0, 6)
    report(4, 6)
    job = Job("Training", data={"phase": phases[-1], "log": []})
    line = ctx.i18n.status(train_section.render_job(ctx, job)["train_progress"])
    assert line.count("残り") == 1 and "潜在表現をキャッシュ中 4/6" in line and "残り 0:02" in line, line


def test_an_invalid_regular_expression_is_one_japanese_line(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="猫")
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / "drop")]
    dataset_section.add_files(ctx, "猫", "v1", files=files, target_folder="")
    filters = {"filter_positive": "", "positive_logic": "AND", "filter_negative": "", "negative_logic": "OR"}
    with pytest.raises(LoraExtError) as caught:
        editor_section.replace(ctx, "猫", "v1", search="[", replacement="x", regex=True, scope="each", **filters)
    line = ctx.tr(user_message(caught.value))
    assert "1 文字目" in line and not english(line), line


def test_confidence_bars_and_the_toast_title_are_in_japanese(ctx: Context) -> None:
    scores = [("1girl", "general", 0.9), ("someone", "character", 0.95), ("safe", "rating", 0.8)]
    bars = confidence_bars.bars_html(scores, 0.35, 0.85, ctx.tr)
    categories = re.findall(r'class="tt-conf-cat">([^<]*)<', bars)
    assert categories == ["一般", "キャラクター", "レーティング"]
    assert 'title="一般のしきい値 0.35"' in bars
    # gradio draws a toast's title itself: the page relabels it from this table (javascript/train_tools.js).
    assert GRADIO_JA["Warning"] == "警告"
