"""The frame loop: decode -> find or follow faces -> smooth -> Fuser.fuse_frame -> encode.

Per-video state lives in one small object, `FrameTracker` (the tracks and the previous
frame's thumbnail); the Fuser and its engine stay stateless per call. A caller with its
own frames (a webcam loop) holds a FrameTracker and calls `fuse_next_frame` per frame;
`fuse_video` does that over a file.

Full detection (the detectors' passes + the mesh) runs every `detect_every` frames, on
scene cuts, and whenever the chosen face was lost; in between, only the mesh runs, on the
region where each chosen face was (`FaceDetector.mesh_at`). See DETECT_EVERY for what that
costs and buys.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..errors import NoFaceError
from ..faces import Face
from ..imaging import output_size, resize_frame
from .io import DEFAULT_QUALITY, BackgroundEncoder, VideoLimits, VideoReader, VideoWriter, check_output, prefetch
from .track import (
    HOLD_MISSES,
    LIGHT_KEEP,
    Tracks,
    box_iou,
    extrapolate,
    interpolate,
    is_cut,
    points_box,
    thumbnail,
    update_tracks,
    with_light,
)

if TYPE_CHECKING:
    from ..config import FusionParams
    from ..faces import SourceFace
    from ..pipeline import Fuser

# Full detection every 12 frames (0.5 s at 25 fps). Measured on the dancer (464x560, one
# face): a full detection (detectors' passes + mesh) took 31 ms a frame, the mesh alone on
# the tracked region 15 ms, so this saves about 15 ms a frame (a quarter of the frame's
# time) against detecting every frame, at the same judged quality (flicker 0.893 / 0.895,
# landmark error 0.075 / 0.076 with either). What it gives up: a face that enters the
# picture is found up to 11 frames late (a cut or a lost face detects at once).
DETECT_EVERY = 12
# Faces larger than this many pixels are fused at this size in video, and only the change
# fusion made is enlarged back (Fuser._fuse_face_into's work_face_px). The engine and the
# blend grow with the face's area, so a talking head's 590-px face at 720p cost 100 ms a
# frame; at 320 px it costs about a third of that. Measured with the judge on the talking
# head (see docs/video.md): identity 12 of 12 sampled frames at 320 (as without it), 9 of 12
# at 256 and 160; flicker and landmark error unchanged. Small faces (the stage clip, the
# dancer) are below it and unaffected. 0 turns it off.
WORK_FACE_PX = 320
# Frames fused at once, on as many threads, while the next frame is detected: on 2 cores
# the fusion of one frame keeps 1.3 of them busy (OpenCV's own threads), so a second frame
# in flight and the detection beside them fill the rest. Each frame's light is then mixed
# from the frame two before it, not the one before (flicker: see docs/video.md).
FRAMES_IN_FLIGHT = 2
# A routine re-detection (every DETECT_EVERY frames while the chosen faces are followed) runs
# the detector's tile passes every 4th time (every 48 frames, 2 s at 25 fps): on the stage
# clip at 720p they made full detection 300 ms a frame against 65 without, most of the
# clip's detection time; the price is that a small face entering a crowd is found up to 2 s
# late (a large one still within DETECT_EVERY frames, a cut or a lost face at once).
TILES_EVERY = 4
SEARCH_EVERY = 4  # full detection while no face is followed: a face appears at most 3 frames late
STAGES = ("decode", "detect", "track", "roi", "engine", "blend", "paste", "encode")


@dataclass
class FrameTracker:
    """Everything a clip's frames share: the tracks, the last thumbnail, counters. Create
    one per clip (or per webcam session) and pass it to every `fuse_next_frame` call."""

    tracks: Tracks = field(default_factory=Tracks)
    thumb: np.ndarray | None = None
    frame: int = 0  # frames seen
    since_detection: int | None = None  # frames since the last full detection (None: never)
    detections: int = 0
    routine_detections: int = 0
    failed_searches: int = 0  # thorough detections in a row after which no chosen face was followed
    cuts: int = 0
    timings: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})


@dataclass
class FrameOutcome:
    """One fused frame and what happened in it (for a report)."""

    image: np.ndarray
    faces_found: int
    fused_tracks: list[int]
    full_detection: bool
    cut: bool


def _needs_detection(tracker: FrameTracker, cut: bool, detect_every: int) -> str:
    """Which search this frame gets: "" (the mesh on the followed faces alone), "routine"
    (every `detect_every` frames while every chosen face is followed) or "thorough" (on a
    cut, at the start, the frame after a chosen face was lost, and then while it stays lost
    or no face is chosen every SEARCH_EVERY frames, not on each: a crowd or a profile that
    yields no face cost 75-300 ms a frame of full detection at 720p, and each search that
    finds nothing doubles the wait, up to `detect_every`; in between, the mesh looks for a
    lost face where it was last)."""
    if cut or tracker.since_detection is None:
        return "thorough"
    chosen = [t for t in tracker.tracks.live if tracker.tracks.is_chosen(t.id)]
    # each search that found nothing to follow doubles the wait for the next, up to detect_every
    searching = tracker.since_detection + 1 >= min(SEARCH_EVERY << min(tracker.failed_searches, 4), detect_every)
    if not chosen or any(t.misses > 1 for t in chosen):
        return "thorough" if searching else ""
    if any(t.misses for t in chosen):
        return "thorough"
    return "routine" if tracker.since_detection + 1 >= detect_every else ""


def _find_faces(fuser: "Fuser", frame: np.ndarray, tracker: FrameTracker, search: str, threshold: float) -> list[np.ndarray]:
    """Landmarks of the faces of this frame: all faces from a full detection, or the chosen
    tracks' faces followed by the mesh alone.

    A routine detection runs the tile passes (the ones a crowd's small faces are found by,
    300 ms of a crowd frame against 65 at 720p) only every TILES_EVERY-th time, and a chosen
    face it does not find is followed by the mesh as between detections (a small stage face
    only the tiles find would otherwise be lost for a frame)."""
    if search:
        tiles = search == "thorough" or tracker.routine_detections % TILES_EVERY == 0
        faces = [f.landmarks for f in fuser.detector.detect(frame, threshold=threshold, tiles=tiles).faces]
        if search == "thorough":
            return faces
        tracker.routine_detections += 1
        followed = [t for t in tracker.tracks.live if tracker.tracks.is_chosen(t.id)
                    and not any(box_iou(t.box, points_box(f)) > 0.3 for f in faces)]
    else:
        faces, followed = [], [t for t in tracker.tracks.live if tracker.tracks.is_chosen(t.id)]
    for track in followed:
        lms = fuser.detector.mesh_at(frame, track.raw)
        if lms is not None:
            faces.append(lms)
    return faces


@dataclass
class FramePlan:
    """What one frame's fusion needs, decided in order (detection, tracks): the faces to fuse
    as (track id, face with the smoothed landmarks, its prepared source), and the chosen
    tracks that live on but were not seen in this frame (`missing`: fused when held, or in a
    file when the gap is filled)."""

    faces_found: int
    full_detection: bool
    cut: bool
    fused: list[tuple[int, Face, "SourceFace"]]
    missing: tuple[int, ...] = ()


def plan_next_frame(fuser: "Fuser", frame: np.ndarray, tracker: FrameTracker, source: "SourceFace | None",
                    params: "FusionParams", sources: Mapping[int, "SourceFace"] | None = None,
                    t: float | None = None, detect_every: int = DETECT_EVERY, hold: int = HOLD_MISSES) -> FramePlan:
    """Find or follow the faces of the next frame and update the tracker's tracks (in frame
    order: each frame's tracking needs the previous one's). The fusion itself
    (`fuse_planned`) needs only the plan and the tracks' light. A chosen face missed for up
    to `hold` frames is fused where its motion carries it (`extrapolate`), so a detector's
    blink does not show the original face for a frame; 0: missed faces pass through."""
    t = tracker.frame / 25.0 if t is None else t
    t0 = time.perf_counter()
    thumb = thumbnail(frame)
    cut = is_cut(tracker.thumb, thumb)
    search = _needs_detection(tracker, cut, detect_every)
    full = bool(search)
    faces = _find_faces(fuser, frame, tracker, search, params.threshold)
    t1 = time.perf_counter()
    if full:
        tracker.detections += 1
        tracker.since_detection = 0
    else:
        tracker.since_detection += 1
    choose = tuple(sorted(sources)) if sources else (params.face_index,)
    tracks = update_tracks(tracker.tracks, faces, tracker.frame, t, cut, choose=choose,
                           all_faces=params.all_faces and not sources)
    fused, missing = [], []
    for track in tracks.live:
        if not tracks.is_chosen(track.id):
            continue
        if track.misses:
            missing.append(track.id)
            if track.misses > hold:
                continue  # a face not seen for longer passes through unchanged
        src = sources.get(tracks.chosen_key(track.id)) if sources else source
        lms = extrapolate(track.smoothing, t).astype(np.float32) if track.misses else track.landmarks
        fused.append((track.id, Face(box=points_box(lms), score=1.0, landmarks=lms), src))
    tracker.timings["detect"] += t1 - t0
    tracker.timings["track"] += time.perf_counter() - t1
    if search == "thorough":
        followed = any(tracks.is_chosen(t.id) and not t.misses for t in tracks.live)
        tracker.failed_searches = 0 if followed else tracker.failed_searches + 1
    tracker.tracks, tracker.thumb = tracks, thumb
    tracker.frame += 1
    tracker.cuts += int(cut)
    return FramePlan(faces_found=len(faces), full_detection=full, cut=cut, fused=fused, missing=tuple(missing))


def fuse_planned(fuser: "Fuser", frame: np.ndarray, plan: FramePlan, lights: Mapping[int, Any],
                 params: "FusionParams", work_face_px: int = WORK_FACE_PX,
                 lift_enlarged: bool = True) -> tuple[np.ndarray, dict[int, Any], dict]:
    """The fused frame, each fused track's new light state and this call's stage times.
    `lights`: each track's light state from an earlier frame's fusion (none: start afresh).
    `work_face_px`, `lift_enlarged`: see Fuser.fuse_frame.
    Touches no shared state, so frames can be fused on several threads."""
    timings: dict[str, float] = {}
    faces = [(face, src, lights.get(track_id)) for track_id, face, src in plan.fused]
    image, new = fuser.fuse_frame(frame, faces, params, timings, light_keep=LIGHT_KEEP, work_face_px=work_face_px,
                                  lift_enlarged=lift_enlarged)
    return image, {track_id: light for (track_id, _, _), light in zip(plan.fused, new, strict=True)}, timings


def _track_lights(tracker: FrameTracker) -> dict[int, Any]:
    return {t.id: t.light for t in tracker.tracks.live}


def _keep_lights(fuser: "Fuser", tracker: FrameTracker, lights: Mapping[int, Any], timings: Mapping[str, float]) -> None:
    """A finished fusion's light states onto the tracks that still live (with_light leaves
    an ended track's id alone; the engine says what of the state a track holds stays:
    Engine.next_state), and its times."""
    kept = _track_lights(tracker)
    for track_id, light in lights.items():
        tracker.tracks = with_light(tracker.tracks, track_id, fuser.engine.next_state(kept.get(track_id), light))
    for stage, seconds in timings.items():
        tracker.timings[stage] = tracker.timings.get(stage, 0.0) + seconds


def _outcome(image: np.ndarray, plan: FramePlan) -> FrameOutcome:
    return FrameOutcome(image=image, faces_found=plan.faces_found, fused_tracks=[f[0] for f in plan.fused],
                        full_detection=plan.full_detection, cut=plan.cut)


def fuse_next_frame(fuser: "Fuser", frame: np.ndarray, tracker: FrameTracker, source: "SourceFace | None",
                    params: "FusionParams", sources: Mapping[int, "SourceFace"] | None = None,
                    t: float | None = None, detect_every: int = DETECT_EVERY,
                    work_face_px: int = WORK_FACE_PX) -> FrameOutcome:
    """Fuse one frame (RGB uint8, at output size) of a sequence; `t` is its time in
    seconds (default: the frame count at 25 fps). `sources` maps face indices (as chosen
    at a face's first appearance) to their own prepared sources; with a mapping only the
    mapped faces are fused. `work_face_px` > 0 (default WORK_FACE_PX) fuses larger faces at
    that size (only the change is enlarged back: faster on large faces); 0: at full size.
    The tracker is updated in place; each frame's light follows from the previous frame's."""
    plan = plan_next_frame(fuser, frame, tracker, source, params, sources, t, detect_every)
    image, lights, timings = fuse_planned(fuser, frame, plan, _track_lights(tracker), params, work_face_px)
    _keep_lights(fuser, tracker, lights, timings)
    return _outcome(image, plan)


def video_output_size(width: int, height: int, resolution) -> tuple[int, int]:
    """The output frame size: the input's, or its long side set to `resolution`."""
    return output_size(width, height, resolution)


def prepare_sources(fuser: "Fuser", source, sources: Mapping[int, Any] | None, params: "FusionParams"):
    """(the prepared default source or None, the prepared face mapping)."""
    prepared = fuser.prepare_sources(sources or {}, params)
    src = None if source is None else fuser.prepare_source(source, params.source_face_index, params.threshold)
    if src is None and not prepared:
        from ..errors import ConfigError

        raise ConfigError("a source face or a face mapping is needed")
    return src, prepared


def _fill_gaps(waiting: deque, plan: FramePlan, t: float, last_fused: Mapping[int, tuple[float, Face]]) -> None:
    """Fuse the waiting frames in which a track of `plan` (seen again at `t`) was missing, on
    landmarks interpolated between its last fused frame and this one."""
    for i, (frame, rgb, planned) in enumerate(waiting):
        filled = [(tid, face, src) for tid, face, src in plan.fused if tid in planned.missing and tid in last_fused]
        if not filled:
            continue
        fused = list(planned.fused)
        for tid, face, src in filled:
            t0, before = last_fused[tid]
            lms = interpolate(before.landmarks, t0, face.landmarks, t, frame.time)
            fused.append((tid, Face(box=points_box(lms), score=1.0, landmarks=lms), src))
        missing = tuple(tid for tid in planned.missing if tid not in {f[0] for f in filled})
        waiting[i] = (frame, rgb, replace(planned, fused=fused, missing=missing))


def _gap_may_close(plan: FramePlan, tracks: Tracks, last_fused: Mapping[int, tuple[float, Face]]) -> bool:
    """Whether a frame must wait: a chosen track missing in it still lives (so it may be seen
    again, within MAX_MISSES frames) and was fused before (so there is a side to start from)."""
    alive = {t.id for t in tracks.live if tracks.is_chosen(t.id)}
    return any(tid in alive and tid in last_fused for tid in plan.missing)


def fused_frames(fuser: "Fuser", reader: VideoReader, size: tuple[int, int], src, prepared, fusion: "FusionParams",
                 detect_every: int = DETECT_EVERY, tracker: FrameTracker | None = None,
                 work_face_px: int = WORK_FACE_PX, in_flight: int = FRAMES_IN_FLIGHT):
    """(frame, outcome) for every frame of `reader`, resized to `size` and fused in order.

    Detection and tracking run here, frame by frame; the fusion of up to `in_flight` frames
    runs on as many threads beside them (see FRAMES_IN_FLIGHT), each frame taking its light
    from the frame `in_flight` before it, so the result does not depend on which thread
    finishes first. `in_flight` 1: one frame after the other, as fuse_next_frame does (but
    for missed faces, which fuse_next_frame, not knowing the frames after, holds instead).

    A chosen face that detection misses for a few frames inside its track is fused in those
    frames on landmarks interpolated between the frames around the gap: a frame with a
    missing face waits (at most the MAX_MISSES frames a track lives unseen) until the face
    is seen again or its track ends; in the latter case it passes through unchanged. (Up to
    MAX_MISSES + 1 decoded frames are then held in memory.)"""
    tracker = tracker or FrameTracker()
    pending: deque = deque()
    waiting: deque = deque()  # (frame, rgb, plan): planned, not yet fused
    last_fused: dict[int, tuple[float, Face]] = {}  # track id -> (time, face) of its latest fused frame

    def finished():
        frame, plan, future = pending.popleft()
        image, lights, timings = future.result()
        _keep_lights(fuser, tracker, lights, timings)
        return frame, _outcome(image, plan)

    with ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="facefuse-fuse") as pool:
        def release(everything: bool):
            """Start the fusion of the waiting frames, in order, up to the first whose gap
            may still close (`everything`: all of them)."""
            while waiting and (everything or not _gap_may_close(waiting[0][2], tracker.tracks, last_fused)):
                while len(pending) >= max(1, in_flight):
                    yield finished()
                frame, rgb, plan = waiting.popleft()
                future = pool.submit(fuse_planned, fuser, rgb, plan, _track_lights(tracker), fusion, work_face_px)
                pending.append((frame, plan, future))

        t_decode = time.perf_counter()
        for frame in reader:
            tracker.timings["decode"] += time.perf_counter() - t_decode
            rgb = resize_frame(frame.rgb, size)
            plan = plan_next_frame(fuser, rgb, tracker, src, fusion, prepared, frame.time, detect_every, hold=0)
            _fill_gaps(waiting, plan, frame.time, last_fused)
            waiting.append((frame, rgb, plan))
            last_fused.update({tid: (frame.time, face) for tid, face, _ in plan.fused})
            last_fused = {tid: seen for tid, seen in last_fused.items() if any(t.id == tid for t in tracker.tracks.live)}
            yield from release(everything=False)
            t_decode = time.perf_counter()
        yield from release(everything=True)  # the clip's end: gaps still open pass through
        while pending:
            yield finished()


def frame_record(frame, outcome: FrameOutcome) -> dict:
    """One frame's line of the report."""
    return {"t": round(frame.time, 4), "faces": outcome.faces_found, "fused": outcome.fused_tracks,
            **({"detection": True} if outcome.full_detection else {}), **({"cut": True} if outcome.cut else {})}


def fusion_params_of(fuser: "Fuser", params: dict) -> "FusionParams":
    """Validated fusion parameters: a ready `fusion_params=` or keyword overrides."""
    return params.pop("fusion_params", None) or fuser.params(**params)


def fuse_video(fuser: "Fuser", source, video: str | Path, out: str | Path,
               progress: Callable[[int, int], None] | None = None, sources: Mapping[int, Any] | None = None,
               start: float | None = None, end: float | None = None, quality: int = DEFAULT_QUALITY,
               codec: str | None = None, overwrite: bool = False, detect_every: int = DETECT_EVERY,
               limits: VideoLimits = VideoLimits(), work_face_px: int = WORK_FACE_PX, **params: Any) -> dict:
    """Fuse `source`'s face (or the faces of a `sources` mapping) into every frame of
    `video` from `start` to `end` seconds and write `out` (.mp4 .mov .mkv: H.264; .webm:
    VP9). Frames without a face pass through unchanged; a clip without a face in any
    frame raises NoFaceError and writes nothing. `progress(done, total)` is called after
    every frame. Returns the report: frames, faces and fused tracks per frame, timings."""
    fusion = fusion_params_of(fuser, params)
    check_output(out, overwrite, codec)
    reader = VideoReader(video, start, end, limits)
    info = reader.info
    size = video_output_size(info.width, info.height, fusion.resolution)
    t_start = time.perf_counter()
    src, prepared = prepare_sources(fuser, source, sources, fusion)
    tracker = FrameTracker()
    per_frame: list[dict] = []
    total = expected_frames(info, start, end)
    t_loop = time.perf_counter()
    with VideoWriter(out, info, size=size, codec=codec, quality=quality, overwrite=overwrite,
                     start=start, end=end) as writer, BackgroundEncoder(writer) as encoder:
        # decoding and encoding run on their own threads, beside the fusion of each frame:
        # "decode" and "encode" below are the time the loop waited for them
        for frame, outcome in fused_frames(fuser, prefetch(reader), size, src, prepared, fusion, detect_every,
                                           tracker, work_face_px):
            t_enc = time.perf_counter()
            encoder.write(outcome.image, frame.pts)
            tracker.timings["encode"] += time.perf_counter() - t_enc
            per_frame.append(frame_record(frame, outcome))
            if progress is not None:
                progress(frame.index + 1, max(total, frame.index + 1))
        t_enc = time.perf_counter()
        encoder.finish()
        tracker.timings["encode"] += time.perf_counter() - t_enc
        finish(writer, per_frame, tracker.timings, faces_asked(fusion, sources))
    return video_report(source, video, out, info, size, per_frame, tracker.timings, time.perf_counter() - t_start,
                        fusion, lost=reader.lost, full_detections=tracker.detections, cuts=tracker.cuts,
                        detect_every=detect_every, work_face_px=work_face_px,
                        loop_seconds=round(time.perf_counter() - t_loop, 3))


def expected_frames(info, start: float | None, end: float | None) -> int:
    if not (start or end):
        return info.frames
    return max(1, int(round(((end or info.duration) - (start or 0.0)) * float(info.fps))))


def faces_asked(fusion: "FusionParams", sources: Mapping[int, Any] | None = None) -> tuple[int, ...]:
    """The target face numbers a fusion asks for (the mapped ones with `sources`); () for all."""
    if sources:
        return tuple(sorted(sources))
    return () if fusion.all_faces else fusion.face_indices


def finish(writer: VideoWriter, per_frame: list[dict], timings: dict[str, float], asked: tuple[int, ...] = ()) -> None:
    """Close the output, or fail without one when no frame had a face to fuse: saying which
    face was asked and how many there were when faces were found but not the one asked."""
    if not any(f["fused"] for f in per_frame):
        most = max((f["faces"] for f in per_frame), default=0)
        if most and asked and max(asked) >= most:
            numbers = ", ".join(map(str, asked))
            raise NoFaceError("target", requested=max(asked), found=most, name="video",
                              detail=f"face {numbers} asked; at most {most} face(s) in these {len(per_frame)} frames")
        raise NoFaceError("target", name="video", detail=f"no face found in any of the {len(per_frame)} frames")
    t_enc = time.perf_counter()
    writer.close()
    timings["encode"] += time.perf_counter() - t_enc


def video_report(source, video, out, info, size, per_frame: list[dict], timings: dict[str, float], seconds: float,
                 fusion: "FusionParams", **extra: Any) -> dict:
    return {
        "source": None if source is None else str(source) if isinstance(source, (str, Path)) else "array",
        "video": str(video), "output": str(out), "input": info.to_dict(),
        "output_size": list(size), "frames": len(per_frame),
        "frames_with_fused_face": sum(1 for f in per_frame if f["fused"]),
        "tracks": sorted({tid for f in per_frame for tid in f["fused"]}),
        **extra, "seconds": round(seconds, 3), "fps": round(len(per_frame) / max(seconds, 1e-9), 2),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "params": fusion.model_dump(), "per_frame": per_frame,
    }


def preview_frame(fuser: "Fuser", source, video: str | Path, at: float, sources: Mapping[int, Any] | None = None,
                  limits: VideoLimits = VideoLimits(), **params: Any) -> np.ndarray:
    """The fused frame at `at` seconds (what a scrubber shows): one frame, detected fully,
    without smoothing. NoFaceError when that frame has no face to fuse."""
    fusion = fusion_params_of(fuser, params)
    reader = VideoReader(video, start=at, limits=limits)
    frames = iter(reader)
    frame = next(frames)
    frames.close()
    size = video_output_size(reader.info.width, reader.info.height, fusion.resolution)
    src, prepared = prepare_sources(fuser, source, sources, fusion)
    outcome = fuse_next_frame(fuser, resize_frame(frame.rgb, size), FrameTracker(), src, fusion, prepared, 0.0)
    if not outcome.fused_tracks:
        raise NoFaceError("target", name="video", detail=f"no face to fuse in the frame at {at:g} s")
    return outcome.image
