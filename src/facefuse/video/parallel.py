"""Long clips fused in chunks, on local processes or Ray actors, joined without a seam.

The clip is cut at keyframes into about `workers` x 2 chunks, all started at once. Each
chunk is fused by a worker holding its own Fuser, starting OVERLAP_S before the chunk: the
frames of that overlap run through the tracker, the landmark filters and the light
smoothing and are then dropped, so at the chunk's first frame the smoothing is where a
single pass would have it (the One Euro filter and the light field settle within a few
frames). The driver writes the chunks' frames in order through one VideoWriter (audio,
temporary file and rename as for one pass).

The chosen face: a chunk started afresh chooses by face index at its overlap's first frame,
where a single pass holds the face it chose earlier for as long as that face's track
lives. So the driver checks each chunk against the one before it: both ran the frame before
the chunk, and the chunk's tracker must hold there the chosen faces (same keys, same
places) the previous chunk's held at its end. A chunk that does not is fused again from
the previous chunk's tracker (tracks, filters, light, detection schedule) as one pass would
go on, without an overlap; every chunk then fuses the faces a single pass would. The check
costs nothing; a chunk fused again costs its fusion once more, after the chunk before it
(at worst, a clip whose faces change order in every chunk, about one pass more). With all
faces fused and no mapping there is no choice, and no check.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import ConfigError
from .fuse import (
    DETECT_EVERY,
    STAGES,
    WORK_FACE_PX,
    FrameTracker,
    expected_frames,
    faces_asked,
    finish,
    frame_record,
    fused_frames,
    prepare_sources,
    video_output_size,
    video_report,
)
from .io import DEFAULT_QUALITY, VideoLimits, VideoReader, VideoWriter, check_output, keyframe_times, probe
from .track import same_choice

OVERLAP_S = 0.5  # seconds fused before each chunk and dropped (12 frames at 25 fps)
MIN_CHUNK_S = 2.0  # shorter chunks spend more on overlap than they gain


def plan_chunks(keyframes: list[float], start: float, end: float, workers: int,
                min_chunk_s: float = MIN_CHUNK_S) -> list[tuple[float, float]]:
    """[start, end) cut at keyframes into about 2 x workers chunks of at least
    `min_chunk_s` (fewer when the clip is short or has few keyframes)."""
    target = max(min_chunk_s, (end - start) / max(1, 2 * workers))
    cuts = [start]
    for k in keyframes:
        if k - cuts[-1] >= target and end - k >= min_chunk_s / 2:
            cuts.append(k)
    return list(zip(cuts, cuts[1:] + [end], strict=True))


class ChunkWorker:
    """One Fuser in a worker process or Ray actor; fuses chunks of clips."""

    def __init__(self, settings):
        from ..pipeline import Fuser

        self.fuser = Fuser(settings)

    def fuse_chunk(self, source, video: str, sources, fusion, size, chunk: tuple[float, float | None],
                   clip_start: float, detect_every: int, limits: VideoLimits, work_face_px: int = WORK_FACE_PX,
                   seed: FrameTracker | None = None) -> dict:
        """The fused frames (pts from the output's time 0) of [chunk) (to the clip's end
        when it ends in None), their report lines, the tracks before the chunk's first frame
        ("opening") and the tracker after its last ("closing", what the next chunk can go on
        from). Without a `seed` the tracker starts afresh on the overlap before the chunk;
        with one (the previous chunk's closing tracker) it goes on from it."""
        begin, stop = chunk
        src, prepared = prepare_sources(self.fuser, source, sources, fusion)
        tracker = seed or FrameTracker()

        def fused(reader: VideoReader):  # its frames fused on the clip's clock (pts and seconds from clip_start)
            offset = reader.start - clip_start
            shift = int(round(offset / reader.info.time_base))
            frames = (replace(f, pts=f.pts + shift, time=f.time + offset) for f in reader)
            return fused_frames(self.fuser, frames, size, src, prepared, fusion, detect_every, tracker, work_face_px)

        warm = max(clip_start, begin - OVERLAP_S)
        if seed is None and warm < begin:
            for _ in fused(VideoReader(video, warm, begin, limits)):
                pass  # the overlap: the tracks, the smoothing and the light warm up on it
        opening = tracker.tracks
        reader = VideoReader(video, begin, stop, limits)
        frames, records = [], []
        for frame, outcome in fused(reader):
            frames.append((frame.pts, outcome.image))
            records.append(frame_record(frame, outcome))
        closing = replace(tracker, detections=0, cuts=0, timings={s: 0.0 for s in STAGES})
        return {"frames": frames, "records": records, "timings": tracker.timings, "lost": reader.lost,
                "detections": tracker.detections, "cuts": tracker.cuts, "opening": opening, "closing": closing}


_worker: ChunkWorker | None = None


def _init_process(settings) -> None:
    global _worker
    _worker = ChunkWorker(settings)


def _run_in_process(*args) -> dict:
    return _worker.fuse_chunk(*args)


@contextmanager
def _process_pool(settings, workers: int) -> Iterator[Callable[[tuple], Callable[[], dict]]]:
    """submit(job) -> a call that waits for the job's result, on `workers` local processes."""
    ctx = multiprocessing.get_context("spawn")  # mediapipe does not survive fork after init
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_process, initargs=(settings,)) as pool:
        futures = []

        def submit(job: tuple) -> Callable[[], dict]:
            futures.append(pool.submit(_run_in_process, *job))
            return futures[-1].result

        try:
            yield submit
        finally:
            for f in futures:
                f.cancel()


def _start_ray(address: str, workers: int | None):
    import logging
    import signal

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed: pip install 'facefuse[ray]'") from None
    on_term = signal.getsignal(signal.SIGTERM)
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address == "local":
        ray.init(num_cpus=workers or os.cpu_count(), **quiet)
    else:
        ray.init(address=address, **quiet)
    if on_term is not None:
        signal.signal(signal.SIGTERM, on_term)
    return ray


@contextmanager
def _ray_pool(settings, workers: int | None, address: str,
              chunks: int) -> Iterator[Callable[[tuple], Callable[[], dict]]]:
    """submit(job) -> a call that waits for the job's result, on Ray actors taking turns."""
    ray = _start_ray(address, workers)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = [ray.remote(num_cpus=1)(ChunkWorker).remote(settings) for _ in range(min(n, chunks))]
        turns = itertools.count()

        def submit(job: tuple) -> Callable[[], dict]:
            ref = actors[next(turns) % len(actors)].fuse_chunk.remote(*job)
            return lambda: ray.get(ref)

        yield submit
    finally:
        ray.shutdown()


def fuse_video_parallel(settings, source, video: str | Path, out: str | Path, workers: int | None = None,
                        ray_address: str | None = None, progress: Callable[[int, int], None] | None = None,
                        sources: Mapping[int, Any] | None = None, start: float | None = None,
                        end: float | None = None, quality: int = DEFAULT_QUALITY, codec: str | None = None,
                        overwrite: bool = False, detect_every: int = DETECT_EVERY,
                        limits: VideoLimits = VideoLimits(), fusion_params=None, min_chunk_s: float = MIN_CHUNK_S,
                        work_face_px: int = WORK_FACE_PX, **params: Any) -> dict:
    """`fuse_video` with the clip's chunks fused by `workers` local processes, or by Ray
    actors (`ray_address`: 'local' or a cluster's address). Same output, same report
    (plus the chunks and those fused again; track ids become "chunk.track")."""
    fusion = fusion_params or settings.fusion_params(**params)
    check_output(out, overwrite, codec)
    info = probe(video, limits)
    t_start = time.perf_counter()
    clip_start, clip_end = start or 0.0, min(end or info.duration, info.duration)
    chunks = plan_chunks(keyframe_times(video), clip_start, clip_end, workers or 2, min_chunk_s)
    size = video_output_size(info.width, info.height, fusion.resolution)
    portable_sources = {k: _portable(v) for k, v in (sources or {}).items()} or None

    def job(chunk: tuple[float, float], seed: FrameTracker | None = None) -> tuple:
        a, b = chunk
        return (_portable(source), str(video), portable_sources, fusion, size, (a, b if b < clip_end or end else None),
                clip_start, detect_every, limits, work_face_px, seed)

    choosing = not (fusion.all_faces and not sources)  # with every face fused, no face is chosen
    pool = (_ray_pool(settings, workers, ray_address, len(chunks)) if ray_address
            else _process_pool(settings, min(workers or 2, len(chunks))))
    timings = {s: 0.0 for s in STAGES}
    per_frame, lost, detections, cuts, fused_again = [], "", 0, 0, []
    total = expected_frames(info, start, end)
    with pool as submit, VideoWriter(out, info, size=size, codec=codec, quality=quality, overwrite=overwrite,
                                     start=start, end=end) as writer:
        results = [submit(job(chunk)) for chunk in chunks]
        closing = None
        for chunk_index, (chunk, result) in enumerate(zip(chunks, results, strict=True)):
            result = result()
            if choosing and closing is not None and not same_choice(closing.tracks, result["opening"]):
                # it chose other faces than the chunk before held: go on from that chunk instead
                result = submit(job(chunk, seed=closing))()
                fused_again.append(chunk_index)
            closing = result["closing"]
            for pts, image in result["frames"]:
                t_enc = time.perf_counter()
                writer.write(image, pts)
                timings["encode"] += time.perf_counter() - t_enc
            for record in result["records"]:  # track ids are a chunk's own: "chunk.track"
                record["fused"] = [f"{chunk_index}.{tid}" for tid in record["fused"]]
                per_frame.append(record)
            for k, v in result["timings"].items():
                timings[k] = timings.get(k, 0.0) + v
            lost = lost or result["lost"]
            detections += result["detections"]
            cuts += result["cuts"]
            if progress is not None:
                progress(len(per_frame), max(total, len(per_frame)))
        finish(writer, per_frame, timings, faces_asked(fusion, sources))
    return video_report(source, video, out, info, size, per_frame, timings, time.perf_counter() - t_start, fusion,
                        lost=lost, full_detections=detections, cuts=cuts, detect_every=detect_every,
                        chunks=[[round(a, 3), round(b, 3)] for a, b in chunks], chunks_fused_again=fused_again,
                        workers=workers, ray=ray_address)


def _portable(source):
    """Paths travel to workers as strings; arrays and bytes as they are."""
    return str(source) if isinstance(source, Path) else source
