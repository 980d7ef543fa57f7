"""Long fusions (videos) as background jobs: submit, follow, fetch the result, cancel.

Shared by the REST API (`/api/v1/video`, `/api/v1/jobs/...`) and usable by any front-end.
Each job lives in a folder of its own under the store's folder: its inputs, its `job.json`
(state, progress, error), and its result once done. The state file is rewritten atomically,
and the result is written to a temporary file and renamed by the video writer, so a crash
or a restart corrupts nothing: at start-up a job that was queued or running is marked
failed ("the server restarted"), and finished jobs older than `keep_seconds` are removed.

Job ids are 32 hex digits made here; an id from a request is checked against that shape
before it names any path.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import FaceFuseError
from .io import no_space_error, remove_stale_temps, write_bytes_atomic

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STATE_FILE = "job.json"
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

# work(fuser, job folder, progress(share 0-1)) -> (result file name inside the job folder,
# warnings: what the client should know about a result that is done, e.g. a truncated clip)
Work = Callable[[Any, Path, Callable[[float], None]], tuple[str, list[str]]]


class JobCancelled(Exception):
    """Raised inside a job's progress callback once the job is cancelled: the work unwinds
    (the video writer removes its temporary file) and the job ends as cancelled."""


class UnknownJob(Exception):
    pass


class JobStore:
    def __init__(self, folder: str | Path, submit: Callable[..., Future], keep_seconds: float = 24 * 3600,
                 max_active: int = 4):
        """`submit(fn, *args)` runs fn(fuser, *args) on a worker (FusionPool.submit);
        `max_active` bounds the jobs queued or running at once."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._submit = submit
        self.keep_seconds = keep_seconds
        self.max_active = max_active
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._recover()

    # -- what callers do ------------------------------------------------------------------
    def create(self, inputs: dict[str, bytes], work: Work, meta: dict | None = None) -> str:
        """A new job: `inputs` (file name -> bytes) are written into its folder, then
        `work` runs on a worker. Raises JobsBusy when max_active jobs are not finished."""
        self.clean()
        with self._lock:
            if len(self._cancel) >= self.max_active:
                raise JobsBusy(len(self._cancel))
            job_id = uuid.uuid4().hex
            self._cancel[job_id] = threading.Event()
        folder = self.folder / job_id
        try:
            folder.mkdir()
            for name, data in inputs.items():
                (folder / Path(name).name).write_bytes(data)
            self._save(job_id, state=QUEUED, progress=0.0, error=None, warnings=[], created=time.time(),
                       result=None, **(meta or {}))
            self._submit(self._run, job_id, work)
        except BaseException as exc:  # a full disk, a refused submit: the slot and the folder go
            with self._lock:
                self._cancel.pop(job_id, None)
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, OSError) and no_space_error(exc, self.folder):
                raise no_space_error(exc, self.folder) from None
            raise
        return job_id

    def status(self, job_id: str) -> dict:
        state = self._load(job_id)
        return {k: v for k, v in state.items() if k != "result"} | {"has_result": state.get("state") == DONE}

    def result(self, job_id: str) -> Path | None:
        """The result file of a finished job, or None while it is not done."""
        state = self._load(job_id)
        if state["state"] != DONE or not state.get("result"):
            return None
        return self.folder / job_id / state["result"]

    def cancel(self, job_id: str) -> dict:
        """Cancel a job that has not finished, or remove a finished one with its files."""
        state = self._load(job_id)
        with self._lock:
            event = self._cancel.get(job_id)
        if event is not None and state["state"] not in FINISHED:
            event.set()
            if state["state"] == QUEUED:
                self._save(job_id, state=CANCELLED, finished=time.time())
            return self.status(job_id)
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return {**state, "state": "removed"}

    def clean(self) -> None:
        """Remove finished jobs older than keep_seconds, and the folders of jobs that never
        got a state file (a process killed while it wrote the inputs)."""
        now = time.time()
        for folder in self.folder.iterdir():
            if not JOB_ID.match(folder.name):
                continue
            try:
                state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            except FileNotFoundError:
                with self._lock:
                    ours = folder.name in self._cancel  # being created right now
                if not ours:
                    shutil.rmtree(folder, ignore_errors=True)
                continue
            except (OSError, ValueError):
                continue
            if state.get("state") in FINISHED and now - state.get("finished", now) > self.keep_seconds:
                shutil.rmtree(folder, ignore_errors=True)

    # -- on the worker ------------------------------------------------------------------
    def _run(self, fuser, job_id: str, work: Work) -> None:
        event = self._cancel[job_id]
        try:
            if event.is_set():
                return
            self._save(job_id, state=RUNNING, started=time.time())
            last = [0.0]

            def progress(share: float) -> None:
                if event.is_set():
                    raise JobCancelled()
                if share - last[0] >= 0.01 or share >= 1.0:  # the state file at most 100 times
                    last[0] = share
                    self._save(job_id, progress=round(min(share, 1.0), 3))

            result, warnings = work(fuser, self.folder / job_id, progress)
            self._save(job_id, state=DONE, progress=1.0, result=result, warnings=warnings, finished=time.time())
        except JobCancelled:
            self._save(job_id, state=CANCELLED, finished=time.time())
        except FaceFuseError as exc:
            self._save(job_id, state=FAILED, error=str(exc), error_type=type(exc).__name__,
                       which=getattr(exc, "which", None), finished=time.time())
        except Exception as exc:  # a bug: the job fails with one line, the server goes on
            self._save(job_id, state=FAILED, error=f"internal error ({type(exc).__name__})",
                       error_type="InternalError", finished=time.time())
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)

    # -- the state files --------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise UnknownJob(job_id)
        return self.folder / job_id / STATE_FILE

    def _load(self, job_id: str) -> dict:
        try:
            return json.loads(self._path(job_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UnknownJob(job_id) from None

    def _save(self, job_id: str, **changes: Any) -> None:
        path = self._path(job_id)
        with self._lock:
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                state = {"id": job_id}
            if state.get("state") == CANCELLED and changes.get("state") not in (None, CANCELLED):
                return  # cancelled while queued: stays cancelled
            state.update(changes)
            if path.parent.is_dir():
                write_bytes_atomic(path, json.dumps(state, indent=1).encode(), overwrite=True)

    def _recover(self) -> None:
        """After a restart: jobs that were queued or running will never finish, and the temp
        files their writers left (a `kill -9`) are removed."""
        for folder in self.folder.iterdir():
            if JOB_ID.match(folder.name) and folder.is_dir():
                remove_stale_temps(folder)
            if JOB_ID.match(folder.name) and (folder / STATE_FILE).is_file():
                try:
                    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
                except ValueError:
                    continue
                if state.get("state") not in FINISHED:
                    self._save(folder.name, state=FAILED, error="the server restarted before this job finished",
                               finished=time.time())
        self.clean()


class JobsBusy(Exception):
    def __init__(self, active: int):
        super().__init__(f"{active} jobs are queued or running")
        self.active = active


def video_limits(settings):
    """What a video input to a server may be: server.max_video_mb / max_video_seconds, and
    output.max_pixels per frame (the WebUI and the REST API take the same limits)."""
    from .video.io import VideoLimits

    return VideoLimits(max_bytes=int(settings.server.max_video_mb * 1024 * 1024),
                       max_seconds=settings.server.max_video_seconds, max_pixels=settings.output.max_pixels)


def video_work(source_name: str, video_name: str, out_name: str, params, options: Optional[dict] = None) -> Work:
    """The work of a video job: fuse the source into the clip, both read from the job's folder."""

    def work(fuser, folder: Path, progress: Callable[[float], None]) -> tuple[str, list[str]]:
        report = fuser.fuse_video(folder / source_name, folder / video_name, folder / out_name,
                                  progress=lambda done, total: progress(done / max(total, 1)),
                                  fusion_params=params, **(options or {}))
        return out_name, [report["lost"]] if report.get("lost") else []

    return work
