"""REST API under ``/train-tools/v1/``, mounted on the WebUI's (or the standalone) FastAPI app.

Routes added to the WebUI's app in ``on_app_started`` are not covered by
``--api-auth`` (only the WebUI's own ``Api.add_api_route`` adds it), so every
route here depends on ``require_auth``, built from the same credentials.

Every request body is capped (``MAX_JSON_BODY``; the API takes no uploads, only
JSON) by the router's route class: a larger body is answered 413 before it is read.

The API shares the UI's ``Context``: a job started here shows in the page and
the other way round, and only one long job runs at a time.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime.
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_ext.errors import DatasetError, LoraExtError
from lora_ext.host import Host

PREFIX = "/train-tools/v1"
MAX_JSON_BODY = 1024 * 1024  # bytes; the largest real body (a training form or a list of paths) is a few KiB


def parse_credentials(api_auth: str | None) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` (the WebUI's ``--api-auth`` format) → {user: password}."""
    credentials: dict[str, str] = {}
    for item in (api_auth or "").split(","):
        if ":" in item:
            user, password = item.strip().split(":", 1)
            credentials[user] = password
    return credentials


def credentials_match(credentials: dict[str, str], user: str, password: str) -> bool:
    """``user:password`` is one of ``credentials`` (constant-time on the password)."""
    expected = credentials.get(user)
    return expected is not None and secrets.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))


def auth_dependency(credentials: dict[str, str]):
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


def job_status(job: Any) -> dict[str, Any]:
    """A job as JSON: progress, and the outcome once finished."""
    if job is None:
        return {"name": None, "running": False}
    status: dict[str, Any] = {
        "name": job.name,
        "running": not job.finished,
        "done": job.done,
        "total": job.total,
        "fraction": round(job.fraction, 4),
        "text": job.text,
        "elapsed_seconds": round(job.elapsed, 1),
        "cancel_requested": job.cancel_event.is_set(),
    }
    info = job.data.get("progress")
    if info is not None:
        status["training"] = {
            "step": info.step,
            "total_steps": info.total_steps,
            "epoch": info.epoch,
            "epochs": info.epochs,
            "loss": info.loss,
            "smoothed_loss": info.smoothed_loss,
            "lr": info.lr,
            "its_per_second": info.its_per_second,
            "eta_seconds": info.eta_seconds,
        }
    phase = job.data.get("phase")
    if phase is not None:  # scanning, caching, training, preview or saving, with that phase's own n/N
        status["phase"] = {
            "phase": phase.phase,
            "done": phase.done,
            "total": phase.total,
            "text": phase.text,
            "eta_seconds": round(phase.eta_seconds, 1),
        }
    if job.finished:
        if job.error is not None:
            message = job.error.one_line() if isinstance(job.error, LoraExtError) else repr(job.error)
            status["error"] = message
        else:
            status["result"] = _result(job.result)
    return status


def _result(result: Any) -> Any:
    if result is None:
        return None
    if hasattr(result, "status") and hasattr(result, "steps"):  # training.run.TrainResult
        return {
            "status": result.status,
            "path": str(result.path) if result.path else None,
            "steps": result.steps,
            "total_steps": result.total_steps,
            "final_loss": result.final_loss,
            "saved": [str(path) for path in result.saved],
            "skipped": [{"path": str(item.path), "reason": item.reason} for item in result.skipped],
        }
    if hasattr(result, "tagged"):  # tagger.TagReport
        return {
            "total": result.total,
            "tagged": len(result.tagged),
            "kept": len(result.kept),
            "changed": result.changed,
            "cancelled": result.cancelled,
            "skipped": [{"path": str(path), "reason": reason} for path, reason in result.skipped],
            "warnings": list(result.warnings),
        }
    return str(result)


def build_router(
    host_provider: Callable[[], Host], credentials: dict[str, str], context: Any = None, loader: Any = None
):
    """The API router; every route requires auth when credentials are set."""
    from fastapi import APIRouter, Depends, HTTPException
    from pydantic import BaseModel

    from lora_ext.ui.workspace import Context, Workspace

    class NameBody(BaseModel):
        name: str

    class IngestBody(BaseModel):
        paths: list[str]
        target_folder: str = ""

    class CaptionsBody(BaseModel):
        captions: dict[str, str]

    router = APIRouter(
        prefix=PREFIX,
        dependencies=[Depends(auth_dependency(credentials))],
        route_class=body_limit_route(MAX_JSON_BODY),
    )
    state: dict[str, Any] = {"ctx": context}

    def ctx() -> Context:
        if state["ctx"] is None:
            try:
                workspace = Workspace.for_host(host_provider())
            except LoraExtError:
                workspace = Workspace.standalone()
            state["ctx"] = Context(host_provider, workspace)
        return state["ctx"]

    def guarded(call: Callable[[], Any], status_code: int = 400) -> Any:
        try:
            return call()
        except LoraExtError as error:
            raise HTTPException(status_code=status_code, detail=error.one_line()) from error

    @router.get("/host")
    def host_info() -> dict:
        info = guarded(lambda: host_provider().info, 409)
        return {
            "name": info.name,
            "family": info.family,
            "prediction": info.prediction,
            "naming": info.naming,
            "short_hash": info.short_hash,
            "is_demo": info.is_demo,
            "can_train": host_provider().capabilities().can_train,
            "reasons": host_provider().capabilities().reasons,
        }

    @router.get("/projects")
    def list_projects() -> list:
        store = ctx().store
        return [{"name": name, "versions": store.list_versions(name)} for name in store.list_projects()]

    @router.post("/projects")
    def create_project(body: NameBody) -> dict:
        created = guarded(lambda: ctx().store.create_project(body.name))
        return {"name": created, "versions": ctx().store.list_versions(created)}

    @router.post("/projects/{project}/versions")
    def create_version(project: str, body: NameBody) -> dict:
        paths = guarded(lambda: ctx().store.create_version(project, body.name))
        return {"project": paths.project, "version": paths.version}

    @router.get("/projects/{project}/versions/{version}")
    def version_info(project: str, version: str) -> dict:
        def read() -> dict:
            session = ctx().session(project, version, reload=True)
            return {
                "project": session.paths.project,
                "version": session.paths.version,
                "manifest": ctx().store.read_manifest(project, version),
                "images": len(session.editor.table),
                "captions": {key: ", ".join(tags) for key, tags in session.editor.table.as_dict().items()},
            }

        return guarded(read, 404)

    @router.put("/projects/{project}/versions/{version}/captions")
    def save_captions(project: str, version: str, body: CaptionsBody) -> dict:
        def run() -> dict:
            version_paths = ctx().version(project, version)
            result = ctx().store.caption_store(project, version).update(body.captions)
            session = ctx().editors.get((version_paths.project, version_paths.version))
            if session is not None and not session.editor.is_dirty:
                ctx().session(version_paths.project, version_paths.version, reload=True)  # the page shows it
            return {"written": list(result.written), "backup": result.backup}

        return guarded(run)

    @router.post("/projects/{project}/versions/{version}/ingest")
    def ingest_paths(project: str, version: str, body: IngestBody) -> dict:
        from lora_ext.dataset.ingest import IngestOptions, ingest

        def run() -> dict:
            version_paths = ctx().version(project, version)
            session = ctx().editors.get((version_paths.project, version_paths.version))
            if session is not None and session.editor.is_dirty:
                raise DatasetError("The caption editor has unsaved changes.", hint="save them in the page first")
            options = IngestOptions(target_folder=body.target_folder or None)
            report = ingest(body.paths, version_paths.dataset, options)
            ctx().session(version_paths.project, version_paths.version, reload=True)
            return {
                "summary": report.summary(),
                "added": [{"source": item.source, "stored": item.stored} for item in report.added],
                "skipped": [{"source": item.source, "reason": item.reason} for item in report.skipped],
                "notices": list(report.notices),
                "folders": report.folders,
            }

        return guarded(run)

    @router.post("/projects/{project}/versions/{version}/tag")
    def tag(project: str, version: str, body: dict[str, Any] | None = None) -> dict:
        from lora_ext.tagger import WriteOptions
        from lora_ext.tagger.models import default_model
        from lora_ext.ui.tagger_section import form_defaults, start_tagging, tag_options

        def run() -> dict:
            options = dict(body or {})
            model = options.pop("model", None) or default_model(ctx().workspace.tagger_dir)
            write = WriteOptions(existing=options.pop("existing", WriteOptions().existing))
            batch_size = int(options.pop("batch_size", 8))
            defaults = form_defaults()
            unknown = set(options) - set(defaults)
            if unknown:
                raise DatasetError(f"unknown tagging options: {', '.join(sorted(unknown))}")
            job = start_tagging(
                ctx(), project, version, model, tag_options(**{**defaults, **options}), write, batch_size
            )
            return job_status(job)

        return guarded(run, 409)

    @router.post("/projects/{project}/versions/{version}/train")
    def train_start(project: str, version: str, body: dict[str, Any] | None = None) -> dict:
        from lora_ext.ui import train_fields
        from lora_ext.ui.train_section import start_training_job

        def run() -> dict:
            settings = dict(body or {})
            resume = bool(settings.pop("resume", False))
            preset_name = settings.pop("preset", train_fields.AUTO_PRESET)
            host = host_provider()
            machine = (host.info.family, host.device.type != "cpu", host.info.is_demo)
            values = {**train_fields.config_values(train_fields.preset_config(preset_name, *machine)), **settings}
            job, config = start_training_job(ctx(), project, version, values, resume)
            return {**job_status(job), "output_name": config.output_name}

        return guarded(run, 409)

    @router.get("/train/status")
    def train_status() -> dict:
        return job_status(ctx().jobs.current)

    @router.post("/train/cancel")
    def train_cancel() -> dict:
        return {"cancelled": ctx().jobs.cancel(), **job_status(ctx().jobs.current)}

    @router.get("/jobs/current")
    def current_job() -> dict:
        return job_status(ctx().jobs.current)

    @router.post("/jobs/cancel")
    def cancel_job() -> dict:
        return {"cancelled": ctx().jobs.cancel(), **job_status(ctx().jobs.current)}

    @router.get("/loras")
    def list_loras() -> list:
        from lora_ext.loader import scan_lora_dirs

        entries = loader.available(refresh=True) if loader is not None else scan_lora_dirs([host_provider().lora_dir])
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

    @router.get("/loras/{name:path}")
    def inspect(name: str) -> dict:
        from lora_ext.formats.inspect import inspect_lora
        from lora_ext.loader import scan_lora_dirs

        entries = scan_lora_dirs([host_provider().lora_dir])
        entry = next((e for e in entries if name in (e.name, e.relative, e.alias)), None)
        if entry is None:
            raise HTTPException(status_code=404, detail=f"no LoRA called {name!r} in {host_provider().lora_dir}")
        return guarded(lambda: inspect_lora(entry.path), 422)

    return router
