"""The page follows server-side jobs by short polls and reopens where the user left off (``lora_ext/ui/live.py``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from ui_fixtures import change_then, selection_shown, write_images

from lora_ext.app import recent
from lora_ext.app.context import Context, Workspace
from lora_ext.errors import HostUnavailable
from lora_ext.host import training_capabilities
from lora_ext.ui import dataset_section, editor_section, live, projects, result_section, selection, train_section
from lora_ext.ui.i18n import I18n
from lora_ext.ui.projects import selection_key

PLAN = {
    "cfg_default_repeats": 1,
    "cfg_epochs": 1,
    "cfg_max_steps": 0,
    "cfg_batch_size": 1,
    "cfg_gradient_accumulation": 1,
}


@pytest.fixture
def host(make_standalone_host):
    return make_standalone_host("sd1")


def _context(host, root: Path) -> Context:
    return Context(lambda: host, Workspace(root / "projects", root / "tagger"), i18n=I18n())


@pytest.fixture
def ctx(host, tmp_path: Path) -> Context:
    return _context(host, tmp_path)


def _value(update):
    return update["value"] if isinstance(update, dict) else update


def _page_load(ctx: Context, preset: str | None = None, **form) -> dict:
    """What a page load shows: ``restore`` selects the last-used version, and the selection's change shows it."""
    restored = live.restore(ctx)
    return {**restored, **selection_shown(ctx, restored["selection"], preset, **form)}


def _with_images(ctx: Context, tmp_path: Path, project: str = "猫") -> None:
    projects.create_project(ctx, name=project)
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / "drop")]
    dataset_section.add_files(ctx, project=project, version="v1", files=files, target_folder="")


def test_a_training_started_through_the_rest_api_is_shown_by_a_fresh_page_load(ctx: Context, tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import build_router

    _with_images(ctx, tmp_path)
    app = FastAPI()
    app.include_router(build_router(ctx.host_provider, {}, context=ctx))
    body = {"preset": "fast-test", "max_steps": 2, "sample_prompts": ""}
    answer = TestClient(app).post("/train-tools/v1/projects/猫/versions/v1/train", json=body)
    assert answer.status_code == 200, answer.text
    loaded = _page_load(ctx, **PLAN)  # the page loads while the job may still run: it re-attaches
    job = ctx.jobs.current
    assert loaded["job_seen"].startswith(f"{job.id}:") and "Train" in loaded["train_progress"]
    assert job.finished_event.wait(600) and job.error is None
    reloaded = _page_load(ctx, **PLAN)  # a reload after the end shows the result, read from the job
    assert "Finished: 2 steps" in reloaded["train_progress"] and reloaded["job_seen"] == f"{job.id}:done"
    assert reloaded["lora_token"] == "<lora:猫_v1:0.8>"
    assert "Error" not in str(reloaded)


def test_a_poll_shows_the_end_once_and_an_idle_poll_changes_nothing(ctx: Context, tmp_path: Path) -> None:
    _with_images(ctx, tmp_path)
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=2, cfg_sample_prompts="")
    started = train_section.start_training(ctx, project="猫", version="v1", **values)
    assert ctx.jobs.current.finished_event.wait(600)
    ended = live.poll(ctx, selection=selection_key("猫", "v1"), job_seen=started["job_seen"])
    assert "Finished: 2 steps" in ended["train_progress"] and ended["result_name"] == "猫_v1"
    work_dir = ctx.store.version("猫", "v1").outputs / "猫_v1"  # with the version, not in the LoRA folder
    assert str(work_dir) in ended["result_work_dir"] and (work_dir / "loss.csv").is_file()
    assert not [path for path in ctx.host.lora_dir.iterdir() if path.is_dir()]
    assert live.poll(ctx, selection=selection_key("猫", "v1"), job_seen=ended["job_seen"]) == {}
    # Another tab that has not seen this job yet (or a page that lost its last poll) gets the end too.
    assert "Finished: 2 steps" in live.poll(ctx, selection=selection_key("猫", "v1"), job_seen="")["train_progress"]


def test_overlapping_polls_of_one_page_show_a_job_s_end_once(ctx: Context, tmp_path: Path) -> None:
    """On a busy machine a page sends its next poll before the answer of the one showing the end arrived: the
    later poll, still saying "running", must not fill the grid form again over what the user typed meanwhile."""
    _with_images(ctx, tmp_path)
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=2, cfg_sample_prompts="")
    started = train_section.start_training(ctx, project="猫", version="v1", **values)
    assert ctx.jobs.current.finished_event.wait(600)
    ends = live.ShownOnce()
    asked = {"selection": selection_key("猫", "v1"), "job_seen": started["job_seen"], "ends": ends}
    first = live.poll(ctx, page_id="page-a", **asked)
    assert "Finished: 2 steps" in first["train_progress"] and "compare_prompt" in first  # the end, the form filled
    late = live.poll(ctx, page_id="page-a", **asked)  # sent before ``first`` arrived: the same stale job_seen
    assert "Finished: 2 steps" in late["train_progress"] and late["job_seen"] == first["job_seen"]  # its lines
    assert not {"compare_prompt", "result_name", "lora_token"} & set(late)  # but not what the end changed
    other = live.poll(ctx, page_id="page-b", **asked)  # another page (tab) gets its own end
    assert "Finished: 2 steps" in other["train_progress"] and "compare_prompt" in other


def test_a_page_is_given_a_run_s_grid_form_once_so_a_late_view_keeps_what_the_user_typed(
    ctx: Context, tmp_path: Path
) -> None:
    """A ``show`` that waited for the model lands after the poll that showed the training's end (seen in CI's
    browser test): it must not put the dataset's prompt back over the one the user typed meanwhile."""
    _with_images(ctx, tmp_path)
    projects.create_version(ctx, project="猫", name="v2")
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=2, cfg_sample_prompts="")
    started = train_section.start_training(ctx, project="猫", version="v1", **values)
    assert ctx.jobs.current.finished_event.wait(600)
    forms, ends, chosen = live.ShownOnce(), live.ShownOnce(), selection_key("猫", "v1")
    ended = live.poll(ctx, chosen, started["job_seen"], page_id="page-a", ends=ends, grid_forms=forms)
    assert {"compare_prompt", "compare_steps", "grid_estimate"} <= set(ended) and ended["lora_token"]  # its form
    late = selection.show(ctx, chosen, page_id="page-a", grid_forms=forms)  # the same run's views again
    assert late["lora_token"] == ended["lora_token"] and late["shown"] == chosen
    assert not {*result_section.GRID_FORM, "grid_estimate"} & set(late)  # but the form is left as typed
    assert "compare_prompt" in selection.show(ctx, chosen, page_id="page-b", grid_forms=forms)  # another page
    assert "compare_prompt" in selection.show(ctx, chosen, grid_forms=forms)  # an unnamed one: always
    selection.show(ctx, selection_key("猫", "v2"), page_id="page-a", grid_forms=forms)  # another version, then back
    assert "compare_prompt" in selection.show(ctx, chosen, page_id="page-a", grid_forms=forms)


def test_what_pages_were_shown_is_remembered_for_the_most_recent_pages_only() -> None:
    ends = live.ShownOnce()
    assert ends.first("page-0", "done") and not ends.first("page-0", "done")
    for n in range(1, live.ShownOnce.PAGES + 1):  # as many newer pages as it keeps push the first one out
        assert ends.first(f"page-{n}", "done")
    assert ends.first("page-0", "done")  # forgotten: shown once more, nothing worse
    assert not ends.first(f"page-{live.ShownOnce.PAGES}", "done")  # the newest are still remembered


def test_the_page_reopens_on_the_last_used_version_even_after_a_restart(host, ctx: Context, tmp_path: Path) -> None:
    _with_images(ctx, tmp_path)
    projects.create_project(ctx, name="b")
    projects.create_version(ctx, project="b", name="v2")
    editor_section.load_version(ctx, project="猫", version="v1")  # what the version's change event does
    loaded = _page_load(_context(host, tmp_path), **PLAN)  # a new server process on the same data folder
    assert _value(loaded["project"]) == "猫" and _value(loaded["version"]) == "v1"
    assert loaded["project"]["choices"] == ["b", "猫"]
    assert len(loaded["gallery"]) == 2 and "2 images" in loaded["editor_state"]  # filled without a change event
    assert "2 images" in loaded["plan"]
    editor_section.load_version(ctx, project="b", version="v2")
    assert recent.recall(ctx.workspace.projects_root) == ("b", "v2")
    assert ctx.store.list_projects() == ["b", "猫"]  # the remembered selection is not a project


def test_without_a_project_the_page_says_what_to_do_first(ctx: Context) -> None:
    loaded = _page_load(ctx, **PLAN)
    assert 'data-ready="0"' in loaded["first_step"] and "Create a project first" in loaded["first_step"]
    created = projects.create_project(ctx, name="p")
    assert 'data-ready="1"' in created["first_step"] and "Create a project first" not in created["first_step"]


def test_a_refused_start_is_one_error_line_that_leaves_the_train_outputs_alone(ctx: Context) -> None:
    import gradio as gr

    from lora_ext.host import HostCapabilities
    from lora_ext.ui.common import bind

    projects.create_project(ctx, name="p")
    ctx.host.capabilities = lambda: HostCapabilities(can_train=False, reasons=["the WebUI runs with --lowvram"])
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    names = ("train_progress", "train_log", "previews", "train_status", "job_seen")
    outputs = {name: name.upper() for name in names}
    fn = bind(train_section.start_training, ["project", "version", *values], outputs, ctx, status="TRAIN_STATUS")
    shown = fn("p", "v1", *values.values())
    assert "--lowvram" in shown["TRAIN_STATUS"] and shown["TRAIN_STATUS"].count("tt-msg-error") == 1
    assert all(shown[name.upper()] == gr.update() for name in names if name != "train_status")
    assert ctx.jobs.current is None


def test_a_reload_shows_the_settings_the_version_last_trained_with(host, ctx: Context, tmp_path: Path) -> None:
    from lora_ext.app import train_settings

    _with_images(ctx, tmp_path)
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=1, cfg_rank=3, cfg_sample_prompts="", cfg_output_name="")
    train_section.start_training(ctx, project="猫", version="v1", **values)
    assert ctx.jobs.current.finished_event.wait(600) and ctx.jobs.current.error is None
    saved = train_settings.saved_values(ctx.version("猫", "v1").config)
    assert (saved["rank"], saved["max_steps"], saved["resolution"]) == (3, 1, 64)
    assert saved["output_name"] == ""  # left empty: a copy of the version trains under its own name
    assert train_settings.saved_values(tmp_path / "no-such-version" / "config") is None

    defaults = train_section.apply_preset(ctx, preset_name="auto")  # what a fresh page's form holds
    loaded = _page_load(_context(host, tmp_path), preset="auto", **defaults)  # a reload, a new server process
    assert (loaded["cfg_rank"], loaded["cfg_max_steps"], loaded["cfg_resolution"]) == (3, 1, 64)
    assert loaded["cfg_output_name"] == "" and "max steps 1" in loaded["plan"]


def test_a_settings_file_that_is_not_valid_leaves_the_form_with_one_line(host, ctx: Context, tmp_path: Path) -> None:
    _with_images(ctx, tmp_path)
    editor_section.load_version(ctx, project="猫", version="v1")
    (ctx.version("猫", "v1").config / "train.toml").write_text("rank = [", "utf-8")
    loaded = _page_load(ctx, preset="auto", **PLAN)
    assert "cfg_rank" not in loaded and loaded["train_status"].count("tt-msg-warn") == 1
    assert "train.toml" in loaded["train_status"]


def test_the_page_load_fills_the_training_form_and_a_queued_event_toasts_failures(
    make_standalone_host, tmp_path: Path
) -> None:
    from lora_ext.ui.app import build_app

    app = build_app(make_standalone_host("sd1"), workspace=Workspace(tmp_path / "projects", tmp_path / "tagger"))
    _ctx, ui = app.train_tools

    def targets(dep: dict) -> list:  # gradio 3: [id]; gradio 4: [[id, event]]
        return [target[0] if isinstance(target, list | tuple) else target for target in dep["targets"]]

    restore = [dep for dep in app.get_config_file()["dependencies"] if ui["restore"]._id in targets(dep)]
    assert len(restore) == 1 and ui["selection"]._id in restore[0]["outputs"]
    # The page load sets the selection; its change fills the form (and every other view).
    shown, then_plan = change_then(app.get_config_file()["dependencies"], ui["selection"]._id)
    assert ui["plan"]._id in then_plan["outputs"]
    fields = train_section.field_components(ui).values()
    assert all(component._id in shown["outputs"] for component in fields)
    # The failure toast comes from a queued event (gradio drops a toast from the polls, which are not queued).
    (toast,) = [dep for dep in app.get_config_file()["dependencies"] if ui["job_failure"]._id in targets(dep)]
    assert toast["queue"] is not False and ui["job_failure"]._id in toast["inputs"]


def test_a_failed_job_is_toasted_once_while_its_line_stays(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    projects.create_project(ctx, name="p")
    # An image no decoder reads: the check before the run counts it, the training job fails on the server.
    ctx.version("p", "v1").dataset.joinpath("broken.png").write_bytes(b"not an image")

    def failing_training() -> tuple:
        started = train_section.start_training(ctx, project="p", version="v1", **PLAN)
        job = ctx.jobs.current
        assert job.finished_event.wait(600) and job.error is not None
        return started, job

    started, job = failing_training()
    polled = live.poll(ctx, selection=selection_key("p", "v1"), job_seen=started["job_seen"])
    assert polled["job_failure"].startswith(f"{job.id}: ") and "tt-msg-error" in polled["train_status"]
    assert (
        live.poll(ctx, selection=selection_key("p", "v1"), job_seen=polled["job_seen"]) == {}
    )  # the next polls: nothing
    other_tab = live.poll(ctx, selection=selection_key("p", "v1"), job_seen="")
    assert "tt-msg-error" in other_tab["train_status"] and "job_failure" not in other_tab
    reloaded = _page_load(ctx, **PLAN)
    assert "tt-msg-error" in reloaded["train_status"] and "job_failure" not in reloaded

    toasts: list[str] = []
    monkeypatch.setattr(gr, "Warning", toasts.append)
    assert live.toast_failure(ctx, job_failure=polled["job_failure"]) == {}
    assert toasts == [polled["job_failure"].split(": ", 1)[1]] and toasts[0] in polled["train_status"]

    # A failure no page has shown yet (it ended while the page was closed): the reload toasts it, once.
    _started, second = failing_training()
    assert _page_load(ctx, **PLAN)["job_failure"].startswith(f"{second.id}: ")
    assert "job_failure" not in _page_load(ctx, **PLAN)


def _save_settings(ctx: Context, project: str, version: str, **changes) -> None:
    """The version's ``config/train.toml`` as a training started with ``changes`` would have left it."""
    from lora_ext.app import train_settings
    from lora_ext.config import save_config

    paths = ctx.version(project, version)
    values = {name[len("cfg_") :]: value for name, value in train_section.apply_preset(ctx, "fast-test").items()}
    config = train_settings.build_config({**values, **changes}, str(paths.dataset), f"{project}_{version}")
    save_config(config, paths.config / train_settings.SETTINGS_FILE)


def test_choosing_another_version_fills_the_form_from_its_saved_settings(ctx: Context, tmp_path: Path) -> None:
    _with_images(ctx, tmp_path)
    projects.create_version(ctx, project="猫", name="v2")  # never trained: no settings of its own
    _save_settings(ctx, "猫", "v1", rank=3, max_steps=1)
    edited = {**train_section.apply_preset(ctx, preset_name="auto"), "cfg_rank": 7, "cfg_max_steps": 5}

    back_to_v1 = selection_shown(ctx, selection_key("猫", "v1"), preset="auto", **edited)
    assert (back_to_v1["cfg_rank"], back_to_v1["cfg_max_steps"], back_to_v1["cfg_resolution"]) == (3, 1, 64)
    assert "max steps 1" in back_to_v1["plan"] and not back_to_v1["train_status"]
    # A version that never trained keeps what the form holds (the user's values are not thrown away).
    to_v2 = selection_shown(ctx, selection_key("猫", "v2"), preset="auto", **edited)
    assert not [name for name in to_v2 if name.startswith("cfg_")] and "max steps 5" in to_v2["plan"]
    # A settings file that is not valid: one line, and the form keeps what it holds.
    (ctx.version("猫", "v2").config / "train.toml").write_text("rank = [", "utf-8")
    broken = selection_shown(ctx, selection_key("猫", "v2"), preset="auto", **edited)
    assert not [name for name in broken if name.startswith("cfg_")] and broken["train_status"].count("tt-msg-warn") == 1


class _CannotTrain:
    """A host that cannot train and cannot say its device (Forge's placeholder model, reForge): the rest is the host's."""

    def __init__(self, host) -> None:
        self._host = host

    def __getattr__(self, name):
        return getattr(self._host, name)

    @property
    def device(self):
        raise HostUnavailable("no checkpoint is loaded in the WebUI")

    def capabilities(self):
        return training_capabilities(refused="Forge has not loaded the checkpoint yet")


def test_the_saved_settings_fill_the_form_even_where_the_host_cannot_train(host, tmp_path: Path) -> None:
    setup = _context(host, tmp_path)
    _with_images(setup, tmp_path)
    _save_settings(setup, "猫", "v1", rank=3, max_steps=1)
    ctx = _context(_CannotTrain(host), tmp_path)
    edited = {**train_section.apply_preset(ctx, preset_name="fast-test"), "cfg_rank": 7}

    form = selection_shown(ctx, selection_key("猫", "v1"), preset="fast-test", **edited)
    assert (form["cfg_rank"], form["cfg_max_steps"]) == (3, 1) and not form["train_status"]
    assert "max steps 1" in form["plan"]  # the steps are counted; there is no estimate without a model
    assert _page_load(ctx, preset="fast-test", **edited)["cfg_rank"] == 3  # a reload fills it too


def test_a_language_switch_shows_the_page_again_without_resetting_the_form(ctx: Context, tmp_path: Path) -> None:
    _with_images(ctx, tmp_path)
    _save_settings(ctx, "猫", "v1", rank=3, max_steps=1)
    editor_section.load_version(ctx, project="猫", version="v1")
    edited = {**train_section.apply_preset(ctx, preset_name="fast-test"), "cfg_rank": 7, "cfg_max_steps": 5}
    assert _page_load(ctx, preset="fast-test", **edited)["cfg_rank"] == 3  # a reload: the saved settings

    relabelled = live.relabel(ctx, project="猫", version="v1", preset="fast-test", **edited)
    assert not [name for name in relabelled if name.startswith("cfg_")]  # unsaved edits stay in the form
    assert not {"caption", "caption_base", "selected_key", "project", "version"} & set(relabelled)
    assert "max steps 5" in relabelled["plan"] and len(relabelled["gallery"]) == 2
    assert 'data-restored="1"' in relabelled["first_step"]


def test_the_selection_change_fills_the_form_and_the_language_switch_never_writes_it(
    make_standalone_host, tmp_path: Path
) -> None:
    from lora_ext.ui.app import build_app

    app = build_app(make_standalone_host("sd1"), workspace=Workspace(tmp_path / "projects", tmp_path / "tagger"))
    _ctx, ui = app.train_tools
    dependencies = app.get_config_file()["dependencies"]

    def targets(dep: dict) -> list:  # gradio 3: [id]; gradio 4: [[id, event]]
        return [target[0] if isinstance(target, list | tuple) else target for target in dep["targets"]]

    fields = [component._id for component in train_section.field_components(ui).values()]
    on_selection = [dep for dep in dependencies if ui["selection"]._id in targets(dep)]
    assert [dep for dep in on_selection if set(fields) <= set(dep["outputs"])]
    # The switch itself relabels the fields (labels, help, options) and never sets a value...
    from lora_ext.ui.app import switch_language

    kept = [*train_section.field_components(ui).values(), ui["caption"], ui["caption_base"]]
    relabelled = switch_language(_ctx, "日本語")
    assert relabelled[ui["cfg_rank"]]["label"] != ui["cfg_rank"].label
    assert not [component for component in kept if "value" in relabelled.get(component, {})]
    # ...and what follows it (the views, the plan, the jobs' lines) leaves the form and the caption box alone.
    switch = {index for index, dep in enumerate(dependencies) if ui["language"]._id in targets(dep)}
    after, added = set(), switch
    while added:
        added = {index for index, dep in enumerate(dependencies) if dep.get("trigger_after") in added} - after
        after |= added
    assert after  # the views are shown again in the new language
    kept_ids = {component._id for component in kept}
    assert not [index for index in after if kept_ids & set(dependencies[index]["outputs"])]


def test_a_grid_shows_its_captions_and_progress_in_the_page_language(host, tmp_path: Path) -> None:
    from lora_ext.app.jobs import Job
    from lora_ext.ui import result_section

    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n("ja"))
    job = Job("Epoch grid", data={"cells": [("first.png", "base model"), ("second.png", "step 100 @ 0.8")]})
    job.report(1, 3, "cell 2/3: epoch 2 @ 0.8 (sampler step 5/20)")
    running = result_section.render_job(ctx, job)
    assert running["compare_gallery"] == [("first.png", "ベースモデル"), ("second.png", "ステップ 100 @ 0.8")]
    line = ctx.i18n.status(running["compare_progress"])  # the edge's translation
    assert "グリッド: セル 2/3: エポック 2 @ 0.8（サンプラーのステップ 5/20）" in line


def test_the_gallery_and_the_file_table_show_their_words_in_the_page_language(host, tmp_path: Path) -> None:
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n("ja"))
    _with_images(ctx, tmp_path)  # no captions yet
    captions = {caption for _image, caption in editor_section.view(ctx, "猫", "v1")["gallery"]}
    assert captions == {"red.png · （キャプションなし）", "blue.png · （キャプションなし）"}  # the file's name, then it
    host.lora_dir.mkdir(parents=True, exist_ok=True)
    for stem in ("猫_v1", "猫_v1-000002"):
        (host.lora_dir / f"{stem}.safetensors").write_bytes(b"not read for the table")
    from lora_ext.ui import result_section

    table = result_section.refresh(ctx, "猫", "v1", result_name="猫_v1")["result_files"]
    assert sorted(row[1] for row in table["data"]) == sorted(["最終", "エポック 2"])
