"""The whole flow in a real headless Chromium against the standalone app on the demo model and a tiny tagger.

Japanese project → drop 3 images (one broken) → skip report → auto-tag → remove a
tag and undo (Ctrl+Z) → train 4 steps at 64 px, reloading the page while it runs:
the page reopens on the project and re-attaches to the job until it has finished →
the LoRA is in the Lora folder → its grid, then an error that leaves it intact →
Generate with ``<lora:name:0.8>`` differs from weight 0. A screenshot of each step
goes to ``artifacts/browser/``.

The second test runs the flow again in Japanese on its own data folder, app and browser
and fails on any status line left in English (the lines it read: ``12-japanese-lines.txt``).

The machine running it may be busy: every wait is generous, none is a timing assert.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ui_fixtures import write_images, write_tagger
from webui import REPO

from lora_ext.config import AUTO_PRESET, PRESETS

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "artifacts" / "browser"
PROJECT = "猫のテスト"
LORA = f"{PROJECT}_v1"
# TRAIN_TOOLS_UPDATE_SCREENSHOTS=1 also refreshes the README's screenshots from this run.
README_SHOTS = {"03-dataset-report": "dataset", "06-editor": "tag-editor", "08-trained": "train", "09-result": "result"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _data_folder(prefix: str) -> Iterator[Path]:
    """A fresh data folder (``TRAIN_TOOLS_HOME``) holding the tiny tagger in the standalone app's tagger folder."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    write_tagger(folder / "models" / "wd14_tagger")  # the standalone app's tagger folder (lora_ext.paths)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _serve(home: Path, log_name: str) -> Iterator[str]:
    """``python -m lora_ext ui`` on the demo model over ``home``, on a free port; its log goes to the artifacts."""
    port = _free_port()
    env = {**os.environ, "TRAIN_TOOLS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("TRAIN_TOOLS_TAGGER_DIR", None)
    log = open(home / "server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_ext", "ui", "--port", str(port), "--device", "cpu"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            assert process.poll() is None, (home / "server.log").read_text("utf-8")
            try:
                urllib.request.urlopen(f"{url}/config", timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start: " + (home / "server.log").read_text("utf-8"))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(home / "server.log", ARTIFACTS / log_name)


@contextmanager
def _chromium(home: Path) -> Iterator[object]:
    """Headless Chromium with its own profile in ``home`` (nothing shared between the tests' browsers)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian chromium + chromium-driver are not installed (make setup-test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        "--window-size=1400,2200",
        "--lang=en-US",
        f"--user-data-dir={home / 'chrome-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1400, 2200)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with _data_folder("train-tools-e2e-") as folder:
        yield folder


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    with _serve(home, "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(home: Path) -> Iterator[object]:
    with _chromium(home) as driver:
        yield driver


class Page:
    """Small helpers over Selenium for gradio 3 and 4 components found by elem_id."""

    def __init__(self, driver) -> None:
        from selenium.webdriver.common.by import By

        self.driver = driver
        self.by = By
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def find(self, css: str):
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def text(self, elem_id: str) -> str:
        return self.fresh(lambda: self.find(f"#{elem_id}").text)

    def value(self, css: str) -> str | None:
        return self.fresh(lambda: self.find(css).get_attribute("value"))

    def press(self, css: str) -> None:
        self.fresh(lambda: self.find(css).click())

    def type_number(self, elem_id: str, value: str) -> None:
        def type_in() -> None:
            box = self.find(f"#{elem_id} input[type=number]")
            box.clear()
            box.send_keys(value, "\t")

        self.fresh(type_in)

    def wait(self, condition: Callable[[], object], what: str, timeout: float = 300) -> object:
        deadline = time.time() + timeout
        last_error: Exception | None = None
        while time.time() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except Exception as error:  # noqa: BLE001 - elements come and go while Gradio re-renders
                last_error = error
            time.sleep(0.25)
        self.shot("timeout")
        raise AssertionError(f"timed out waiting for {what} ({last_error})")

    def wait_text(self, elem_id: str, needle: str, timeout: float = 300) -> None:
        self.wait(lambda: needle in self.text(elem_id), f"{needle!r} in #{elem_id}", timeout)

    def fresh(self, action: Callable[[], object]) -> object:
        """Run ``action`` again if gradio re-rendered its element between the find and the use, or if something
        passing (a toast, a list closing, the page shifting under a new bar) took the click (all idempotent)."""
        from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

        last: Exception | None = None
        for _attempt in range(20):
            try:
                return action()
            except (StaleElementReferenceException, ElementClickInterceptedException) as error:
                last = error
                time.sleep(0.25)
        raise AssertionError(f"the element kept being re-rendered or covered ({last})")

    def fill(self, elem_id: str, value: str) -> None:
        def type_in() -> None:
            box = self.find(f"#{elem_id} textarea, #{elem_id} input")
            box.clear()
            box.send_keys(value)
            box.send_keys("\t")  # blur: Gradio 3 commits Number values on change

        self.fresh(type_in)

    def click(self, elem_id: str) -> None:
        def press() -> None:
            element = self.find(f"#{elem_id}")
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            element.click()

        self.fresh(press)

    def click_until(self, elem_id: str, status_id: str, needle: str, tries: int = 3, each: float = 40) -> None:
        """Click, and again while ``needle`` is not in ``#status_id``: on a busy machine gradio 4 once lost a click
        (CI: neither the rename's answer nor an error for two minutes). A click is repeated only while the page
        shows no answer; gradio 4 drops a click whose event is still pending, so an action is not done twice."""
        for _attempt in range(tries - 1):
            self.click(elem_id)
            try:
                self.wait(lambda: needle in self.text(status_id), f"{needle!r} in #{status_id}", each)
                return
            except AssertionError:
                continue
        self.click(elem_id)
        self.wait_text(status_id, needle, each)

    def choose(self, elem_id: str, value: str) -> None:
        from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

        self.click(elem_id)
        try:
            self.find(f"#{elem_id} input").click()
        except ElementClickInterceptedException:
            pass  # the first click opened the list, and it covers the box (it opens upwards near the bottom)
        except StaleElementReferenceException:
            self.press(f"#{elem_id} input")
        # gradio 3 renders an option as li[data-value=value]; gradio 4 as li[aria-label=label] (here label = value).
        options = f"#{elem_id} li[data-value='{value}'], #{elem_id} li[aria-label='{value}']"
        self.wait(lambda: self.find(options).click() or True, f"option {value} in #{elem_id}", 60)

    def open_tab(self, label: str) -> None:
        """Click the tab button labelled ``label``: found and clicked in one step, again if gradio re-rendered it."""
        xpath = f"//button[normalize-space(.)='{label}']"
        self.wait(lambda: self.driver.find_element(self.by.XPATH, xpath).click() or True, f"the {label} tab", 60)

    def restored(self) -> None:
        """Wait until the page has reopened where the user left off (``ui/live.py`` restore, pressed on load)."""
        self.wait(lambda: self.find("#train_tools_first_step [data-restored='1']"), "the page to be restored")

    def visible_text(self) -> str:
        return self.find("body").text

    def shot(self, name: str, elem_id: str | None = None) -> Path:
        path = ARTIFACTS / f"{name}.png"
        if elem_id:
            element = self.find(f"#{elem_id}")
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
            element.screenshot(str(path))
        else:
            self.driver.save_screenshot(str(path))
        return path


def _image_src(page: Page) -> str:
    return page.fresh(lambda: page.find("#train_tools_gen_image img").get_attribute("src")) or ""


@pytest.mark.timeout(1800)  # a busy 2-core machine: generous, never a timing assert
def test_browser_flow_from_drop_to_lora(server: str, browser, home: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page = Page(browser)
    browser.get(server)
    page.wait(lambda: page.find("#train_tools_create_project"), "the Train Tools tab")
    page.restored()
    # No project yet: the sections that need one say what to do first.
    assert "Create a project first" in page.text("train_tools_first_step")
    page.shot("01-start")

    # 1. A project with a Japanese name.
    page.fill("train_tools_name", PROJECT)
    page.click("train_tools_create_project")
    page.wait_text("train_tools_project_status", f"Created project {PROJECT}")
    assert page.value("#train_tools_project input") == PROJECT
    page.shot("02-project", "train_tools_section_project")

    # 2. Drop three images, one of them broken: the report names the skipped file and why.
    files = write_images(tmp_path / "drop")
    page.find("#train_tools_drop input[type=file]").send_keys("\n".join(str(path) for path in files))
    page.wait_text("train_tools_dataset_status", "2 image(s) added, 1 skipped")
    report = page.text("train_tools_report")
    assert "broken.png" in report and "Skipped" in report
    page.wait(lambda: len(browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_gallery img")) >= 2, "gallery")
    page.shot("03-dataset-report", "train_tools_section_dataset")

    # 3. Auto-tag with the tiny tagger (local folders come first in the model list).
    assert page.value("#train_tools_tag_model input") == "tiny-tagger"
    page.click("train_tools_run_tagging")
    page.wait_text("train_tools_tag_progress", "Auto-tagging finished")
    page.wait(lambda: page.find("#train_tools_chips .tt-chip[data-tag='red theme']"), "the red theme chip")
    page.shot("04-tagged", "train_tools_section_tagger")

    # 4. Remove a tag in the editor, then undo with Ctrl+Z (javascript/train_tools.js).
    chip = "#train_tools_chips .tt-chip[data-tag='red theme']"
    page.fill("train_tools_tags_text", "red theme")
    page.click("train_tools_remove_tags")
    page.wait(lambda: not browser.find_elements(page.by.CSS_SELECTOR, chip), "the tag to disappear")
    page.wait_text("train_tools_editor_state", "1 unsaved")
    page.shot("05-tag-removed", "train_tools_section_editor")
    browser.execute_script("document.activeElement && document.activeElement.blur();")  # not in a text box
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    page.wait(lambda: browser.find_elements(page.by.CSS_SELECTOR, chip), "Ctrl+Z to bring the tag back")
    page.wait_text("train_tools_editor_state", "undid remove red theme")
    # A chip click filters the gallery (JS fills the filter box and presses Apply filter).
    page.press("#train_tools_chips .tt-chip[data-tag='blue theme']")
    page.wait_text("train_tools_gallery_note", "Showing 1 of 1 images (filtered from 2)")
    page.press("#train_tools_chips .tt-chip[data-tag='blue theme']")
    page.wait_text("train_tools_gallery_note", "Showing 2 of 2 images")
    # Shift+click hides the tag's images; its chip stays, struck through, and a click shows them again.
    blue = page.find("#train_tools_chips .tt-chip[data-tag='blue theme']")
    ActionChains(browser).key_down(Keys.SHIFT).click(blue).key_up(Keys.SHIFT).perform()
    page.wait_text("train_tools_gallery_note", "Showing 1 of 1 images (filtered from 2)", 120)
    hidden_chip = "#train_tools_chips .tt-chip-off.tt-chip-hidden[data-tag='blue theme']"
    page.wait(lambda: page.find(hidden_chip), "the struck-through chip of the hidden tag", 120)
    page.press(hidden_chip)
    page.wait_text("train_tools_gallery_note", "Showing 2 of 2 images", 120)
    assert not browser.find_elements(page.by.CSS_SELECTOR, hidden_chip)
    page.shot("06-editor", "train_tools_section_editor")

    # 4b. The Caption box follows a batch replace and its undo (the box never puts an old caption back).
    def caption_box() -> str:
        return page.value("#train_tools_caption textarea") or ""

    red_thumb = "#train_tools_gallery button.thumbnail-lg img[alt*='red theme']"
    page.wait(lambda: page.find(red_thumb), "the red image's thumbnail", 120)
    page.press(red_thumb)
    page.wait(lambda: "red theme" in caption_box(), "the red image's caption in the box", 120)
    page.fill("train_tools_search", "red theme")
    page.fill("train_tools_replacement", "crimson")
    page.click("train_tools_replace")
    page.wait(lambda: "crimson" in caption_box() and "red theme" not in caption_box(), "the replaced caption", 120)
    page.click("train_tools_undo")
    page.wait(lambda: "red theme" in caption_box() and "crimson" not in caption_box(), "the caption after undo", 120)
    page.wait_text("train_tools_editor_state", "undid replace", 120)

    # 5. Train 4 steps at 64 px with the fast-test preset; progress is visible while it runs.
    page.choose("train_tools_preset", "fast-test")
    page.wait(lambda: page.value("#train_tools_cfg_resolution input") == "64", "the preset values")
    page.fill("train_tools_cfg_max_steps", "4")
    page.wait_text("train_tools_plan", "max steps 4")
    page.wait_text("train_tools_plan", "on this machine")  # how long it will take, said before it starts
    page.click("train_tools_start_training")
    page.wait_text("train_tools_train_progress", "Training:")
    page.shot("07-training", "train_tools_section_train")
    # Reload while it runs (the start event returned at once; the job runs on the server): the page reopens on
    # the project it was on (the page was built before the project existed) and re-attaches to the job.
    browser.refresh()
    page.wait(lambda: page.find("#train_tools_create_project"), "the Train Tools tab after the reload")
    page.restored()
    assert page.value("#train_tools_project input") == PROJECT
    assert page.value("#train_tools_version input") == "v1"
    # The form shows the settings this training started with (the version's config/train.toml), not the defaults.
    page.wait(lambda: page.value("#train_tools_cfg_max_steps input") == "4", "the saved settings")
    assert page.value("#train_tools_cfg_rank input") == "4"
    page.wait(lambda: len(browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_gallery img")) >= 2, "gallery")
    page.wait_text("train_tools_train_progress", "Finished: 4 steps", 900)
    assert "Error" not in page.visible_text()
    page.shot("08-trained", "train_tools_section_train")

    # 6. The LoRA is in the Lora folder and the result shows it with its prompt token.
    lora_file = home / "models" / "Lora" / f"{LORA}.safetensors"
    assert lora_file.is_file() and lora_file.stat().st_size > 0
    page.wait(
        lambda: page.value("#train_tools_lora_token input, #train_tools_lora_token textarea") == f"<lora:{LORA}:0.8>",
        "the prompt token",
    )
    assert f"{LORA}.safetensors" in page.text("train_tools_result_files")
    # The run's working folder is named there and kept with the version, not in the Lora folder (a folder button).
    page.wait_text("train_tools_result_work_dir", str(Path("versions", "v1", "outputs", LORA)))
    assert not [path.name for path in lora_file.parent.iterdir() if path.is_dir()]
    # The REST API of the standalone app sees the same LoRA and the finished job.
    with urllib.request.urlopen(f"{server}/train-tools/v1/loras", timeout=10) as response:
        assert [entry["name"] for entry in json.load(response)] == [LORA]
    with urllib.request.urlopen(f"{server}/train-tools/v1/train/status", timeout=10) as response:
        assert json.load(response)["result"]["status"] == "finished"
    # The grid: the same prompt and seed at four weights (one file: one row), generated by the host.
    page.fill("train_tools_compare_prompt", "1girl, red theme")
    for elem_id, value in (("train_tools_compare_steps", "4"), ("train_tools_compare_size", "64")):
        page.fill(elem_id, value)
    page.fill("train_tools_compare_weights", "0, 0.5, 0.8, 1")
    page.click("train_tools_compare")
    page.wait_text("train_tools_compare_progress", "4 images", 600)
    assert len(browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_compare_gallery img")) == 4
    page.shot("09-result", "train_tools_section_result")
    # An error is one line in the section's status area; the form and the last results stay as they were.
    page.fill("train_tools_compare_weights", "0, lots")
    page.click("train_tools_compare")
    page.wait_text("train_tools_result_status", "'lots' is not a weight")
    assert page.value("#train_tools_compare_prompt textarea, #train_tools_compare_prompt input") == "1girl, red theme"
    assert len(browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_compare_gallery img")) == 4
    assert "4 images" in page.text("train_tools_compare_progress")
    assert "Error" not in page.visible_text()

    # 7. Generate with <lora:name:0.8> and with weight 0: the images differ.
    page.open_tab("Generate")
    page.wait(lambda: page.find("#train_tools_gen_button").is_displayed(), "the Generate tab")
    for elem_id, value in (
        ("train_tools_gen_steps", "4"),
        ("train_tools_gen_width", "64"),
        ("train_tools_gen_height", "64"),
    ):
        page.type_number(elem_id, value)
    images = {}
    for weight in ("0.8", "0"):
        page.fill("train_tools_gen_prompt", f"1girl, red theme <lora:{LORA}:{weight}>")
        before = _image_src(page) if browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_gen_image img") else ""
        page.click("train_tools_gen_button")
        page.wait(
            lambda before=before: (
                browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_gen_image img") and _image_src(page) != before
            ),
            f"an image at weight {weight}",
        )
        images[weight] = _image_src(page)
        if weight == "0.8":
            assert LORA in page.text("train_tools_gen_info"), page.text("train_tools_gen_info")
            page.shot("10-generate", "train_tools_generate")
    assert images["0.8"] != images["0"]

    # 8. The language switch relabels the page.
    page.press("#train_tools_language input[value='日本語']")
    page.wait(lambda: page.find("#train_tools_gen_button").text == "生成", "Japanese labels")
    page.shot("11-japanese")
    page.press("#train_tools_language input[value='English']")
    page.wait(lambda: page.find("#train_tools_gen_button").text == "Generate", "English labels again")
    if os.environ.get("TRAIN_TOOLS_UPDATE_SCREENSHOTS") == "1":
        _update_readme_screenshots()


def _update_readme_screenshots(width: int = 900) -> None:
    """Small palette PNGs of the key steps in docs/screenshots/."""
    from PIL import Image

    target = REPO / "docs" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    for shot, name in README_SHOTS.items():
        image = Image.open(ARTIFACTS / f"{shot}.png").convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        small = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        small.save(target / f"{name}.png", optimize=True)


# Status lines may quote what the user or the machine named: paths, file names, prompt tokens, model names, hashes,
# preset names (values, never translated) and the tiny tagger's tags.
_VALUES = "|".join(re.escape(name) for name in (AUTO_PRESET, *PRESETS, "red theme", "blue theme"))
_NAMED = re.compile(
    r"\S*[/\\]\S*|\S+\.(?:safetensors|png|jpg)\b|<lora:[^>]*>|\b(?:LoRA|Lora|demo-\S+|tiny-\S+)|\b[0-9a-f]{10,}\b"
    rf"|\b(?:{_VALUES})\b"
    r"|'[^']*'"  # what the user typed, quoted back ("'lots' はウェイトではありません")
    r"|\b(?:[KMG]iB|cpu|cuda(?::\d+)?|mps)\b"  # units and torch's device names ("cpu で最大 ≈ 0.7 GiB")
    r"|\b\w+_\w+\b"  # a setting's own name ("memory_mode を auto に")
)


def _status_lines(page: Page) -> list[str]:
    """Every status and progress line the page shows now (``ui.common.message``, ``progress_html``), the import
    report's reasons and notices, the job bar, the tag categories of the confidence bars and the training log."""
    from selenium.common.exceptions import StaleElementReferenceException

    css = (
        ".tt-msg, .tt-progress-text, #train_tools_editor_state, #train_tools_gallery_note, .tt-why, .tt-notice, "
        ".tt-jump, .tt-conf-cat, #train_tools_report th, #train_tools_report summary"
    )
    for _attempt in range(20):  # gradio re-renders a line while it is read: read them all again
        try:
            lines = [element.text for element in page.driver.find_elements(page.by.CSS_SELECTOR, css)]
            log = page.driver.find_elements(page.by.CSS_SELECTOR, "#train_tools_log textarea")
            lines += (log[0].get_attribute("value") or "").splitlines() if log else []
        except StaleElementReferenceException:
            time.sleep(0.25)
            continue
        return [line for line in lines if line.strip()]
    raise AssertionError("the status lines kept changing while they were read")


def _english(lines: list[str]) -> list[str]:
    """The lines with an English word left once the names they quote are taken out."""
    return [line for line in lines if re.search(r"[A-Za-z]{3,}", _NAMED.sub(" ", line))]


@pytest.fixture(scope="module")
def ja_home() -> Iterator[Path]:
    with _data_folder("train-tools-e2e-ja-") as folder:
        yield folder


@pytest.mark.timeout(1500)  # a busy 2-core machine: generous, never a timing assert
def test_browser_japanese_page_shows_no_english_status_line(ja_home: Path, tmp_path: Path) -> None:
    """Switched to Japanese on a fresh data folder, the flow (a project, an error, a drop with a broken file,
    auto-tagging, an edit and its undo, a training with a reload while it runs) shows every status line in
    Japanese, and gradio's own texts and the radio options too. Switching back keeps an unsaved edit of the
    form; another version's settings fill it. Its own app and browser: it needs no other test."""
    with _serve(ja_home, "server-ja.log") as server, _chromium(ja_home) as browser:
        page = Page(browser)
        seen: list[str] = []

        def look() -> None:
            seen.extend(line for line in _status_lines(page) if line not in seen)

        browser.get(server)
        page.wait(lambda: page.find("#train_tools_create_project"), "the Train Tools tab")
        page.restored()
        page.press("#train_tools_language input[value='日本語']")
        page.wait(lambda: page.find("#train_tools_create_project").text == "プロジェクトを作成", "Japanese labels")
        page.wait_text("train_tools_first_step", "まずプロジェクトを作成")
        look()

        # A project, then an error: the name box is empty now.
        page.fill("train_tools_name", "日本語のテスト")
        page.click("train_tools_create_project")
        page.wait_text("train_tools_project_status", "プロジェクト 日本語のテスト を作成しました")
        look()
        page.click("train_tools_create_project")
        page.wait_text("train_tools_project_status", "プロジェクト名が空です")
        look()

        # A drop with a broken file: the summary and the report.
        files = write_images(tmp_path / "drop")
        page.find("#train_tools_drop input[type=file]").send_keys("\n".join(str(path) for path in files))
        page.wait_text("train_tools_dataset_status", "2 枚の画像を追加、1 件をスキップ")
        page.wait(lambda: len(browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_gallery img")) >= 2, "gallery")
        look()

        # Auto-tagging, then a tag removed and put back.
        page.click("train_tools_run_tagging")
        page.wait_text("train_tools_tag_progress", "自動タグ付けが完了しました")
        chip = "#train_tools_chips .tt-chip[data-tag='red theme']"
        page.wait(lambda: page.find(chip), "the red theme chip")
        look()
        page.fill("train_tools_tags_text", "red theme")
        page.click("train_tools_remove_tags")
        page.wait_text("train_tools_editor_state", "未保存 1 件")
        look()
        page.click("train_tools_undo")
        page.wait(lambda: browser.find_elements(page.by.CSS_SELECTOR, chip), "undo to bring the tag back")
        look()

        # A short training; a reload while it runs reopens the page in Japanese and follows the job to its end.
        page.choose("train_tools_preset", "fast-test")
        page.wait(lambda: page.value("#train_tools_cfg_resolution input") == "64", "the preset values")
        page.fill("train_tools_cfg_max_steps", "4")
        page.wait_text("train_tools_plan", "最大ステップ数 4")
        look()
        page.click("train_tools_start_training")
        page.wait(lambda: re.search("学習|完了", page.text("train_tools_train_progress")), "the training line")
        look()
        browser.refresh()
        page.wait(
            lambda: page.find("#train_tools_create_project").text == "プロジェクトを作成", "Japanese after reload"
        )
        page.restored()
        look()
        # Every line the training shows on its way (phases, steps) is read while it runs.
        page.wait(lambda: look() or "完了: 4 ステップ" in page.text("train_tools_train_progress"), "the end", 900)
        page.wait_text("train_tools_tag_progress", "自動タグ付けが完了しました")
        page.wait(lambda: "ここにファイルをドロップ" in page.visible_text(), "gradio's drop hint in Japanese")
        look()
        page.shot("12-japanese-flow")
        shown = page.visible_text()

        # The grid, then its error line.
        page.fill("train_tools_compare_prompt", "1girl, red theme")
        for elem_id, value in (("train_tools_compare_steps", "2"), ("train_tools_compare_size", "64")):
            page.fill(elem_id, value)
        page.fill("train_tools_compare_weights", "0, 1")
        page.click("train_tools_compare")
        page.wait(lambda: look() or "で生成" in page.text("train_tools_compare_progress"), "the comparison", 600)
        page.fill("train_tools_compare_weights", "0, lots")
        page.click("train_tools_compare")
        page.wait_text("train_tools_result_status", "'lots' はウェイトではありません")
        look()
        # The Generate tab with the LoRA: its info line.
        page.open_tab("生成")
        page.wait(lambda: page.find("#train_tools_gen_button").is_displayed(), "the Generate tab")
        for elem_id, value in (("train_tools_gen_steps", "2"), ("train_tools_gen_width", "64")):
            page.type_number(elem_id, value)
        page.type_number("train_tools_gen_height", "64")
        page.fill("train_tools_gen_prompt", "1girl <lora:日本語のテスト_v1:0.8>")
        page.click("train_tools_gen_button")
        page.wait(lambda: look() or "ハッシュ" in page.text("train_tools_gen_info"), "the generated image's line", 600)
        look()
        page.open_tab("Train Tools")
        page.wait(lambda: page.find("#train_tools_create_project").is_displayed(), "the Train Tools tab again")
        assert "Drop File Here" not in shown and "Click to Upload" not in shown
        assert "Error" not in shown
        assert "スキップ" in shown and "出現回数順" in shown  # radio options
        (ARTIFACTS / "12-japanese-lines.txt").write_text("\n".join(seen) + "\n", encoding="utf-8")
        assert len(seen) >= 8, seen
        # The training log, the job bar and the import report were read too (and are Japanese, below).
        assert (
            "データセットを走査中" in seen
            and "表示" in seen
            and any("読める画像ではありません" in line for line in seen)
        )
        assert not _english(seen), _english(seen)
        # Back to English with an edit not saved yet: the page is relabelled and the form keeps the edit.
        steps = "#train_tools_cfg_max_steps input"
        page.wait(lambda: page.value(steps) == "4", "the settings this version trained with")
        page.fill("train_tools_cfg_max_steps", "7")
        page.wait_text("train_tools_plan", "最大ステップ数 7")
        page.press("#train_tools_language input[value='English']")
        page.wait(lambda: page.find("#train_tools_create_project").text == "Create project", "English labels again")
        page.wait_text("train_tools_train_progress", "Finished: 4 steps")  # the job's line, shown again
        page.wait_text("train_tools_plan", "max steps 7")
        assert page.value(steps) == "7"
        # A new version has never trained: the form keeps the edit. Back on v1: the settings it trained with.
        page.fill("train_tools_name", "v2")
        page.click("train_tools_create_version")
        page.wait_text("train_tools_project_status", "Created version v2")
        page.wait_text("train_tools_plan", "0 images")  # the new version's plan: its change event has run
        assert page.value(steps) == "7"
        page.choose("train_tools_version", "v1")
        page.wait(lambda: page.value(steps) == "4", "v1's saved settings in the form")
        page.wait_text("train_tools_plan", "max steps 4")


def _three_projects(home: Path, images: list[Path]) -> None:
    """ "Dog" v1 (empty), "My Cat" v1 (two captioned images, trained: its settings and LoRA file), "猫" v1 (one image)
    and v2 (empty), written before the app starts; the page last showed My Cat v1."""
    from lora_ext.app import recent, train_settings
    from lora_ext.config import save_config
    from lora_ext.dataset.projects import ProjectStore

    store = ProjectStore(home / "projects")
    for name in ("Dog", "My Cat", "猫"):
        store.create_project(name)
    store.create_version("猫", "v2")
    red, blue = images[:2]
    cat = store.version("My Cat", "v1")
    for image, caption in ((red, "my cat, red theme"), (blue, "my cat, blue theme")):
        shutil.copyfile(image, cat.dataset / image.name)
        (cat.dataset / image.with_suffix(".txt").name).write_text(caption, "utf-8")
    shutil.copyfile(red, store.version("猫", "v1").dataset / "red.png")
    preset = train_settings.preset_config("fast-test", "sd1", has_gpu=False, is_demo=True)
    settings = {**train_settings.config_values(preset), "rank": 3, "max_steps": 2}
    config = train_settings.build_config(settings, str(cat.dataset), "My Cat_v1")
    save_config(config, cat.config / train_settings.SETTINGS_FILE)
    store.update_manifest("My Cat", "v1", {"output_name": "My Cat_v1"})
    lora = home / "models" / "Lora"
    lora.mkdir(parents=True, exist_ok=True)
    (lora / "My Cat_v1.safetensors").write_bytes(b"a LoRA file (the table only hashes it)")
    recent.remember(store.root, "My Cat", "v1")


def _in_view(page: Page, elem_id: str, inner: str = "") -> bool:
    """Whether the element's top edge is on screen (not scrolled above or below the window)."""
    script = "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.top < window.innerHeight;"
    return bool(page.driver.execute_script(script, page.find(f"#{elem_id} {inner}".strip())))


@pytest.mark.timeout(1500)  # a busy 2-core machine: generous, never a timing assert
def test_browser_every_view_shows_the_selected_project(tmp_path: Path) -> None:
    """Three projects, two of them with a v1: the page load, choosing a project or a version, a job's bar and
    its button, a reload, create, rename and delete each show the selected version in every view."""
    token = "#train_tools_lora_token input, #train_tools_lora_token textarea"
    with _data_folder("train-tools-e2e-pick-") as home:
        _three_projects(home, write_images(tmp_path / "images"))
        with _serve(home, "server-pick.log") as server, _chromium(home) as browser:
            page = Page(browser)

            def gallery(count: int) -> None:
                page.wait_text("train_tools_gallery_note", f"Showing {count} of {count} images", 120)
                page.wait(
                    lambda: len(browser.find_elements(page.by.CSS_SELECTOR, "#train_tools_gallery img")) == count,
                    f"{count} images in the gallery",
                    120,
                )

            def shows(project: str, version: str, images: int, lora: str = "") -> None:
                page.wait(
                    lambda: (
                        (page.value("#train_tools_project input"), page.value("#train_tools_version input"))
                        == (project, version)
                    ),
                    f"{project} {version} selected",
                    120,
                )
                gallery(images)
                page.wait_text("train_tools_plan", f"{images} images", 120)
                page.wait_text("train_tools_form_source", f"{project} / {version}", 120)
                page.wait(lambda: page.value(token) == (f"<lora:{lora}:0.8>" if lora else ""), f"the token {lora}", 120)
                files = page.text("train_tools_result_files")
                assert (f"{lora}.safetensors" in files) if lora else ".safetensors" not in files, files

            # The page load: the version shown last, with every view of it (the A1111 page showed none).
            browser.get(server)
            page.wait(lambda: page.find("#train_tools_create_project"), "the Train Tools tab")
            page.restored()
            shows("My Cat", "v1", 2, "My Cat_v1")
            assert page.value("#train_tools_cfg_rank input") == "3"
            assert (
                page.find("#train_tools_gallery img").get_attribute("alt").startswith("blue.png · my cat")
            )  # its name
            # Dog v1 after My Cat v1: the version's name stays, every view changes.
            page.choose("train_tools_project", "Dog")
            shows("Dog", "v1", 0)
            page.wait_text("train_tools_form_source", "has not been trained yet")
            page.choose("train_tools_project", "猫")
            shows("猫", "v2", 0)  # a project opens on its last version
            page.choose("train_tools_version", "v1")
            shows("猫", "v1", 1)
            # Quick choices, each before the last one is shown: the page ends on the last one.
            for project in ("My Cat", "Dog", "猫"):
                page.choose("train_tools_project", project)
            shows("猫", "v2", 0)
            page.choose("train_tools_version", "v1")
            shows("猫", "v1", 1)
            page.shot("13-picked")

            # A training of 猫 v1: Start and its progress bar are on screen together. (The form still holds what
            # My Cat trained with, max steps 2: 猫 never trained. The preset's 0 says its values are in.)
            page.choose("train_tools_preset", "fast-test")
            page.wait(lambda: page.value("#train_tools_cfg_max_steps input") == "0", "the preset values")
            page.fill("train_tools_cfg_max_steps", "4")
            page.wait_text("train_tools_plan", "max steps 4")
            page.click("train_tools_start_training")
            page.wait_text("train_tools_train_progress", "Training")
            assert _in_view(page, "train_tools_start_training") and _in_view(page, "train_tools_train_progress")
            # Another project while it runs: the job is in the bar at the top, not in Dog's sections.
            page.choose("train_tools_project", "Dog")
            shows("Dog", "v1", 0)
            page.wait_text("train_tools_job_bar", "猫 / v1", 120)
            assert page.text("train_tools_train_progress") == ""
            browser.execute_script("window.scrollTo(0, document.body.scrollHeight);")
            page.wait(lambda: _in_view(page, "train_tools_job_bar", ".tt-jobbar"), "the bar at the top", 30)
            page.press("#train_tools_job_bar .tt-jump")  # its button: 猫 v1 again, and its section on screen
            page.wait(lambda: page.value("#train_tools_project input") == "猫", "the job's project", 120)
            gallery(1)
            page.wait_text("train_tools_train_progress", "Finished: 4 steps", 900)
            page.wait(lambda: _in_view(page, "train_tools_section_train"), "the Train section on screen", 30)
            page.wait(lambda: page.value(token) == "<lora:猫_v1:0.8>", "猫 v1's token", 120)
            page.shot("14-job-bar")

            # A reload opens on 猫 v1 with its views; create, rename and delete each show what they selected.
            browser.refresh()
            page.wait(lambda: page.find("#train_tools_create_project"), "the Train Tools tab after the reload")
            page.restored()
            shows("猫", "v1", 1, "猫_v1")
            page.fill("train_tools_name", "Bird")
            page.click_until("train_tools_create_project", "train_tools_project_status", "Created project Bird")
            shows("Bird", "v1", 0)
            page.choose("train_tools_project", "My Cat")
            shows("My Cat", "v1", 2, "My Cat_v1")
            page.fill("train_tools_name", "Kitty")
            page.click_until("train_tools_rename_project", "train_tools_project_status", "Renamed My Cat → Kitty")
            shows("Kitty", "v1", 2, "My Cat_v1")  # the LoRA keeps the name it was trained under
            page.click("train_tools_delete_project")
            page.wait(lambda: page.find("#train_tools_confirm_delete").is_displayed(), "the question", 60)
            page.click("train_tools_confirm_delete")
            shows("Bird", "v1", 0)
            assert "Error" not in page.visible_text()
