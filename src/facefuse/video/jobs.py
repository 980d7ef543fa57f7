"""Video jobs for the REST API and the WebUI: submit, follow, fetch the result, cancel.

A job is a folder under the store's root: its inputs, `job.json` (state, progress, error,
report) and, when done, its result. `job.json` is replaced atomically on every change, and
the result is written to a temporary file and renamed (VideoWriter), so a crash or a
restart corrupts nothing: on start, jobs that were queued or running are marked failed
("interrupted by a restart") and their leftovers removed. Finished jobs are deleted
`keep_s` seconds after they finished.

States: queued -> running -> done | failed | cancelled.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import FaceFuseError, InputError, NoFaceError
from ..io import write_bytes_atomic

FINISHED = ("done", "failed", "cancelled")
KEEP_S = 3600.0  # finished jobs (and their results) are kept this long
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
PROGRESS_EVERY_S = 0.5  # job.json is rewritten at most this often while a job runs


class JobCancelled(Exception):
    """Raised from a running job's progress callback when the job was cancelled."""


@dataclass
class Job:
    id: str
    state: str = "queued"
    progress: float = 0.0  # 0..1
    frames_done: int = 0
    frames_total: int = 0
    error: str = ""
    error_code: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    source_name: str = "source"
    video_name: str = "video.mp4"
    result_name: str = "result.mp4"
    params: dict = field(default_factory=dict)
    report: dict | None = None

    def public(self) -> dict:
        """What a client sees (no server paths)."""
        out = asdict(self)
        out.pop("source_name")
        out.pop("video_name")
        if self.report is not None:
            out["report"] = {k: v for k, v in self.report.items() if k not in ("per_frame", "source", "video", "output")}
        return out


def error_code(exc: BaseException) -> str:
    """A program-readable code for a failed job (the error's fields, never its message)."""
    if isinstance(exc, InputError):
        return exc.reason or "bad_input"
    if isinstance(exc, NoFaceError):
        return "no_face"
    if isinstance(exc, FaceFuseError):
        return getattr(exc, "reason", "") or type(exc).__name__.replace("Error", "").lower()
    return "internal"


# runner(job, job folder, progress(done, total)) -> report; raises on failure
Runner = Callable[[Job, Path, Callable[[int, int], None]], dict]


class JobStore:
    """Jobs on disk, run by `workers` threads through `runner`."""

    def __init__(self, root: str | Path, runner: Runner, workers: int = 1, keep_s: float = KEEP_S):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.runner = runner
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._cancel: set[str] = set()
        self._recover()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="facefuse-video-job")

    # -- disk ------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def _save(self, job: Job) -> None:
        write_bytes_atomic(self.folder(job.id) / "job.json", json.dumps(asdict(job)).encode(), overwrite=True)

    def get(self, job_id: str) -> Job | None:
        try:
            data = json.loads((self.folder(job_id) / "job.json").read_text())
        except (KeyError, OSError, ValueError):
            return None
        return Job(**data)

    def _recover(self) -> None:
        """Jobs a previous process left queued or running can never finish: mark them failed."""
        for path in self.root.glob("*/job.json"):
            job = self.get(path.parent.name)
            if job is None or job.state in FINISHED:
                continue
            for part in path.parent.glob(".*.part"):
                part.unlink(missing_ok=True)
            job.state, job.error, job.error_code, job.finished = "failed", "interrupted by a restart", "interrupted", time.time()
            self._save(job)

    # -- jobs ------------------------------------------------------------------------
    def submit(self, source: bytes, video: bytes, video_suffix: str = ".mp4", result_suffix: str = ".mp4",
               params: dict | None = None, check: Callable[[Path], Any] | None = None) -> Job:
        """Store the inputs and queue the job. `check(video path)` may reject the video
        at once (its error is raised and nothing is kept)."""
        self.cleanup()
        job = Job(id=uuid.uuid4().hex, video_name=f"video{video_suffix}", result_name=f"result{result_suffix}",
                  params=dict(params or {}))
        folder = self.folder(job.id)
        folder.mkdir()
        try:
            (folder / job.source_name).write_bytes(source)
            (folder / job.video_name).write_bytes(video)
            if check is not None:
                info = check(folder / job.video_name)
                job.frames_total = int(getattr(info, "frames", 0) or 0)
            self._save(job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._pool.submit(self._run, job.id)
        return job

    def _run(self, job_id: str) -> None:
        job = self.get(job_id)
        if job is None or job.state != "queued":
            return
        job.state = "running"
        self._save(job)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if job_id in self._cancel:
                raise JobCancelled
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                job.frames_done, job.frames_total = done, total
                job.progress = round(min(1.0, done / max(total, 1)), 4)
                self._save(job)

        try:
            job.report = self.runner(job, self.folder(job_id), progress)
            job.state, job.progress = "done", 1.0
            job.frames_done = job.frames_total = job.report.get("frames", job.frames_done)
        except JobCancelled:
            job.state = "cancelled"
        except Exception as exc:  # a job fails alone; the store keeps serving
            job.state, job.error, job.error_code = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__, error_code(exc)
        finally:
            self._cancel.discard(job_id)
        job.finished = time.time()
        for name in (job.source_name, job.video_name):  # the inputs are not needed any more
            (self.folder(job_id) / name).unlink(missing_ok=True)
        self._save(job)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (a running one stops at its next frame)."""
        job = self.get(job_id)
        if job is None or job.state in FINISHED:
            return job
        with self._lock:
            self._cancel.add(job_id)
        if job.state == "queued":
            job.state, job.finished = "cancelled", time.time()
            self._save(job)
        return job

    def result(self, job_id: str) -> Path | None:
        """The result file of a finished job (None until then)."""
        job = self.get(job_id)
        if job is None or job.state != "done":
            return None
        path = self.folder(job_id) / job.result_name
        return path if path.is_file() else None

    def cleanup(self, now: float | None = None) -> int:
        """Delete jobs finished more than keep_s ago; the number deleted."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.root.glob("*/job.json"):
            job = self.get(path.parent.name)
            if job is not None and job.state in FINISHED and job.finished and now - job.finished > self.keep_s:
                shutil.rmtree(path.parent, ignore_errors=True)
                removed += 1
        return removed

    def close(self, wait: bool = True) -> None:
        with self._lock:
            self._cancel.update(p.parent.name for p in self.root.glob("*/job.json"))
        self._pool.shutdown(wait=wait, cancel_futures=True)


def fusion_runner(fuser_factory: Callable[[], Any]) -> Runner:
    """A runner fusing with one Fuser, made on first use (in the job thread)."""
    made: list = []

    def run(job: Job, folder: Path, progress: Callable[[int, int], None]) -> dict:
        if not made:
            made.append(fuser_factory())
        return made[0].fuse_video(folder / job.source_name, folder / job.video_name, folder / job.result_name,
                                  progress=progress, **job.params)

    return run
