"""Long clips fused in chunks, on local processes or Ray actors, joined without a seam.

The clip is cut at keyframes into about `workers` x 2 chunks. Each chunk is fused by a
worker holding its own Fuser, starting OVERLAP_S before the chunk: the frames of that
overlap run through the tracker, the landmark filters and the light smoothing and are
then dropped, so at the chunk's first frame the smoothing is where a single pass would
have it (the One Euro filter and the light field settle within a few frames). The driver
writes the chunks' frames in order through one VideoWriter (audio, temporary file and
rename as for one pass).

Each chunk chooses its face at its own first frame (the overlap's), by face index: a clip
whose faces change order across chunks can be given another person in a later chunk; with
one face, all faces or a face mapping of one face this does not arise.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import ConfigError
from .fuse import (DETECT_EVERY, STAGES, WORK_FACE_PX, FrameTracker, expected_frames, finish, frame_record,
                   fused_frames, prepare_sources, video_output_size, video_report)
from .io import DEFAULT_QUALITY, VideoLimits, VideoReader, VideoWriter, check_output, keyframe_times, probe

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
    return list(zip(cuts, cuts[1:] + [end]))


class ChunkWorker:
    """One Fuser in a worker process or Ray actor; fuses chunks of clips."""

    def __init__(self, settings):
        from ..pipeline import Fuser

        self.fuser = Fuser(settings)

    def fuse_chunk(self, source, video: str, sources, fusion, size, chunk: tuple[float, float | None],
                   clip_start: float, detect_every: int, limits: VideoLimits,
                   work_face_px: int = WORK_FACE_PX) -> dict:
        """The fused frames (pts from the output's time 0) of [chunk) (to the clip's end
        when it ends in None) and their report lines."""
        begin, stop = chunk
        warm = max(clip_start, begin - OVERLAP_S)
        reader = VideoReader(video, warm, stop, limits)
        src, prepared = prepare_sources(self.fuser, source, sources, fusion)
        tb = reader.info.time_base
        shift = int(round((warm - clip_start) / tb))  # reader pts (from warm) -> output pts
        tracker = FrameTracker()
        frames, records = [], []
        for frame, outcome in fused_frames(self.fuser, reader, size, src, prepared, fusion, detect_every, tracker,
                                           work_face_px):
            t = frame.time + warm - clip_start
            if frame.time + warm < begin - 1e-6:
                continue  # the overlap: smoothing warms up on it
            frame.time = t
            frames.append((frame.pts + shift, outcome.image))
            records.append(frame_record(frame, outcome))
        return {"frames": frames, "records": records, "timings": tracker.timings, "lost": reader.lost,
                "detections": tracker.detections, "cuts": tracker.cuts}


_worker: ChunkWorker | None = None


def _init_process(settings) -> None:
    global _worker
    _worker = ChunkWorker(settings)


def _run_in_process(*args) -> dict:
    return _worker.fuse_chunk(*args)


def _process_results(settings, jobs: list[tuple], workers: int) -> Iterator[dict]:
    ctx = multiprocessing.get_context("spawn")  # mediapipe does not survive fork after init
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_process, initargs=(settings,)) as pool:
        futures = [pool.submit(_run_in_process, *job) for job in jobs]
        try:
            for f in futures:  # in order: the driver writes chunk after chunk
                yield f.result()
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


def _ray_results(settings, jobs: list[tuple], workers: int | None, address: str) -> Iterator[dict]:
    ray = _start_ray(address, workers)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = [ray.remote(num_cpus=1)(ChunkWorker).remote(settings) for _ in range(min(n, len(jobs)))]
        refs = [actors[i % len(actors)].fuse_chunk.remote(*job) for i, job in enumerate(jobs)]
        for ref in refs:
            yield ray.get(ref)
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
    (plus the chunks; track ids become "chunk.track")."""
    fusion = fusion_params or settings.fusion_params(**params)
    check_output(out, overwrite, codec)
    info = probe(video, limits)
    t_start = time.perf_counter()
    clip_start, clip_end = start or 0.0, min(end or info.duration, info.duration)
    chunks = plan_chunks(keyframe_times(video), clip_start, clip_end, workers or 2, min_chunk_s)
    size = video_output_size(info.width, info.height, fusion.resolution)
    jobs = [(_portable(source), str(video), {k: _portable(v) for k, v in (sources or {}).items()} or None,
             fusion, size, (a, b if b < clip_end or end else None), clip_start, detect_every, limits, work_face_px)
            for a, b in chunks]
    results = (_ray_results(settings, jobs, workers, ray_address) if ray_address
               else _process_results(settings, jobs, min(workers or 2, len(jobs))))
    timings = {s: 0.0 for s in STAGES}
    per_frame, lost, detections, cuts = [], "", 0, 0
    total = expected_frames(info, start, end)
    with VideoWriter(out, info, size=size, codec=codec, quality=quality, overwrite=overwrite,
                     start=start, end=end) as writer:
        for chunk_index, result in enumerate(results):
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
        finish(writer, per_frame, timings)
    return video_report(source, video, out, info, size, per_frame, timings, time.perf_counter() - t_start, fusion,
                        lost=lost, full_detections=detections, cuts=cuts, detect_every=detect_every,
                        chunks=[[round(a, 3), round(b, 3)] for a, b in chunks],
                        workers=workers, ray=ray_address)


def _portable(source):
    """Paths travel to workers as strings; arrays and bytes as they are."""
    return str(source) if isinstance(source, Path) else source
