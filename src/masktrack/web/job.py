"""The one segmentation job: a background thread with its progress, read by the page while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Busy(Exception):
    """A request that must wait for the running job (HTTP 409); the message says what to do."""


@dataclass
class Progress:
    """What the page shows: the stage, steps done of the total, and how it ended."""

    state: str = "idle"  # idle | running | done | failed
    stage: str = ""
    done: int = 0
    total: int = 0
    steps: int = 0  # of the total: fine-tuning steps (the rest are frames)
    message: str = ""
    started: float = 0.0
    seconds: float = 0.0
    frames: list[int] = field(default_factory=list)  # the frames the job segmented, in order

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready progress."""
        seconds = time.monotonic() - self.started if self.state == "running" else self.seconds
        return {"state": self.state, "stage": self.stage, "done": self.done, "total": self.total, "steps": self.steps,
                "message": self.message, "seconds": round(seconds, 1),
                "first": self.frames[0] if self.frames else None, "last": self.frames[-1] if self.frames else None}


class Job:
    """Runs one callable at a time in a daemon thread; ``start`` raises :class:`Busy` while one runs."""

    def __init__(self) -> None:
        self.progress = Progress()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.progress.state == "running"

    def start(self, work: Callable[[Progress], None], steps: int, frames: int) -> None:
        """Run ``work(progress)`` in the background: ``steps`` fine-tuning steps, then ``frames`` frames."""
        with self.lock:
            if self.running:
                raise Busy("a segmentation is already running: wait for it to finish, then run again")
            stage = "fine-tuning" if steps else "segmenting"
            self.progress = Progress("running", stage, 0, steps + frames, steps, started=time.monotonic())
        self.thread = threading.Thread(target=self._run, args=(work, self.progress), name="masktrack-app-job",
                                       daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[Progress], None], progress: Progress) -> None:
        try:
            work(progress)
            progress.state, progress.message = "done", progress.message or "finished"
        except Exception as error:  # noqa: BLE001 - shown on the page, one line
            progress.message = " ".join(f"{type(error).__name__}: {error}".split())
            progress.state = "failed"
        finally:
            progress.seconds = time.monotonic() - progress.started

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running job ends (tests, shutdown)."""
        if self.thread is not None:
            self.thread.join(timeout)
