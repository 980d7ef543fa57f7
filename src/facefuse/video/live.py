"""A live camera stream, fused frame by frame: the video path's frame loop, fed one frame at a time.

`LiveSession` holds what one camera's frames share (a `FrameTracker`, the prepared source,
the current parameters) and splits each frame's work as `fused_frames` does for a file:

    plan(frame, t)   on one thread, in frame order: resize to `resolution`, find or follow
                     the faces (FrameTracker / plan_next_frame), smooth the landmarks;
    fuse(planned)    on any thread, two frames at once: `fuse_planned`, the same code as a
                     video's frames and a photo's faces.

A finished frame's light state goes back onto the tracks at the start of the next `plan`,
on the planning thread, so the tracker is only ever touched by one thread.

The routine re-detection a video runs in line every `detect_every` frames while it follows
the faces (a full search costs several tracked frames' planning: a visible hitch in a live
stream) runs here beside the stream, on a detector of its own, on a copy of the frame; only
when it sees something the tracker does not (a face more or less, or elsewhere) does the
next frame get a full search in line. Searches while no face is followed, at the start and
on cuts stay in line, as in a video (frames then pass through, which costs nothing). `t` is the
frame's own wall-clock time (the landmark smoothing is time-based: a live camera's rate
varies and is not 25 fps). A script with its own camera uses `push` (see the README).

Where the fusion runs: on threads of this process, or (`FusingProcesses`, what the server
uses) on worker processes. A frame's fusion is in good part Python and small NumPy steps,
so two threads of one process hold each other back on the interpreter's lock: on the
talking head at 640x480 (two cores, 80 frames), one thread fused a frame every 41.6 ms,
two threads one every 30.9 ms, two processes one every 23.4 ms. Planning stays in this
process (it holds the tracker); a planned frame, its faces and their light states go to a
worker and the fused frame comes back; a source travels to each worker once.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..imaging import output_size, resize_frame
from .fuse import (
    DETECT_EVERY,
    FRAMES_IN_FLIGHT,
    FramePlan,
    FrameTracker,
    _keep_lights,
    _track_lights,
    fuse_planned,
    plan_next_frame,
)
from .track import box_iou, points_box

# A live face larger than this is fused at this size (fuse.WORK_FACE_PX, a video's, is 320):
# a webcam's face is seen at the camera's own size, and the engine's cost is what bounds the
# frame rate. On the talking head at 640x480 (its face is larger than 320 px), through this
# session one frame at a time: engine 30-33 ms a frame against 43-47 at 320. Judged frame by
# frame (video_judge.py, 12 sampled frames, source deepface_img2.jpg): identity 12 of 12,
# flicker 0.73, the face's sharpness over the frame's 0.86 (and 0.94 with the enlarged face
# lifted again, Fuser.fuse_frame's lift_enlarged, which costs about 20 ms a frame here: live
# does without it); at 1280x720 (before issue 26's lift), identity 12 of 12, flicker 0.70,
# sharpness 1.00.
LIVE_WORK_FACE_PX = 192
IN_LINE_NEVER = 1 << 30  # plan_next_frame's detect_every when the routine search runs beside the stream
SAME_FACE_IOU = 0.3  # a face found beside the stream is one already followed (fuse.py's rule)

SOURCES_KEPT = 8  # sources a fusing process keeps (one per live session that used it lately)

if TYPE_CHECKING:
    from ..config import FusionParams, Settings
    from ..faces import SourceFace
    from ..pipeline import Fuser


class _SourceNotHere(Exception):
    """A fusing process was sent a frame whose source it does not hold yet."""


_worker_fuser = None  # in a fusing process: its Fuser
_worker_sources: "dict[str, SourceFace]" = {}  # in a fusing process: sources by key, oldest first


def _init_fusing_process(settings: "Settings", threads: int) -> None:
    """A fusing process's start: its Fuser; `threads` > 0: OpenCV's threads in it."""
    global _worker_fuser
    import cv2

    from ..pipeline import Fuser

    _worker_fuser = Fuser(settings)
    _worker_fuser.engine.warm_up()
    if threads:
        cv2.setNumThreads(threads)


def _fuse_in_process(sources: list[tuple[str, bytes | None]], frame: np.ndarray, plan: FramePlan,
                     lights: dict[int, Any], params: "FusionParams", work_face_px: int,
                     lift_enlarged: bool) -> tuple[np.ndarray, dict[int, Any], dict]:
    """In a fusing process: `fuse_planned` with the plan's sources given by key (`plan.fused`
    holds keys in place of sources); a source's pickled bytes come along the first time."""
    for key, blob in sources:
        if blob is not None:
            _worker_sources.pop(key, None)
            _worker_sources[key] = pickle.loads(blob)
            while len(_worker_sources) > SOURCES_KEPT:
                _worker_sources.pop(next(iter(_worker_sources)))
    if any(key not in _worker_sources for key, _ in sources):
        raise _SourceNotHere()
    fused = [(track_id, face, _worker_sources[key]) for track_id, face, key in plan.fused]
    return fuse_planned(_worker_fuser, frame, _replace_fused(plan, fused), lights, params, work_face_px,
                        lift_enlarged=lift_enlarged)


def _replace_fused(plan: FramePlan, fused: list) -> FramePlan:
    return replace(plan, fused=fused)


class FusingProcesses:
    """Worker processes that fuse planned frames (see the module's docstring), each with its
    own Fuser, started once (about 2 s) and shared by every session that is handed them.
    Processes are spawned, not forked (mediapipe does not survive a fork), so a script that
    starts them needs the `if __name__ == "__main__":` guard."""

    _keys = itertools.count()

    def __init__(self, settings: "Settings", processes: int):
        self.processes = processes
        ctx = multiprocessing.get_context("spawn")
        # several processes each fuse a frame at once: OpenCV's own threads in each only add
        # switching (bench live, 640x480: the same fps on 5 % less CPU with one thread each)
        threads = 1 if processes > 1 and not settings.inference.threads else 0
        self._pool = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init_fusing_process,
                                         initargs=(settings, threads))
        self._lock = threading.Lock()
        self._sources: dict[int, tuple[Any, str, bytes]] = {}  # id(source) -> (source, key, pickled)
        self.broken = False  # a worker died; shared_fusing_processes then starts new ones

    def _source(self, source: "SourceFace") -> tuple[str, bytes]:
        with self._lock:
            known = self._sources.get(id(source))
            if known is None or known[0] is not source:
                known = (source, f"{id(self)}-{next(self._keys)}", pickle.dumps(source, pickle.HIGHEST_PROTOCOL))
                self._sources[id(source)] = known
                while len(self._sources) > SOURCES_KEPT:
                    self._sources.pop(next(iter(self._sources)))
            return known[1], known[2]

    def fuse(self, frame: np.ndarray, plan: FramePlan, lights: dict[int, Any], params: "FusionParams",
             work_face_px: int, lift_enlarged: bool) -> tuple[np.ndarray, dict[int, Any], dict]:
        """`fuse_planned` on a worker process (blocks this thread until it is done)."""
        sources = {id(src): (src, *self._source(src)) for _, _, src in plan.fused}
        keyed = _replace_fused(plan, [(track_id, face, sources[id(src)][1]) for track_id, face, src in plan.fused])
        args = (frame, keyed, lights, params, work_face_px, lift_enlarged)
        try:
            try:
                return self._pool.submit(_fuse_in_process, [(key, None) for _, key, _ in sources.values()],
                                         *args).result()
            except _SourceNotHere:  # this worker has not seen the source yet: once more, with it
                return self._pool.submit(_fuse_in_process, [(key, blob) for _, key, blob in sources.values()],
                                         *args).result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): these processes are done
            self.broken = True
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_shared: dict[str, FusingProcesses] = {}
_shared_lock = threading.Lock()


def live_processes(settings: "Settings") -> int:
    """How many fusing processes `server.live_processes` asks for (unset: the usable cores,
    at most 8, for the classical engine on 2 or more cores; a neural model is loaded once,
    in the server's process, and fuses on its threads)."""
    from ..config import default_workers, usable_cores

    n = settings.server.live_processes
    if n is None:
        plain = settings.inference.engine == "classical" and not settings.inference.enhancer
        n = default_workers() if plain and usable_cores() >= 2 else 0
    return n


def shared_fusing_processes(settings: "Settings") -> FusingProcesses | None:
    """The process's fusing processes for these engine settings, started on first use and
    shared by every live session (None: `server.live_processes` is 0, fuse on threads); new
    ones where a worker of the last ones died. Blocking: call it on a worker thread."""
    n = live_processes(settings)
    if n == 0:
        return None
    key = f"{n}:{settings.inference.model_dump_json()}"
    with _shared_lock:
        if key in _shared and _shared[key].broken:
            _shared.pop(key).shutdown()
        if key not in _shared:
            _shared[key] = FusingProcesses(settings, n)
        return _shared[key]


def stop_fusing_processes() -> None:
    """Stop the shared fusing processes (a server's shutdown; at exit they stop anyway)."""
    with _shared_lock:
        for processes in _shared.values():
            processes.shutdown()
        _shared.clear()


@dataclass
class LivePlan:
    """One planned frame: the frame at output size, its plan, the lights and parameters it
    is fused with, and when it was planned."""

    index: int
    frame: np.ndarray
    plan: FramePlan
    lights: dict[int, Any]
    params: "FusionParams"
    t: float
    planned_s: float


@dataclass
class LiveFrame:
    """A fused frame and what happened in it."""

    index: int
    image: np.ndarray
    faces_found: int
    fused: int  # faces fused in this frame (0: the frame passed through unchanged)
    full_detection: bool
    t: float
    plan_s: float  # finding / following the faces
    fuse_s: float  # the fusion itself


class LiveSession:
    """Fuses a camera's frames with one prepared source, at the camera's pace.

    `fuser` is this session's own: its face detector is used by `plan` alone (mediapipe's
    graphs must not run on two threads at once); `fuse` only uses the stateless engine.
    `source` is a photo (path, bytes, RGB array) or an already prepared `SourceFace`."""

    def __init__(self, fuser: "Fuser", source: Any, params: "FusionParams | None" = None,
                 in_flight: int = FRAMES_IN_FLIGHT, detect_every: int = DETECT_EVERY,
                 work_face_px: int = LIVE_WORK_FACE_PX, search_beside: bool = True,
                 processes: FusingProcesses | None = None, **overrides: Any):
        from ..faces import SourceFace

        self.fuser = fuser
        self.params = params or fuser.params(**overrides)
        self.source = source if isinstance(source, SourceFace) else fuser.prepare_source(
            source, self.params.source_face_index, self.params.threshold)
        fuser.engine.warm_up()  # the engine's one-time set-up now, not on the first frame
        self.tracker = FrameTracker()
        self._size: tuple[int, int] | None = None  # the last planned frame's size
        self.in_flight = max(1, in_flight)
        self.detect_every, self.work_face_px = detect_every, work_face_px
        self._finished: queue.SimpleQueue = queue.SimpleQueue()  # (lights, timings) of fused frames
        self._frames = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        self.search_beside = search_beside
        self._searcher: ThreadPoolExecutor | None = None
        self._detector = None  # the searcher's own (created on its thread)
        self._search: Future | None = None  # faces found beside the stream, and the boxes followed then
        self._since_search = 0
        self.searches_beside = 0
        self.searches_forced = 0  # in-line searches the searcher asked for
        self.processes = processes  # None: frames are fused on the calling thread

    def set_params(self, params: "FusionParams") -> None:
        """Parameters for the frames planned from now on (a slider moved)."""
        self.params = params

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The fused frame's size: the camera's, or its long side at `resolution`."""
        return output_size(width, height, self.params.resolution)

    def plan(self, frame: np.ndarray, t: float | None = None) -> LivePlan:
        """Find or follow the faces of the next frame (RGB uint8). One thread, frame order."""
        t0 = time.perf_counter()
        t = time.monotonic() if t is None else t
        while True:  # light states of frames fused since the last plan, in the order they finished
            try:
                lights, timings = self._finished.get_nowait()
            except queue.Empty:
                break
            _keep_lights(self.fuser, self.tracker, lights, timings)
        params = self.params
        size = self.size_for(frame.shape[1], frame.shape[0])
        if size != (frame.shape[1], frame.shape[0]):
            frame = resize_frame(frame, size)
        if self.tracker.thumb is not None and size != self._size:
            self.tracker = FrameTracker()  # a new size (resolution, camera): the tracks' pixels no longer apply
        self._size = size
        self._take_search()
        plan = plan_next_frame(self.fuser, frame, self.tracker, self.source, params, t=t,
                               detect_every=IN_LINE_NEVER if self.search_beside else self.detect_every)
        if self.search_beside:
            self._schedule_search(frame, plan, params)
        index, self._frames = self._frames, self._frames + 1
        return LivePlan(index, frame, plan, _track_lights(self.tracker), params, t, time.perf_counter() - t0)

    def _schedule_search(self, frame: np.ndarray, plan: FramePlan, params: "FusionParams") -> None:
        """Every `detect_every` frames a full search: beside the stream while faces are
        followed, else (nothing followed: frames pass through) in line on the next frame."""
        self._since_search = 0 if plan.full_detection else self._since_search + 1
        if self._since_search < self.detect_every or self._search is not None:
            return
        if not plan.fused:
            self.tracker.since_detection = None  # plan_next_frame then searches in line
            return
        if self._searcher is None:
            self._searcher = ThreadPoolExecutor(1, thread_name_prefix="facefuse-live-search")
        followed = [face.box for _, face, _ in plan.fused]
        self._search = self._searcher.submit(self._search_faces, frame, params.threshold, followed)
        self._since_search = 0
        self.searches_beside += 1

    def _search_faces(self, frame: np.ndarray, threshold: float, followed: list) -> bool:
        """On the searcher's thread: whether a full search of `frame` disagrees with the faces
        followed in it (another count, or a face found where none is followed)."""
        if self._detector is None:
            from ..detect import FaceDetector

            self._detector = FaceDetector.from_settings(self.fuser.settings)
        found = [points_box(f.landmarks) for f in self._detector.detect(frame, threshold=threshold, tiles=False).faces]
        return len(found) != len(followed) or any(
            max((box_iou(box, seen) for seen in followed), default=0.0) <= SAME_FACE_IOU for box in found)

    def _take_search(self) -> None:
        """A finished search beside the stream that disagreed: this frame searches in line."""
        if self._search is not None and self._search.done():
            if self._search.result():
                self.tracker.since_detection = None
                self.searches_forced += 1
            self._search = None

    def fuse(self, planned: LivePlan) -> LiveFrame:
        """The fused frame of a plan. Any thread; several plans at once."""
        t0 = time.perf_counter()
        if planned.plan.fused:
            # the enlarged face is not lifted again (Fuser.fuse_frame's lift_enlarged): the blend's
            # lift at the work scale keeps it crisp enough (see LIVE_WORK_FACE_PX)
            args = (planned.frame, planned.plan, planned.lights, planned.params, self.work_face_px)
            if self.processes is None:
                image, lights, timings = fuse_planned(self.fuser, *args, lift_enlarged=False)
            else:
                image, lights, timings = self.processes.fuse(*args, lift_enlarged=False)
            self._finished.put((lights, timings))
        else:
            image = planned.frame  # no face to fuse: the frame as it came (resized)
        return LiveFrame(planned.index, image, planned.plan.faces_found, len(planned.plan.fused),
                         planned.plan.full_detection, planned.t, planned.planned_s, time.perf_counter() - t0)

    # -- for a script with its own camera loop ------------------------------------------
    def push(self, frame: np.ndarray, t: float | None = None) -> LiveFrame | None:
        """Plan `frame` here and fuse it on a worker beside the next one; returns the oldest
        fused frame once `in_flight` frames are on their way (None before that)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="facefuse-live")
        planned = self.plan(frame, t)
        self._pending.append(self._pool.submit(self.fuse, planned))
        if len(self._pending) >= self.in_flight:
            return self._pending.popleft().result()
        return None

    def flush(self) -> list[LiveFrame]:
        """The frames still on their way, in order."""
        done = [f.result() for f in self._pending]
        self._pending.clear()
        return done

    def close(self) -> None:
        self.flush()
        for pool in (self._pool, self._searcher):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._searcher = None

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
