"""Faces over time, as pure functions: scene cuts, track association, landmark smoothing.

Nothing here touches models or files; every function takes the previous state and returns
the next, so a frame loop, a webcam callback and a test drive them the same way.

- A **track** is one face followed through a shot: matched frame to frame by box overlap
  and landmark distance, kept through up to `MAX_MISSES` frames without a match (a hand
  over the face, a missed detection), ended by a scene cut.
- Landmarks are smoothed per track with **One Euro filters** (Casiez et al., CHI 2012):
  a low-pass whose cutoff rises with speed, so a still head is held steady and a fast
  turn is followed without lag. Speeds are measured in eye distances per second, so one
  tuning serves a 40-px face and a 400-px one. The filtering is **pose-aware**: the head's
  motion in the picture (a similarity: shift, turn, scale, fitted to all the landmarks) and
  the face's shape in its own frame (expression, and the mesh's noise) have a filter each,
  so a moving head, which opens the motion filter, no longer lets the shape's jitter through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..mesh import eye_distance, similarity as mesh_similarity

MAX_MISSES = 8  # frames a track survives without a match
# Frames a chosen face missed by detection is still fused where its motion puts it, when the
# frames after the gap are not known (a webcam); a file's frames fill the gap by
# interpolation instead (video.fuse.fused_frames). Two frames (80 ms at 25 fps): a blink of
# the detector is bridged, a face that left is not painted for longer than that.
HOLD_MISSES = 2
MATCH_MIN_IOU = 0.2  # box overlap below which two faces are not the same (unless close)
MATCH_MAX_SHIFT = 0.6  # ... or mean landmark distance, in eye distances, above which they are not
CUT_THRESHOLD = 0.35  # mean absolute difference of 32x32 grey thumbnails (0..1) that is a cut
THUMB = 32
# One Euro filter on landmarks, tuned on shared/videos (full-detection landmarks of every
# frame, filtered offline): at 1 Hz / beta 1.5 the dancer's smoothed mesh trailed the
# measured one by 0.09 eye distances (the judge's landmark error rose from 0.026 to 0.076);
# at 2 Hz / 15 / 4 Hz it trails by 0.011 on the dancer and 0.006 on the talking head, whose
# second difference (jitter plus speech) drops by a quarter.
MIN_CUTOFF = 2.0  # Hz at rest
BETA = 15.0  # cutoff gain per (eye distance / s) of a point's speed: a fast turn passes through
D_CUTOFF = 4.0  # Hz, low-pass of the speed estimate itself
# The shape's filter (landmarks in the face's own frame, speeds in eye distances a second),
# measured on a photo under a moving camera (tests/data, known motion: the jitter the tracker
# adds) and the talking head (speech: the mouth opening's error against the raw mesh):
# per-point filter (2 Hz, 15)    jitter 0.0053, mouth 0.0048 eye distances
# pose-aware, shape 1 Hz, 5      jitter 0.0037, mouth 0.0141 (speech lags)
# pose-aware, shape 1 Hz, 30     jitter 0.0039, mouth 0.0057
SHAPE_MIN_CUTOFF = 1.0  # Hz at rest
SHAPE_BETA = 30.0  # per eye distance a second: moving lips (1-3 a second) open it to 30-90 Hz
ANCHORS = (33, 263)  # the outer eye corners: two points fix a similarity
LIGHT_KEEP = 0.6  # share of the previous frame's light field kept (exponential smoothing)


@dataclass(frozen=True)
class EuroState:
    """One Euro filter state for an array signal."""

    value: np.ndarray
    speed: np.ndarray
    time: float


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(state: EuroState | None, x: np.ndarray, t: float, scale: float = 1.0,
             min_cutoff: float | None = None, beta: float | None = None, d_cutoff: float | None = None) -> EuroState:
    """Filter one sample `x` (N x D points) at time `t` seconds. `scale` (pixels per unit,
    e.g. the eye distance) makes the speed, and so the cutoff, independent of face size;
    the cutoff is per point, from the speed of that point. Unset parameters take the
    module's MIN_CUTOFF, BETA, D_CUTOFF."""
    min_cutoff = MIN_CUTOFF if min_cutoff is None else min_cutoff
    beta = BETA if beta is None else beta
    d_cutoff = D_CUTOFF if d_cutoff is None else d_cutoff
    x = np.asarray(x, np.float64)
    if state is None or t <= state.time:
        return EuroState(value=x, speed=np.zeros_like(x), time=t)
    dt = t - state.time
    a_d = _alpha(d_cutoff, dt)
    speed = state.speed + a_d * ((x - state.value) / dt - state.speed)
    magnitude = np.linalg.norm(speed, axis=-1, keepdims=True) / max(scale, 1e-6)
    a = _alpha(min_cutoff + beta * magnitude, dt)
    return EuroState(value=state.value + a * (x - state.value), speed=speed, time=t)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares similarity taking points `src` to `dst` as (rotation and scale R,
    shift t): dst ~ src @ R.T + t (mesh.similarity, split)."""
    m = mesh_similarity(src, dst)
    return m[:, :2], m[:, 2]


@dataclass(frozen=True)
class FaceFilter:
    """Pose-aware smoothing of one face: `pose` filters where the head's similarity puts the
    reference's ANCHORS (pixels), `shape` the landmarks taken back into the reference's
    frame (the track's first landmarks), so each is filtered at its own speed."""

    reference: np.ndarray
    pose: EuroState
    shape: EuroState

    @property
    def value(self) -> np.ndarray:
        """The smoothed landmarks: the smoothed shape placed by the smoothed pose."""
        return _placed(self.reference, self.pose.value, self.shape.value)


def _placed(reference: np.ndarray, anchors: np.ndarray, shape: np.ndarray) -> np.ndarray:
    rot, shift = similarity(reference[list(ANCHORS)], anchors)
    return shape @ rot.T + shift


def smooth_face(state: FaceFilter | None, x: np.ndarray, t: float, min_cutoff: float | None = None,
                beta: float | None = None, d_cutoff: float | None = None) -> FaceFilter:
    """The filter after one face's landmarks `x` at `t` seconds: the head's pose through
    one_euro with `min_cutoff`, `beta`, `d_cutoff` (default the module's), the shape through
    one_euro with SHAPE_MIN_CUTOFF and SHAPE_BETA."""
    x = np.asarray(x, np.float64)
    reference = x if state is None else state.reference
    rot, shift = similarity(reference, x)
    anchors = reference[list(ANCHORS)] @ rot.T + shift
    shape = (x - shift) @ np.linalg.inv(rot).T
    pose = one_euro(None if state is None else state.pose, anchors, t, eye_distance(x), min_cutoff, beta, d_cutoff)
    shape_state = one_euro(None if state is None else state.shape, shape, t, eye_distance(reference),
                           SHAPE_MIN_CUTOFF, SHAPE_BETA, d_cutoff)
    return FaceFilter(reference=reference, pose=pose, shape=shape_state)


def extrapolate(state: FaceFilter, t: float) -> np.ndarray:
    """The smoothed landmarks carried to time `t` at the head's filtered speed, the shape
    held: where a face that was missed at `t` most likely is, knowing only the frames before."""
    anchors = state.pose.value + state.pose.speed * max(0.0, t - state.pose.time)
    return _placed(state.reference, anchors, state.shape.value)


def interpolate(before: np.ndarray, t_before: float, after: np.ndarray, t_after: float, t: float) -> np.ndarray:
    """Landmarks at `t` on the straight line between two frames of a track: what a frame
    inside a gap gets when the frames on both sides are known."""
    k = 0.0 if t_after <= t_before else min(1.0, max(0.0, (t - t_before) / (t_after - t_before)))
    return ((1.0 - k) * np.asarray(before, np.float64) + k * np.asarray(after, np.float64)).astype(np.float32)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A 32 x 32 grey copy (0..1) of a frame, what cut detection compares: area-averaged
    from every k-th pixel, so that at least 4 x 4 samples fall in each of its pixels. (The
    whole frame made grey and averaged cost 1.5 ms at 720x720, this 0.2; on the dev clips
    at their size and at 1280 px the cuts found are the same, and a frame's difference
    over the cut threshold moves by under 0.01.)"""
    import cv2

    step = max(1, min(rgb.shape[:2]) // (THUMB * 4))
    samples = np.ascontiguousarray(rgb[step // 2::step, step // 2::step])
    grey = cv2.cvtColor(samples, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def is_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    """A scene cut: the thumbnails differ more than motion and light changes make them.
    Their means are removed first, so a flash or a fade is not a cut."""
    if previous is None:
        return False
    diff = (current - current.mean()) - (previous - previous.mean())
    return float(np.abs(diff).mean()) > CUT_THRESHOLD * float(max(current.std(), previous.std(), 0.05)) * 2


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def points_box(pts: np.ndarray) -> tuple[float, float, float, float]:
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


@dataclass(frozen=True)
class Track:
    """One face through a shot: its raw and smoothed landmarks and the filter's state.
    `light` is the engine's light state for this face (see engines.classical), passed in
    and taken back each frame."""

    id: int
    raw: np.ndarray  # (478, 2) last measured landmarks, frame pixels
    smoothing: FaceFilter
    first_frame: int
    last_seen: int
    misses: int = 0
    light: object = None

    @property
    def landmarks(self) -> np.ndarray:
        """The smoothed landmarks (float32)."""
        return self.smoothing.value.astype(np.float32)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return points_box(self.landmarks)


@dataclass(frozen=True)
class Tracks:
    """Every live track, the next id, and which tracks are fused: `chosen` pairs a track id
    with the face index it was chosen as (None with all faces), the key of a face mapping."""

    live: tuple[Track, ...] = ()
    next_id: int = 0
    chosen: tuple[tuple[int, int | None], ...] = ()

    def chosen_key(self, track_id: int) -> int | None:
        return dict(self.chosen).get(track_id)

    def is_chosen(self, track_id: int) -> bool:
        return any(tid == track_id for tid, _ in self.chosen)


def match_cost(track: Track, landmarks: np.ndarray) -> float:
    """How unlike a track's last face a measured face is (lower is more alike; inf: not
    the same face). Mean landmark distance in eye distances, plus 1 - box overlap."""
    iou = box_iou(points_box(track.raw), points_box(landmarks))
    shift = float(np.linalg.norm(track.raw - landmarks, axis=1).mean()) / eye_distance(track.raw)
    if iou < MATCH_MIN_IOU and shift > MATCH_MAX_SHIFT:
        return float("inf")
    return shift + (1.0 - iou)


def associate(tracks: tuple[Track, ...], faces: list[np.ndarray]) -> list[tuple[int, int]]:
    """(track position, face position) pairs, cheapest first, each used once (greedy:
    a frame has a handful of faces, and the cheapest pair is nearly always right)."""
    pairs = sorted((match_cost(t, f), i, j) for i, t in enumerate(tracks) for j, f in enumerate(faces))
    used_t, used_f, out = set(), set(), []
    for cost, i, j in pairs:
        if cost == float("inf") or i in used_t or j in used_f:
            continue
        used_t.add(i)
        used_f.add(j)
        out.append((i, j))
    return out


def update_tracks(state: Tracks, faces: list[np.ndarray], frame: int, t: float, cut: bool,
                  choose: tuple[int, ...] = (0,), all_faces: bool = False, **euro) -> Tracks:
    """The tracks after one frame's faces (landmark arrays, in fusion order: largest first).

    A cut ends every track. Matched tracks take the new landmarks through their filter;
    unmatched ones count a miss and end after MAX_MISSES; unmatched faces start tracks.
    Each face index in `choose` picks a track once, at the frame where it is first needed
    (the first with that many faces, or the first after the track it picked ended), and
    keeps it while it lives, whatever the faces' order later: the chosen face stays the
    same person through the shot. With `all_faces` every track is chosen.
    """
    live = () if cut else state.live
    matched = dict(associate(live, faces))
    track_of_face: dict[int, int] = {}  # face position -> track id
    out: list[Track] = []
    for i, track in enumerate(live):
        if i in matched:
            lms = faces[matched[i]]
            smoothing = smooth_face(track.smoothing, lms, t, **euro)
            out.append(replace(track, raw=lms, smoothing=smoothing, last_seen=frame, misses=0))
            track_of_face[matched[i]] = track.id
        elif track.misses < MAX_MISSES:
            out.append(replace(track, misses=track.misses + 1))
    next_id = state.next_id
    for j, lms in enumerate(faces):
        if j not in track_of_face:
            out.append(Track(id=next_id, raw=lms, smoothing=smooth_face(None, lms, t), first_frame=frame, last_seen=frame))
            track_of_face[j] = next_id
            next_id += 1
    alive = {tr.id for tr in out}
    chosen = {} if cut else {tid: key for tid, key in state.chosen if tid in alive}
    if all_faces:
        chosen = {tr.id: None for tr in out}
    else:
        for key in choose:
            if key not in chosen.values() and key < len(faces) and track_of_face[key] not in chosen:
                chosen[track_of_face[key]] = key
    return Tracks(live=tuple(out), next_id=next_id, chosen=tuple(chosen.items()))


def same_choice(a: Tracks, b: Tracks, min_iou: float = 0.5) -> bool:
    """Whether two trackers that saw the same frame hold the same chosen faces: every chosen
    track of each has one of the other, chosen under the same key, whose last measured box
    overlaps its own by more than `min_iou` (two faces of one frame do not)."""
    def chosen(state: Tracks) -> list[tuple[int | None, tuple[float, float, float, float]]]:
        return [(state.chosen_key(t.id), points_box(t.raw)) for t in state.live if state.is_chosen(t.id)]

    ca, cb = chosen(a), chosen(b)
    return len(ca) == len(cb) and all(any(k == kb and box_iou(box, bb) > min_iou for kb, bb in cb) for k, box in ca)


def with_light(state: Tracks, track_id: int, light: object) -> Tracks:
    """The tracks with one track's light state replaced (the engine hands it back each frame)."""
    return replace(state, live=tuple(replace(t, light=light) if t.id == track_id else t for t in state.live))
