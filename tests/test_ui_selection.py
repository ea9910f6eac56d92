"""Every view shows the selected project and version: one selection, keyed by both, that every view follows.

"Dog" v1 → "My Cat" v1 keeps the version's name; the views still change (the issue this guards: they reloaded
only on a change of the version's name). Each way of changing the selection (choosing, creating, renaming,
duplicating, deleting, the page load) sets the selection, and only the selection's change fills a view.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from ui_fixtures import change_then, selection_shown, write_images

from lora_ext.app.context import Context, Workspace
from lora_ext.errors import LoraExtError
from lora_ext.ui import dataset_section, live, projects, train_section
from lora_ext.ui.i18n import I18n
from lora_ext.ui.projects import parse_selection, selection_key

FORM = {
    "cfg_default_repeats": 1,
    "cfg_epochs": 1,
    "cfg_max_steps": 0,
    "cfg_batch_size": 1,
    "cfg_gradient_accumulation": 1,
}
# What the page shows of a version: every view the selection's change must fill.
VIEWS = (
    *("gallery", "gallery_note", "chips", "editor_state", "selected_key", "caption", "confidences"),
    *("plan", "form_source", "result_name", "result_files", "lora_token", "result_work_dir"),
    *("train_progress", "loss_plot", "train_log", "previews", "tag_progress", "tag_report"),
    *("compare_progress", "compare_gallery"),
)


@pytest.fixture
def ctx(make_standalone_host, tmp_path: Path) -> Context:
    host = make_standalone_host("sd1")
    return Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())


def _value(update):
    return update["value"] if isinstance(update, dict) else update


def _add_images(ctx: Context, tmp_path: Path, project: str, version: str = "v1") -> None:
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / f"drop-{project}")]
    dataset_section.add_files(ctx, project=project, version=version, files=files, target_folder="")


def _shown(ctx: Context, changed: dict, **form) -> dict:
    """What the page shows after a handler's outputs: the selection it set, then its change."""
    return selection_shown(ctx, changed["selection"], "fast-test", **{**FORM, **form})


def _trained(ctx: Context, project: str, rank: int) -> None:
    """The version as a finished training leaves it: its settings saved, its LoRA in the LoRA folder."""
    from lora_ext.app import train_settings
    from lora_ext.config import save_config

    paths = ctx.version(project, "v1")
    values = {name[4:]: value for name, value in train_section.apply_preset(ctx, "fast-test").items()}
    config = train_settings.build_config({**values, "rank": rank}, str(paths.dataset), f"{project}_v1")
    save_config(config, paths.config / train_settings.SETTINGS_FILE)
    ctx.store.update_manifest(project, "v1", {"output_name": f"{project}_v1"})
    ctx.host.lora_dir.mkdir(parents=True, exist_ok=True)
    (ctx.host.lora_dir / f"{project}_v1.safetensors").write_bytes(b"a LoRA file (not read by the table)")


def test_switching_between_projects_with_the_same_version_name_changes_every_view(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="Dog")
    projects.create_project(ctx, name="My Cat")
    _add_images(ctx, tmp_path, "My Cat")
    _trained(ctx, "My Cat", rank=3)
    on_dog = projects.select_project(ctx, project="Dog")
    dog = _shown(ctx, on_dog, cfg_rank=16)
    assert dog["gallery"] == [] and "0 images" in dog["plan"] and dog["lora_token"] == ""
    assert "Dog / v1 has not been trained yet" in dog["form_source"]

    on_cat = projects.select_project(ctx, project="My Cat")
    assert _value(on_cat["version"]) == "v1" and on_cat["selection"] != on_dog["selection"]  # v1 → v1, a change
    cat = _shown(ctx, on_cat, cfg_rank=16)
    assert len(cat["gallery"]) == 2 and "2 images" in cat["editor_state"] and "2 images" in cat["plan"]
    assert cat["cfg_rank"] == 3  # the settings My Cat trained with, not the form Dog left
    assert "settings My Cat / v1 last trained with" in cat["form_source"]
    assert cat["result_name"] == "My Cat_v1" and cat["lora_token"] == "<lora:My Cat_v1:0.8>"
    assert set(VIEWS) <= set(cat) and cat["shown"] == on_cat["selection"]  # what the views show, for the page

    # A new project (Japanese name): nothing of My Cat's.
    created = projects.create_project(ctx, name="猫のテスト")
    new = _shown(ctx, created, cfg_rank=3)
    assert parse_selection(created["selection"]) == ("猫のテスト", "v1")
    assert new["gallery"] == [] and "0 images" in new["plan"] and new["result_name"] == "" and new["lora_token"] == ""


def test_rename_duplicate_delete_and_versions_set_the_selection_that_the_views_follow(
    ctx: Context, tmp_path: Path
) -> None:
    projects.create_project(ctx, name="Dog")
    projects.create_project(ctx, name="Cat")
    _add_images(ctx, tmp_path, "Cat")
    renamed = projects.rename_project(ctx, project="Cat", name="Kitty")
    assert parse_selection(renamed["selection"]) == ("Kitty", "v1")
    assert len(_shown(ctx, renamed)["gallery"]) == 2
    copied = projects.duplicate_project(ctx, project="Kitty", name="Kitty 2")
    assert parse_selection(copied["selection"]) == ("Kitty 2", "v1") and len(_shown(ctx, copied)["gallery"]) == 2
    version = projects.create_version(ctx, project="Kitty 2", name="v2")
    assert parse_selection(version["selection"]) == ("Kitty 2", "v2") and _shown(ctx, version)["gallery"] == []
    deleted = projects.confirm_delete(ctx, delete_target="project:Kitty 2", project="Kitty 2", version="v2")
    assert parse_selection(deleted["selection"]) == ("Dog", "v1") and _shown(ctx, deleted)["gallery"] == []
    # The version list set by a handler or chosen by the user: the same key again, so nothing is shown twice.
    assert projects.select_version(ctx, project="Kitty", version="v1")["selection"] == selection_key("Kitty", "v1")


def test_a_project_or_version_a_job_works_on_is_neither_renamed_nor_moved_to_the_trash(ctx: Context) -> None:
    projects.create_project(ctx, name="Cat")
    projects.create_version(ctx, project="Cat", name="v2")
    release = threading.Event()
    job = ctx.jobs.start("Training", lambda job: release.wait(60), subject=("Cat", "v1"))
    try:
        attempts = [
            lambda: projects.rename_project(ctx, project="Cat", name="Kitty"),
            lambda: projects.rename_version(ctx, project="Cat", version="v1", name="v9"),
            lambda: projects.ask_delete(ctx, kind="project", project="Cat", version="v1"),
            lambda: projects.ask_delete(ctx, kind="version", project="Cat", version="v1"),
            lambda: projects.confirm_delete(ctx, delete_target="project:Cat", project="Cat", version="v1"),
            lambda: projects.confirm_delete(ctx, delete_target="version:Cat/v1", project="Cat", version="v1"),
        ]
        for attempt in attempts:
            with pytest.raises(LoraExtError, match="Training is still running on Cat"):
                attempt()
        assert ctx.store.list_projects() == ["Cat"] and ctx.store.list_versions("Cat") == ["v1", "v2"]
        projects.rename_version(ctx, project="Cat", version="v2", name="v3")  # another version: free
        assert ctx.store.list_versions("Cat") == ["v1", "v3"]
    finally:
        release.set()
        assert job.finished_event.wait(60)
    projects.rename_project(ctx, project="Cat", name="Kitty")  # once it ended
    assert ctx.store.list_projects() == ["Kitty"]


def test_a_selection_that_went_away_shows_empty_views_not_an_error(ctx: Context) -> None:
    projects.create_project(ctx, name="Dog")
    gone = selection_shown(ctx, selection_key("Gone", "v1"), "fast-test", **FORM)
    assert gone["gallery"] == [] and gone["result_files"]["data"] == [["", "", "", "", ""]]
    assert selection_shown(ctx, "", "fast-test", **FORM)["gallery"] == []  # the page before its load


def _targets(dep: dict) -> list:  # gradio 3: [id]; gradio 4: [[id, event]]
    return [target[0] if isinstance(target, list | tuple) else target for target in dep["targets"]]


@pytest.mark.parametrize("where", ["standalone", "webui"])
def test_only_the_selection_fills_the_views_and_every_picker_event_sets_it(
    where, make_standalone_host, tmp_path
) -> None:
    from lora_ext.ui.app import build_app
    from lora_ext.ui.tab import build_tab, create_context

    host = make_standalone_host("sd1")
    workspace = Workspace(tmp_path / "projects", tmp_path / "tagger")
    if where == "standalone":
        blocks = build_app(host, workspace=workspace)
    else:
        blocks = build_tab(lambda: host, create_context(lambda: host, workspace))
    _ctx, ui = blocks.train_tools
    dependencies = blocks.get_config_file()["dependencies"]
    views = {ui[name]._id for name in VIEWS} | {
        component._id for component in train_section.field_components(ui).values()
    }
    # Its change shows every view, then the plan of the form as that left it (``.then``).
    shown, then_plan = change_then(dependencies, ui["selection"]._id)
    assert views <= set(shown["outputs"]) | set(then_plan["outputs"]) and ui["plan"]._id in then_plan["outputs"]
    # The page's script presses *reshow* when gradio 3 dropped that change (``shown`` still differs from it).
    reshown, _plan = change_then(dependencies, ui["reshow"]._id)
    assert reshown["outputs"] == shown["outputs"] and ui["shown"]._id in shown["outputs"]
    picker = {ui[name]._id for name in ("project", "version")}
    # The standalone app's language switch relabels the picker (its label), it never selects.
    relabel = {ui["language"]._id} if "language" in ui else set()
    for dep in dependencies:
        if relabel & {*_targets(dep), *dep["outputs"]}:
            continue
        if picker & set(_targets(dep)):  # choosing a project or a version writes no view itself
            assert not views & set(dep["outputs"]), dep
        if picker & set(dep["outputs"]):  # create, rename, duplicate, delete, refresh, choose, page load, the job bar
            assert ui["selection"]._id in dep["outputs"], dep


def test_a_job_of_another_version_is_in_the_bar_and_not_in_the_sections(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="Dog")
    projects.create_project(ctx, name="My Cat")
    _add_images(ctx, tmp_path, "My Cat")
    values = {**train_section.apply_preset(ctx, preset_name="fast-test"), "cfg_max_steps": 1, "cfg_sample_prompts": ""}
    started = train_section.start_training(ctx, project="My Cat", version="v1", **values)
    job = ctx.jobs.current
    assert job.finished_event.wait(600) and job.error is None
    on_dog = live.poll(ctx, selection=selection_key("Dog", "v1"), job_seen=started["job_seen"])
    assert "My Cat / v1" in on_dog["job_bar"] and "Finished: 1 steps" in on_dog["job_bar"]
    assert "train_progress" not in on_dog and "result_name" not in on_dog  # Dog's sections are Dog's
    dog = selection_shown(ctx, selection_key("Dog", "v1"), "fast-test", **FORM)
    assert dog["train_progress"] == "" and dog["train_log"] == "" and dog["previews"] == []
    jumped = live.select_job(ctx)  # the bar's button: the job's version is selected, and its views follow
    assert jumped["selection"] == selection_key("My Cat", "v1") and _value(jumped["project"]) == "My Cat"
    cat = selection_shown(ctx, jumped["selection"], "fast-test", **FORM)
    assert "Finished: 1 steps" in cat["train_progress"] and cat["result_name"] == "My Cat_v1"


def test_the_plan_of_a_selection_says_what_is_wrong_with_the_form_not_to_pick_a_project(
    ctx: Context, tmp_path: Path
) -> None:
    """The real A1111 gave the form's Repeats a 0 (its saved defaults); the plan then said "Pick a project and
    version" under a selected version. A form that is not valid is the status line's error; only a version that
    went away asks to pick one."""
    from lora_ext.errors import ConfigError

    projects.create_project(ctx, name="Dog")
    _add_images(ctx, tmp_path, "Dog")
    planned = train_section._plan_for({"selection": None})
    assert "images" in planned(ctx, selection_key("Dog", "v1"), "fast-test", **FORM)["plan"]
    with pytest.raises(ConfigError, match="default_repeats"):
        planned(ctx, selection_key("Dog", "v1"), "fast-test", **{**FORM, "cfg_default_repeats": 0})
    assert "Pick a project" in planned(ctx, selection_key("Gone", "v1"), "fast-test", **FORM)["plan"]
