"""REST API under ``/train-tools/v1/``, mounted on the WebUI's (or the standalone) FastAPI app.

Routes added to the WebUI's app in ``on_app_started`` are covered neither by
``--api-auth`` (only the WebUI's own ``Api.add_api_route`` adds it) nor by
``--gradio-auth`` (gradio's login guards the page only), so every route here
depends on ``require_auth``, built from every login the WebUI knows (either works).

Every request body is capped (``MAX_JSON_BODY``; the API takes no uploads, only
JSON) by the router's route class: a larger body is answered 413 before it is read.

The API shares the page's ``Context`` (``lora_ext.app``): a job started here
shows in the page and the other way round, and only one long job runs at a time.
The routes are module-level functions that take the ``Context`` from a
dependency; ``build_router`` puts them under the prefix with auth and the
``Context`` of this mount.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime.
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from lora_ext.app import exports, grid, presets, runs, tagging, train_settings, training, trash
from lora_ext.app.context import Context, create_context
from lora_ext.app.jobs import job_status
from lora_ext.dataset.captions import join_tags
from lora_ext.errors import DatasetError, LoraExtError
from lora_ext.host import Host

PREFIX = "/train-tools/v1"
MAX_JSON_BODY = 1024 * 1024  # bytes; the largest real body (a training form or a list of paths) is a few KiB


Credentials = dict[str, tuple[str, ...]]  # user → every password that lets them in


def parse_credentials(*sources: str | Iterable[tuple[str, str]] | None) -> Credentials:
    """Logins from ``"user:pass,user2:pass2"`` strings (the WebUI's ``--api-auth`` / ``--gradio-auth`` format) or
    ``(user, password)`` pairs; a user named in several sources may sign in with any of their passwords."""
    credentials: Credentials = {}
    for source in sources:
        if isinstance(source, str) or source is None:
            pairs = [item.strip().split(":", 1) for item in (source or "").split(",") if ":" in item]
        else:
            pairs = list(source)
        for user, password in pairs:
            if password not in credentials.get(user, ()):
                credentials[user] = (*credentials.get(user, ()), password)
    return credentials


def credentials_match(credentials: Mapping[str, str | tuple[str, ...]], user: str, password: str) -> bool:
    """``user:password`` is one of ``credentials`` (constant-time on the password)."""
    expected = credentials.get(user, ())
    matched = False
    for candidate in (expected,) if isinstance(expected, str) else expected:
        matched |= secrets.compare_digest(password.encode("utf-8"), candidate.encode("utf-8"))
    return matched


def auth_dependency(credentials: Mapping[str, str | tuple[str, ...]]):
    """A FastAPI dependency: HTTP Basic against ``credentials``; open when there are none."""
    from fastapi import Depends, HTTPException, status
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    basic = HTTPBasic(auto_error=False)

    def require_auth(given: HTTPBasicCredentials | None = Depends(basic)) -> None:
        if not credentials:
            return
        if given is not None and credentials_match(credentials, given.username, given.password):
            return
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Basic"},
        )

    return require_auth


def body_limit_route(limit: int):
    """An ``APIRoute`` class answering 413 to a body over ``limit`` bytes (declared or actually sent)."""
    from fastapi import HTTPException, Request
    from fastapi.routing import APIRoute

    def too_large() -> HTTPException:
        return HTTPException(status_code=413, detail=f"Request body too large (the limit is {limit // 1024} KiB).")

    class BodyLimitRoute(APIRoute):
        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def limited(request: Request) -> Any:
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise too_large()
                received = 0
                receive = request.receive

                async def counted() -> Any:  # a chunked body has no length to trust: count what arrives
                    nonlocal received
                    message = await receive()
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise too_large()  # FastAPI re-raises an HTTPException met while reading the body
                    return message

                return await handler(Request(request.scope, counted))

            return limited

    return BodyLimitRoute


class Services:
    """What the routes of one mount work on: the shared ``Context`` (made on first use) and the loader."""

    def __init__(self, host_provider: Callable[[], Host], context: Any = None, loader: Any = None) -> None:
        self.host_provider = host_provider
        self.context = context
        self.loader = loader

    def ctx(self) -> Context:
        if self.context is None:
            self.context = create_context(self.host_provider)
        return self.context


_SCOPE_KEY = "train_tools.services"


def _services(request: Request) -> Services:
    return request.scope[_SCOPE_KEY]


def _ctx(request: Request) -> Context:
    return _services(request).ctx()


def _host(request: Request) -> Host:
    return _services(request).host_provider()


def _guarded(call: Callable[[], Any], status_code: int = 400) -> Any:
    try:
        return call()
    except LoraExtError as error:
        raise HTTPException(status_code=status_code, detail=error.one_line()) from error


class NameBody(BaseModel):
    name: str


class IngestBody(BaseModel):
    paths: list[str]
    target_folder: str = ""


class CaptionsBody(BaseModel):
    captions: dict[str, str]


class PresetBody(BaseModel):
    name: str
    settings: dict[str, Any] = {}  # any training settings; the rest are the defaults
    replace: bool = False


class ExportBody(BaseModel):
    format: str = "zip"  # or "folder"
    repeats: int | None = None  # top-level images' repeats; default: the version's training settings
    name: str = ""  # top-level images' folder name; default: the trigger word, else the project's name


class GridBody(BaseModel):
    """A grid of a run's files; each field left out takes the page's default (from the run's training)."""

    name: str = ""  # the run (its LoRA name); default: the version's latest
    prompts: list[str] | None = None
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    size: int | None = None
    weights: list[float] | None = None
    cfg_scale: float = 7.0


class KeepBody(BaseModel):
    file: str  # a saved file of one of the version's runs, by name (``NAME-000004.safetensors``)


routes = APIRouter(route_class=body_limit_route(MAX_JSON_BODY))


@routes.get("/host")
def host_info(request: Request) -> dict:
    info = _guarded(lambda: _host(request).info, 409)
    capabilities = _host(request).capabilities()
    return {
        "name": info.name,
        "family": info.family,
        "prediction": info.prediction,
        "zero_terminal_snr": info.zero_terminal_snr,
        "naming": info.naming,
        "short_hash": info.short_hash,
        "is_demo": info.is_demo,
        "can_train": capabilities.can_train,
        "reasons": capabilities.reasons,
    }


@routes.get("/projects")
def list_projects(ctx: Context = Depends(_ctx)) -> list:
    store = ctx.store
    return [{"name": name, "versions": store.list_versions(name)} for name in store.list_projects()]


@routes.post("/projects")
def create_project(body: NameBody, ctx: Context = Depends(_ctx)) -> dict:
    created = _guarded(lambda: ctx.store.create_project(body.name))
    return {"name": created, "versions": ctx.store.list_versions(created)}


@routes.post("/projects/{project}/versions")
def create_version(project: str, body: NameBody, ctx: Context = Depends(_ctx)) -> dict:
    paths = _guarded(lambda: ctx.store.create_version(project, body.name))
    return {"project": paths.project, "version": paths.version}


@routes.delete("/projects/{project}")
def delete_project(project: str, ctx: Context = Depends(_ctx)) -> dict:
    """Move a project with all its versions to the trash folder (refused while a job works on it)."""
    name = _guarded(lambda: ctx.store.project_name(project), 404)
    return {"project": name, "trash": str(_guarded(lambda: trash.trash_project(ctx, name), 409))}


@routes.delete("/projects/{project}/versions/{version}")
def delete_version(project: str, version: str, ctx: Context = Depends(_ctx)) -> dict:
    """Move one version to the trash folder (refused while a job works on it)."""
    paths = _guarded(lambda: ctx.store.version(project, version), 404)
    where = _guarded(lambda: trash.trash_version(ctx, paths.project, paths.version), 409)
    return {"project": paths.project, "version": paths.version, "trash": str(where)}


@routes.get("/projects/{project}/versions/{version}")
def version_info(project: str, version: str, ctx: Context = Depends(_ctx)) -> dict:
    def read() -> dict:
        session = ctx.session(project, version, reload=True)
        return {
            "project": session.paths.project,
            "version": session.paths.version,
            "manifest": ctx.store.read_manifest(project, version),
            "images": len(session.editor.table),
            "captions": {key: join_tags(tags) for key, tags in session.editor.table.as_dict().items()},
        }

    return _guarded(read, 404)


@routes.put("/projects/{project}/versions/{version}/captions")
def save_captions(project: str, version: str, body: CaptionsBody, ctx: Context = Depends(_ctx)) -> dict:
    from lora_ext.app.captions import save_captions as save

    def run() -> dict:
        result = save(ctx, project, version, body.captions)
        return {"written": list(result.written), "backup": result.backup}

    return _guarded(run)


@routes.post("/projects/{project}/versions/{version}/ingest")
def ingest_paths(project: str, version: str, body: IngestBody, ctx: Context = Depends(_ctx)) -> dict:
    from lora_ext.dataset.ingest import IngestOptions, ingest

    def run() -> dict:
        paths = ctx.version(project, version)
        ctx.require_saved_captions(paths, hint="save them in the page first")
        report = ingest(body.paths, paths.dataset, IngestOptions(target_folder=body.target_folder or None))
        ctx.session(paths.project, paths.version, reload=True)
        return {
            "summary": report.summary(),
            "added": [{"source": item.source, "stored": item.stored} for item in report.added],
            "skipped": [{"source": item.source, "reason": item.reason} for item in report.skipped],
            "notices": list(report.notices),
            "folders": report.folders,
        }

    return _guarded(run)


@routes.post("/projects/{project}/versions/{version}/export")
def export_dataset(project: str, version: str, body: ExportBody | None = None, ctx: Context = Depends(_ctx)) -> dict:
    """The dataset as kohya ``N_name`` folders (or a zip of them) in the version's ``exports/`` folder."""
    chosen = body or ExportBody()
    report = _guarded(lambda: exports.export_version(ctx, project, version, chosen.format, chosen.repeats, chosen.name))
    answer = {
        "path": str(report.destination),
        "folders": report.folders,
        "images": report.images,
        "captions": report.captions,
    }
    if report.destination.suffix == ".zip":
        answer["download"] = f"{PREFIX}/projects/{project}/versions/{version}/exports/{report.destination.name}"
    return answer


@routes.get("/projects/{project}/versions/{version}/exports/{file_name}")
def download_export(project: str, version: str, file_name: str, ctx: Context = Depends(_ctx)) -> Any:
    """An exported zip of the version, by its file name (nothing outside its ``exports/`` folder)."""
    from fastapi.responses import FileResponse

    path = _guarded(lambda: exports.exported_zip(ctx, project, version, file_name), 404)
    return FileResponse(path, media_type="application/zip", filename=path.name)


@routes.post("/projects/{project}/versions/{version}/tag")
def tag(project: str, version: str, body: dict[str, Any] | None = None, ctx: Context = Depends(_ctx)) -> dict:
    from lora_ext.tagger import WriteOptions
    from lora_ext.tagger.models import default_model

    def run() -> dict:
        options = dict(body or {})
        model = options.pop("model", None) or default_model(ctx.workspace.tagger_dir)
        write = WriteOptions(existing=options.pop("existing", WriteOptions().existing))
        batch_size = int(options.pop("batch_size", 8))
        defaults = tagging.form_defaults()
        unknown = set(options) - set(defaults)
        if unknown:
            raise DatasetError(f"unknown tagging options: {', '.join(sorted(unknown))}")
        chosen = tagging.tag_options(**{**defaults, **options})
        return job_status(tagging.start_tagging(ctx, project, version, model, chosen, write, batch_size))

    return _guarded(run, 409)


@routes.post("/projects/{project}/versions/{version}/train")
def train_start(project: str, version: str, body: dict[str, Any] | None = None, ctx: Context = Depends(_ctx)) -> dict:
    def run() -> dict:
        settings = dict(body or {})
        resume = bool(settings.pop("resume", False))
        preset = settings.pop("preset", "")
        # A resume trains the saved run's settings: the body's settings are only compared with them.
        values = settings if resume else training.preset_settings(ctx, preset, settings)
        started = training.start_training_job(ctx, project, version, values, resume)
        return {**job_status(started.job), **training.started_json(started)}

    return _guarded(run, 409)


@routes.get("/projects/{project}/versions/{version}/runs")
def version_runs(project: str, version: str, ctx: Context = Depends(_ctx)) -> list:
    """The version's training runs, the newest first: when, how each ended, its settings and its files."""
    return _guarded(lambda: [runs.run_json(run) for run in runs.version_runs(ctx, project, version)], 404)


@routes.get("/projects/{project}/versions/{version}/runs/{name}/epochs")
def run_epochs(project: str, version: str, name: str, ctx: Context = Depends(_ctx)) -> dict:
    """A run's saved files with each one's validation loss, the run's validation history and the suggested file."""
    return _guarded(lambda: {"name": name, **grid.version_epochs(ctx, project, version, name).to_json()}, 404)


@routes.post("/projects/{project}/versions/{version}/grid")
def grid_start(project: str, version: str, body: GridBody | None = None, ctx: Context = Depends(_ctx)) -> dict:
    """Render a run's epochs × weights grid (the job's result: the grid image, its cells and the suggestion)."""

    def run() -> dict:
        chosen = body or GridBody()
        default = grid.defaults(ctx, project, version, chosen.name or None)
        weights = ", ".join(f"{w:g}" for w in chosen.weights) if chosen.weights is not None else default.weights
        prompts = "\n".join(chosen.prompts) if chosen.prompts is not None else default.prompt
        size = chosen.size or default.size
        values = (prompts, chosen.negative_prompt, chosen.seed if chosen.seed is not None else default.seed)
        steps = chosen.steps or default.steps
        job = grid.start_grid(
            ctx, project, version, chosen.name or None, *values, steps, size, weights, chosen.cfg_scale
        )
        return job_status(job)

    return _guarded(run, 409)


@routes.post("/projects/{project}/versions/{version}/keep")
def keep_file(project: str, version: str, body: KeepBody, ctx: Context = Depends(_ctx)) -> dict:
    """Make a saved file the version's LoRA under the next numbered name; every earlier file stays as it was."""

    def keep() -> dict:
        kept = runs.keep_file(ctx, project, version, body.file)
        return {"name": kept.name, "path": str(kept.path), "kept_from": kept.source.name}

    return _guarded(keep, 409)


@routes.get("/presets")
def list_presets(ctx: Context = Depends(_ctx)) -> dict:
    """The built-in presets and yours (any of them is a train body's ``preset``)."""
    return {"built_in": train_settings.preset_choices(), "yours": presets.user_presets(ctx)}


@routes.post("/presets")
def save_preset(body: PresetBody, ctx: Context = Depends(_ctx)) -> dict:
    """Save settings as your preset (an existing one only with ``replace``)."""

    def save() -> dict:
        path = presets.save_preset(ctx, body.name, train_settings.build_config(body.settings, "", ""), body.replace)
        return {"name": path.stem, "path": str(path)}

    return _guarded(save)


@routes.get("/train/status")
@routes.get("/jobs/current")
def current_job(ctx: Context = Depends(_ctx)) -> dict:
    return job_status(ctx.jobs.current)


@routes.post("/train/cancel")
@routes.post("/jobs/cancel")
def cancel_job(ctx: Context = Depends(_ctx)) -> dict:
    return {"cancelled": ctx.jobs.cancel(), **job_status(ctx.jobs.current)}


def _lora_index(request: Request) -> Any:
    """The LoRA index ``<lora:…>`` uses (the mount's loader's), or one over the host's LoRA folder."""
    from lora_ext.loading.index import LoraIndex

    loader = _services(request).loader
    return loader.index if loader is not None else LoraIndex([_host(request).lora_dir])


@routes.get("/loras")
def list_loras(request: Request) -> list:
    entries = _lora_index(request).entries(refresh=True)
    return [
        {
            "name": entry.name,
            "alias": entry.alias,
            "path": str(entry.path),
            "size": Path(entry.path).stat().st_size,
            "sd_version": entry.sd_version,
            "prompt": f"<lora:{entry.alias or entry.name}:0.8>",
        }
        for entry in entries
    ]


@routes.get("/loras/{name:path}")
def inspect(name: str, request: Request) -> dict:
    from lora_ext.formats.inspect import inspect_lora

    index = _lora_index(request)
    entry = index.find(name)  # as <lora:name> finds it
    if entry is None:
        folders = ", ".join(str(folder) for folder in index.lora_dirs())
        raise HTTPException(status_code=404, detail=f"no LoRA called {name!r} in {folders}")
    return _guarded(lambda: inspect_lora(entry.path), 422)


def build_router(
    host_provider: Callable[[], Host], credentials: Mapping[str, Any], context: Any = None, loader: Any = None
) -> APIRouter:
    """The routes under ``PREFIX``; every route requires auth when credentials are set.

    Auth runs first, then the mount's ``Services`` are put on the request for the routes' dependencies.
    """
    services = Services(host_provider, context, loader)

    def attach(request: Request) -> None:
        request.scope[_SCOPE_KEY] = services

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(auth_dependency(credentials)), Depends(attach)])
    router.include_router(routes)
    return router
