"""What the REST API and the WebUI share: the worker pool and the jobs run on it.

Every image operation (decode, detect, fuse, encode) runs in `FusionPool`: a bounded pool of
worker threads, each holding its own `Fuser` (mediapipe graphs must not be used by two
threads at once), so a server's event loop only moves bytes. Requests beyond the pool's
workers wait in a queue of `server.queue_size`; beyond that `submit` raises QueueFull.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from .config import Settings, default_workers
from .errors import NoFaceError


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__("busy")
        self.retry_after = retry_after


class FusionPool:
    """Worker threads, each with its own Fuser (created here, once), and a bounded queue.

    `submit(fn, *args)` runs `fn(fuser, *args)` on a free worker's Fuser. With
    `bounded=True` (REST) a submission beyond workers + queue_size raises QueueFull at
    once; the WebUI passes bounded=False because Gradio's own queue bounds it.
    """

    def __init__(self, settings: Settings, workers: int | None = None, queue_size: int | None = None):
        from .pipeline import Fuser

        self.settings = settings
        self.workers = workers or settings.server.workers or default_workers()
        self.queue_size = settings.server.queue_size if queue_size is None else queue_size
        self.capacity = self.workers + self.queue_size
        self._fusers: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.workers):
            self._fusers.put(Fuser(settings))
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="facefuse-worker")
        self._lock = threading.Lock()
        self.pending = 0  # submitted, not finished
        self.done = 0
        self._avg_s = 0.5  # running mean of job time, for Retry-After

    def submit(self, fn: Callable, *args: Any, bounded: bool = True) -> Future:
        with self._lock:
            if bounded and self.pending >= self.capacity:
                raise QueueFull(self.retry_after())
            self.pending += 1
        try:
            # like asyncio.to_thread: the job sees the caller's context variables (Gradio's
            # progress reporting finds its event through them)
            return self._executor.submit(contextvars.copy_context().run, self._run, fn, args)
        except BaseException:
            with self._lock:
                self.pending -= 1
            raise

    def _run(self, fn: Callable, args: tuple) -> Any:
        fuser = self._fusers.get()
        t0 = time.perf_counter()
        try:
            return fn(fuser, *args)
        finally:
            self._fusers.put(fuser)
            with self._lock:
                self.pending -= 1
                self.done += 1
                self._avg_s = 0.9 * self._avg_s + 0.1 * (time.perf_counter() - t0)

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained enough to take a request."""
        return max(1, math.ceil(self._avg_s * self.pending / self.workers))

    async def run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def call(self, fn: Callable, *args: Any) -> Any:
        """Blocking, unbounded: for callers (the WebUI) that queue on their own."""
        return self.submit(fn, *args, bounded=False).result()

    def status(self) -> dict:
        return {"workers": self.workers, "busy": min(self.pending, self.workers),
                "queued": max(0, self.pending - self.workers), "capacity": self.capacity, "done": self.done}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# -- jobs run on a pool worker (fn(fuser, ...)) -----------------------------------------
def fuse_upload(fuser, source: bytes | None, target: bytes, params, fmt: str = "JPEG", quality: int | None = None,
                progress: Optional[Callable[[float, str], None]] = None, max_pixels: int | None = None,
                sources: dict[int, bytes] | None = None):
    """Fuse two uploaded images into an encoded one (an EncodedFusion); errors name the
    uploads as "source image" and "target image". `max_pixels`: the server's upload limit
    (default the Fuser's output.max_pixels). `sources`: a face mapping (target face index ->
    uploaded source photo), decoded here so that errors name the upload ("face_2 image")."""
    mapped = None
    if sources:
        mapped = {}
        for index, data in sources.items():
            image = fuser.read(data, "source", name=f"face_{index} image", max_pixels=max_pixels)
            try:
                mapped[index] = fuser.prepare_source(image, params.source_face_index, params.threshold)
            except NoFaceError as exc:
                raise exc.named(f"face_{index} image") from None
    return fuser.fuse_encoded(source, target, params, fmt, quality, progress, source_name="source image",
                              target_name="target image", max_pixels=max_pixels, sources=mapped)


def detect_upload(fuser, image: bytes, threshold: Optional[float], max_pixels: int | None = None,
                  which: str = "uploaded") -> dict:
    """The faces of an uploaded image, in fusion order, as JSON-ready data."""
    t0 = time.perf_counter()
    rgb = fuser.read(image, name=f"{which} image", max_pixels=max_pixels)
    det = fuser.detect(rgb, threshold)
    return {
        "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        "faces": [{"index": k, **f.to_dict()} for k, f in enumerate(det.faces)],
        "dropped": det.dropped, "passes": det.passes,
        "seconds": round(time.perf_counter() - t0, 4),
    }
