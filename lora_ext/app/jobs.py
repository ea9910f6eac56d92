"""Long jobs (tagging, training, test generations) in a background thread, one at a time.

A job lives on the server, not in a page event: the page and the REST API start
it, then follow it by reading its status (``JobRunner.current`` / ``latest``), so
it survives a closed tab, a dropped connection and a reload.
Where the host has its own job slot (the WebUI's queue lock and ``shared.state``,
see ``hosts/a1111.py``: ``host.exclusive(name)``) the job runs inside it, so
generation and checkpoint switches wait for it and Interrupt stops it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lora_ext.errors import LoraExtError
from lora_ext.host import Host, HostJob


@dataclass
class Job:
    """One running or finished long job and what the page shows about it."""

    name: str
    id: int = 0  # 1, 2, … in the order jobs were started (the page tells a new job from one it has shown)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None  # when it finished (its time stays what it took, whenever a page asks)
    done: int = 0
    total: int = 0
    text: str = ""
    result: Any = None
    error: BaseException | None = None
    data: dict[str, Any] = field(default_factory=dict)  # job-specific live data (loss history, previews…)
    subject: tuple[str, str] | None = None  # (project, version) the job works on; the page shows it with that version
    cancel_event: threading.Event = field(default_factory=threading.Event)
    finished_event: threading.Event = field(default_factory=threading.Event)
    host_job: HostJob | None = None
    uses_model: bool = True  # False for jobs that leave the SD model alone (tagging)
    on_cancel: list[Callable[[], None]] = field(default_factory=list)
    _failure_announced: bool = field(default=False, repr=False)
    _announce_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self.finished_event.is_set()

    def announce_failure(self) -> bool:
        """True exactly once for a job that ended with an error: the one time a page toasts it
        (polls repeat, tabs and reloads re-attach; the status line shows it every time)."""
        if not self.finished or self.error is None:
            return False
        with self._announce_lock:
            first, self._failure_announced = not self._failure_announced, True
        return first

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def cancelled(self) -> bool:
        """True once the user pressed Cancel (or the WebUI's Interrupt)."""
        if self.host_job is not None and self.host_job.interrupted():
            self.cancel_event.set()
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.host_job is not None:  # the host's own stop (A1111: Interrupt), so a render ends at its next step
            self.host_job.interrupt()
        for callback in list(self.on_cancel):
            callback()

    def report(self, done: int, total: int, text: str = "") -> None:
        self.done, self.total, self.text = done, total, text
        if self.host_job is not None:
            self.host_job.progress(done, total, text)


class JobRunner:
    """Runs at most one long job at a time for the whole app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model = threading.Lock()  # held by a job that uses the model, or by a measurement on it
        self.current: Job | None = None
        self._latest: dict[str, Job] = {}  # the last job of each name, running or finished
        self._started = 0

    def latest(self, name: str) -> Job | None:
        """The last job called ``name`` (running or finished), for a page that re-attaches."""
        return self._latest.get(name)

    def busy(self) -> bool:
        return self.current is not None and not self.current.finished

    def require_free(self) -> None:
        """Raise the one-line "… is still running" while a job runs (checked again when one starts)."""
        job = self.current
        if job is not None and not job.finished:
            raise LoraExtError(f"{job.name} is still running", hint="wait for it to finish or cancel it first")

    def require_not_on(self, project: str, version: str | None = None) -> None:
        """Raise a one-line refusal while a job works on ``project`` (on ``version`` of it, when named): a rename
        or a move to the trash would pull its folders from under it."""
        job = self.current
        if job is None or job.finished or job.subject is None:
            return
        if job.subject[0] == project and version in (None, job.subject[1]):
            target = project if version is None else f"{project}/{version}"
            raise LoraExtError(
                f"{job.name} is still running on {target}", hint="wait for it to finish or cancel it first"
            )

    def model_busy(self) -> str | None:
        """The name of the running job that uses the SD model, if any."""
        job = self.current
        return job.name if job is not None and not job.finished and job.uses_model else None

    @contextlib.contextmanager
    def model_at_rest(self) -> Iterator[bool]:
        """Held while the page measures something on the model outside a job (the plan's step timings and
        memory probe, which swap the model's weights for a moment): yields whether no job uses the model; a
        job that starts meanwhile waits until the measurement ends, and so does another measurement (a few
        seconds), where a job's long hold is not waited for."""
        free = False
        while not free and not self.model_busy():
            free = self._model.acquire(timeout=0.1)
        try:
            yield free
        finally:
            if free:
                self._model.release()

    def start(
        self,
        name: str,
        work: Callable[[Job], Any],
        host: Host | None = None,
        uses_model: bool = True,
        prepare: Callable[[], None] | None = None,
        subject: tuple[str, str] | None = None,
    ) -> Job:
        """Run ``work(job)`` in a thread (inside ``host.exclusive`` when a host is given).

        ``prepare`` runs once the job is sure to start and before it does (saving its
        settings, say), so a job refused because another one runs writes nothing.
        ``subject``: the (project, version) the job works on, known before it starts.
        """
        with self._lock:
            self.require_free()
            if prepare is not None:
                prepare()  # under the lock: no other job can start in between
            self._started += 1
            job = Job(name, id=self._started, uses_model=uses_model, subject=subject)
            self.current = self._latest[name] = job

        def target() -> None:
            try:
                with self._model if uses_model else contextlib.nullcontext(), _exclusive(host, name) as host_job:
                    job.host_job = host_job
                    job.result = work(job)
            except BaseException as error:  # noqa: BLE001 - kept on the job and shown by the page
                job.error = error
            finally:
                job.ended = time.monotonic()
                job.finished_event.set()

        threading.Thread(target=target, name=f"train-tools-{name}", daemon=True).start()
        return job

    def cancel(self) -> bool:
        """Ask the running job to stop; False when nothing runs."""
        job = self.current
        if job is None or job.finished:
            return False
        job.cancel()
        return True


@contextlib.contextmanager
def _exclusive(host: Host | None, name: str) -> Iterator[HostJob | None]:
    if host is None:
        yield None
        return
    with host.exclusive(name) as host_job:
        yield host_job


def format_seconds(seconds: float) -> str:
    """``75`` → ``1:15``; ``3700`` → ``1:01:40``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def job_status(job: Any) -> dict[str, Any]:
    """A job as JSON (what the REST API answers): progress, and the outcome once finished."""
    if job is None:
        return {"name": None, "running": False}
    status: dict[str, Any] = {
        "name": job.name,
        "id": job.id,
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
    """The job's outcome as JSON: a result that knows its JSON form gives it; never a Python repr."""
    if result is None:
        return None
    if hasattr(result, "to_json"):  # results.Comparison
        return result.to_json()
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
    if isinstance(result, (str, int, float, bool)):
        return result
    return {"type": type(result).__name__}  # no JSON form: named, never dumped as a repr
