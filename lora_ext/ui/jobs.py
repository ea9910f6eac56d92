"""Long jobs (tagging, training, test generations) in a background thread, one at a time.

The page follows a job by polling it (a generator handler yields a snapshot
every half second), so a job survives a closed tab and the UI stays responsive.
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
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    text: str = ""
    result: Any = None
    error: BaseException | None = None
    data: dict[str, Any] = field(default_factory=dict)  # job-specific live data (loss history, previews…)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    finished_event: threading.Event = field(default_factory=threading.Event)
    host_job: HostJob | None = None
    uses_model: bool = True  # False for jobs that leave the SD model alone (tagging)
    on_cancel: list[Callable[[], None]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.finished_event.is_set()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def cancelled(self) -> bool:
        """True once the user pressed Cancel (or the WebUI's Interrupt)."""
        if self.host_job is not None and self.host_job.interrupted():
            self.cancel_event.set()
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        self.cancel_event.set()
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
        self.current: Job | None = None

    def busy(self) -> bool:
        return self.current is not None and not self.current.finished

    def model_busy(self) -> str | None:
        """The name of the running job that uses the SD model, if any."""
        job = self.current
        return job.name if job is not None and not job.finished and job.uses_model else None

    def start(self, name: str, work: Callable[[Job], Any], host: Host | None = None, uses_model: bool = True) -> Job:
        """Run ``work(job)`` in a thread (inside ``host.exclusive`` when a host is given)."""
        with self._lock:
            if self.busy():
                assert self.current is not None
                raise LoraExtError(
                    f"{self.current.name} is still running", hint="wait for it to finish or cancel it first"
                )
            job = Job(name, uses_model=uses_model)
            self.current = job

        def target() -> None:
            try:
                with _exclusive(host, name) as host_job:
                    job.host_job = host_job
                    job.result = work(job)
            except BaseException as error:  # noqa: BLE001 - kept on the job and shown by the page
                job.error = error
            finally:
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


def follow(job: Job, render: Callable[[Job], dict[str, Any]], interval: float = 0.5) -> Iterator[dict[str, Any]]:
    """Yield ``render(job)`` every ``interval`` seconds until the job ends, then once more."""
    while not job.finished_event.wait(interval):
        yield render(job)
    yield render(job)


def format_seconds(seconds: float) -> str:
    """``75`` → ``1:15``; ``3700`` → ``1:01:40``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_html(fraction: float, text: str, state: str = "running") -> str:
    """A progress bar (styled by style.css) with one line of text."""
    import html

    percent = f"{100 * max(0.0, min(1.0, fraction)):.1f}"
    return (
        f'<div class="tt-progress tt-progress-{state}" data-fraction="{percent}">'
        f'<div class="tt-progress-bar" style="width:{percent}%"></div>'
        f'<div class="tt-progress-text">{html.escape(text)}</div></div>'
    )
