"""The Train Tools tab in the real WebUI's page, in a headless Chromium: at page load and on each switch between two
projects whose versions have the same name (v1 → v1), the gallery, the tag editor and the plan show the selected
version's own images (issue 23: the real A1111 showed an empty gallery for the version it reopened on).

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (skipped without them); the helpers are the
standalone browser test's (``tests/test_browser_e2e.py``)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from real_webui.client import WebUIClient

# Two projects (created anew for each run, moved to the trash at its end), v1 each, with their own tags.
IMAGES = {"a": 3, "b": 5}
WAIT = 600  # seconds: the first plan times training steps of the full-size model on a busy 2-core CPU


def _write_images(folder: Path, letter: str, count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(letter) + count)
    paths = []
    for index in range(count):
        path = folder / f"{letter}{index}.png"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.with_suffix(".txt").write_text(f"page {letter}, pattern {index}", encoding="utf-8")
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def projects(webui: WebUIClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """letter → project name; each project's v1 holds ``IMAGES[letter]`` captioned images (tags ``page <letter>``)."""
    stamp = f"{os.getpid()}-{int(time.time())}"
    names = {}
    for letter, count in IMAGES.items():
        name = webui.create_project(f"real-webui-page-{letter}-{stamp}")
        paths = _write_images(tmp_path_factory.mktemp(f"page-{letter}"), letter, count)
        webui.post(f"/train-tools/v1/projects/{name}/versions/v1/ingest", {"paths": paths})
        assert webui.get(f"/train-tools/v1/projects/{name}/versions/v1")["images"] == count
        names[letter] = name
    return names


def _open_tab(page, webui: WebUIClient) -> None:
    """The WebUI's page (through its login form when it has one), its Train Tools tab, reopened by ``ui/live.py``."""
    from selenium.webdriver.common.by import By

    def shown(css: str) -> list:
        return [element for element in page.driver.find_elements(By.CSS_SELECTOR, css) if element.is_displayed()]

    def login_or_page() -> str | None:  # the WebUI's page may hold password fields of its own (Neo's settings)
        if page.driver.find_elements(By.CSS_SELECTOR, "#train_tools_create_project"):
            return "page"
        return "login" if shown("input[type=password]") else None

    page.driver.get(webui.base + "/")
    if page.wait(login_or_page, "the login form or the page", WAIT) == "login":  # the browser keeps the cookie
        assert webui.login, "the WebUI asks for a login: set TRAIN_TOOLS_REAL_WEBUI_LOGIN=user:pass"
        shown("input[type=text], input:not([type]), textarea")[0].send_keys(webui.login[0])
        shown("input[type=password]")[0].send_keys(webui.login[1], "\n")  # Enter submits; gradio then reloads
    page.wait(lambda: page.find("#train_tools_create_project"), "the Train Tools tab's content", WAIT)

    def tab_shown() -> bool:  # a click before the WebUI's page listens is lost: click until the tab shows
        page.open_tab("Train Tools")
        return page.find("#train_tools_create_project").is_displayed()

    page.wait(tab_shown, "the Train Tools tab open", WAIT)
    page.restored()


def _shows(page, webui: WebUIClient, project: str, version: str) -> None:
    """Every view of ``project`` / ``version`` shows its own images: the gallery and its note, the tag editor's
    line and chips, the plan. The count comes from the REST API, the tags name the project (``page <letter>``)."""
    from selenium.webdriver.common.by import By

    info = webui.get(f"/train-tools/v1/projects/{project}/versions/{version}")
    count = info["images"]
    tags = {caption.split(",")[0] for caption in info["captions"].values()}
    selected = (project, version)
    page.wait(
        lambda: (page.value("#train_tools_project input"), page.value("#train_tools_version input")) == selected,
        f"{project} {version} in the picker",
        WAIT,
    )
    page.wait_text("train_tools_gallery_note", f"Showing {count} of {count} images", WAIT)

    def tiles() -> list[str]:
        return [
            img.get_attribute("alt") or img.get_attribute("title") or ""  # the tile's caption (gradio 3 and 4)
            for img in page.driver.find_elements(By.CSS_SELECTOR, "#train_tools_gallery img")
        ]

    page.wait(lambda: len(tiles()) == count, f"{count} tiles in the gallery", WAIT)
    assert all(any(tag in alt for tag in tags) for alt in tiles()), (tags, tiles())
    page.wait(
        lambda: re.search(rf"\b{count} images,", page.text("train_tools_editor_state")), "the editor's line", WAIT
    )
    chips = page.text("train_tools_chips")
    assert all(tag in chips for tag in tags), (tags, chips)
    assert set(re.findall(rf"page [{''.join(IMAGES)}]", chips)) <= tags, chips  # no other project's tag
    page.wait(lambda: re.search(rf"(?<!\d){count} images\b", page.text("train_tools_plan")), "the plan's line", WAIT)


def _selected(page) -> tuple[str, str]:
    return page.value("#train_tools_project input") or "", page.value("#train_tools_version input") or ""


@pytest.mark.timeout(3 * 3600)  # a busy 2-core machine and a full-size model on CPU: generous, never a timing assert
def test_every_view_shows_the_selected_version_at_page_load_and_on_each_switch(webui, projects, tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements/test.txt)")
    from test_browser_e2e import Page, _chromium

    a, b = projects["a"], projects["b"]
    with _chromium(tmp_path) as driver:
        page = Page(driver)
        _open_tab(page, webui)
        # The page load: the version the page reopens on (the last one used), whichever it is, shows its own views.
        page.wait(lambda: all(_selected(page)), "a version selected at page load", WAIT)
        _shows(page, webui, *_selected(page))
        for project in (a, b, a):  # v1 → v1: only the project's name changes
            page.choose("train_tools_project", project)
            _shows(page, webui, project, "v1")
        page.choose("train_tools_project", b)
        _shows(page, webui, b, "v1")
        # A page load that reopens on a known version (the last one shown), then a switch from it.
        _open_tab(page, webui)
        _shows(page, webui, b, "v1")
        page.shot("real-webui-page-load")
        page.choose("train_tools_project", a)
        _shows(page, webui, a, "v1")
