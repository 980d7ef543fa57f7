"""Faces and their 478-point meshes, found on a downscaled copy and mapped back.

One detector serves every front-end (fuse, detect, the WebUI face picker, REST /detect),
so "face 0" means the same face everywhere.

Method (measured on shared/faces, see BENCHMARKS.md):
1. mediapipe's full-range face detector on a copy whose long side is <= `max_side`;
2. where the frame is large enough for faces to be small and the whole-frame pass found no
   face, several, or one small one, the same detector on overlapping tiles of that copy (it
   sees every input at 192 x 192, so a tile lets it see a small face bigger); a portrait
   (one face wider than an eighth of the frame) is not tiled: on the catalog the tiles found
   nothing more in portraits and cost them about 30 ms. Detections of all passes are merged by
   non-maximum suppression;
3. where the photo is so much larger than the copy that a face of `min_face_px` would be
   too small even in the copy's finest tiles (a 40-px face in a 36-Mpx photo is 7 px in the
   copy), tiles cut from the full-resolution photo, each 12 x `min_face_px` wide, so such a
   face is 16 px of the detector's input; only when the first passes found no face, several,
   or one small one (a portrait is not searched further). Its cost follows the photo's area:
   about 0.07 s per Mpx on one core; the tiles run on up to FULL_RES_THREADS cores;
4. if nothing was found upright, the copy rotated by 90, 270 and 180 degrees; if the faces
   found lean (median roll of 12 degrees or more), the copy turned upright by that roll,
   searched by passes 1-2 and merged. On 10 group photos turned by -45 to 45 degrees
   (scripts/detect_roll_eval.py) this finds 302 of 315 faces instead of 296, the same 1
   false face either way, for 1.7-1.9x the detection time on those photos;
5. the 478-point face mesh on each face's own crop, cut from the full-resolution image
   and rotated upright by the eye line, so the mesh is as precise as the photo allows.
   A detection whose mesh cannot be found or disagrees with it is dropped, and the reason
   is kept in `Detection.dropped`.

Ordering rule: faces are sorted by box area, largest first; equal areas left to right.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import cv2
import numpy as np

from .config import usable_cores
from .errors import InputError
from .faces import Detection, Face
from .imaging import resize_frame
from .mesh import LEFT_IRIS, RIGHT_IRIS

MESH_CROP = 384  # pixels of the upright crop the mesh runs on
MESH_CONTEXTS = (2.2, 1.7)  # crop side / face box side; the tighter crop when the mesh fails on the first
# (a small face among neighbours: dlib_voc_2008_004176's 41-px face meshes only at 1.7)
TILE_MIN_SIDE = 480  # below this the whole-frame pass already sees faces large enough
FINE_TILES, FINE_TILES_MIN_SIDE = 5, 1000  # finer tile level: 5 along the long side, frames >= 1000 px
TILE_SCORE_BONUS = 0.15  # tiles see more clutter at higher zoom: ask more of them
BORDER_PAD = 0.25  # border pass: mirrored margin, share of the copy's long side
BORDER_MIN_INSIDE = 0.4  # a face cut by the border needs this share of its box inside the frame
BORDER = -1  # candidate priority of the border pass: its faces get a mirrored mesh crop too
FULL_RES_THREADS = 2  # full-res tiles run on this many cores at most
ROLL_PASS_DEG = 12.0  # faces leaning this much (median) get a second search on a copy turned upright
DETECTOR_INPUT = 192  # the full-range model's input side
SMALLEST_INPUT_FACE = 16  # face side (px of that input) the detector still finds reliably
MIN_FACE_PX = 40  # default: smallest face (photo pixels) a search of a large photo must reach


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    if inter <= 0:
        return 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    # also treat a box mostly inside another as a duplicate (tiles cut faces)
    return max(inter / (area_a + area_b - inter), inter / min(area_a, area_b) * 0.8)


def _nms(cands: list[tuple], thresh: float = 0.35) -> list[tuple]:
    """cands: (box, score, kps, priority). Keep the best of each overlapping group."""
    cands = sorted(cands, key=lambda c: (c[3], c[1]), reverse=True)
    kept: list[tuple] = []
    for c in cands:
        if all(_iou(c[0], k[0]) < thresh for k in kept):
            kept.append(c)
    return kept


def _tiles(width: int, height: int, n: int | None = None) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles (25 % overlap), n along the long side (default: 2 below 1000 px,
    else 3, about half the frame's long side each)."""
    long_side = max(width, height)
    if long_side < TILE_MIN_SIDE:
        return []
    n = n or (2 if long_side < 1000 else 3)
    return _grid(width, height, _tile_side(long_side, n))


def _tile_side(long_side: int, n: int) -> int:
    """Side of n tiles overlapping by a quarter that span `long_side`."""
    return int(np.ceil(long_side / (n - (n - 1) * 0.25)))


def _grid(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Square tiles of side `tile` (cut to the frame), overlapping by at least a quarter."""
    tw, th = min(tile, width), min(tile, height)
    xs = np.linspace(0, width - tw, max(1, int(np.ceil((width - tw) / (tw * 0.75))) + 1)).astype(int)
    ys = np.linspace(0, height - th, max(1, int(np.ceil((height - th) / (th * 0.75))) + 1)).astype(int)
    return [(int(x), int(y), int(x) + tw, int(y) + th) for y in ys for x in xs]


def _crowd_likely(cands: list[tuple], long_side: int) -> bool:
    """Worth a finer tile pass: no face yet, several faces, or one small one. A portrait
    (one face larger than an eighth of the frame) is not searched further: any face a finer
    pass could add would be small, and cost 15-30 more detector calls."""
    if len(cands) != 1:
        return True
    b = cands[0][0]
    return max(b[2] - b[0], b[3] - b[1]) < long_side / 8


class FaceDetector:
    """mediapipe face detection + face mesh, created once and reused (thread-safe)."""

    def __init__(self, max_side: int = 1280, tiles: bool = True, min_face_px: int = MIN_FACE_PX,
                 threads: int = 0):
        import mediapipe as mp  # heavy: imported only when a detector is built

        self.max_side = max_side
        self.use_tiles = tiles
        self.min_face_px = min_face_px  # 0: no full-resolution pass
        # cores for the full-res tiles: 0 = up to FULL_RES_THREADS (a batch worker that was
        # given 1 thread must not start a second graph)
        self.threads = threads
        self._lock = threading.Lock()
        self._mesh_started = False
        self._helpers: list = []  # extra full-range detectors for the full-res tiles
        with quiet_native_logs():
            self._load(mp)

    @classmethod
    def from_settings(cls, settings) -> "FaceDetector":
        """A detector as `config.Settings` describe it (face_detection, inference.threads)."""
        fd = settings.face_detection
        return cls(max_side=fd.max_side, tiles=fd.tiles, min_face_px=fd.min_face_px, threads=settings.inference.threads)

    def _load(self, mp) -> None:
        # full range (model 1) for faces of every size, short range (model 0) for faces
        # that fill the frame, which the full-range model misses
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.3
        )
        self._close_detector = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.3
        )
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
        )
        # the graphs start (and log their start-up notices) on first use: do that now
        blank = np.zeros((64, 64, 3), np.uint8)
        self._detector.process(blank)
        self._close_detector.process(blank)
        self._mesh.process(blank)

    def close(self) -> None:
        self._detector.close()
        self._close_detector.close()
        self._mesh.close()
        for extra in self._helpers:
            extra.close()
        self._helpers.clear()

    def _helper_detectors(self, n: int) -> list:
        """n - 1 more full-range detectors (made on first use, then kept) so the full-res
        tiles run on several cores: mediapipe releases the GIL while a graph runs, and one
        graph serves one call at a time (2 threads: 1.76x the tiles per second)."""
        import mediapipe as mp

        while len(self._helpers) < n - 1:
            with quiet_native_logs():
                extra = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.3)
                extra.process(np.zeros((64, 64, 3), np.uint8))
            self._helpers.append(extra)
        return [self._detector, *self._helpers[: n - 1]]

    # -- detection passes -------------------------------------------------------------
    def _run_detector(self, rgb: np.ndarray, close_range: bool = False, graph=None) -> list[tuple]:
        """Boxes (pixels of rgb), scores and 6 key points from one of the two models (or
        from `graph`, a full-range helper)."""
        h, w = rgb.shape[:2]
        res = (graph or (self._close_detector if close_range else self._detector)).process(rgb)
        out = []
        for det in res.detections or []:
            bb = det.location_data.relative_bounding_box
            box = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
            kps = np.array([[k.x * w, k.y * h] for k in det.location_data.relative_keypoints], np.float32)
            out.append((box, float(det.score[0]), kps))
        return out

    def _candidates(self, small: np.ndarray, threshold: float, passes: list[str], tiles: bool = True) -> list[tuple]:
        """Whole-copy passes of both models, then (`tiles`) its tile levels where faces may be small."""
        cands = [(b, s, k, 2) for b, s, k in self._run_detector(small) if s >= threshold]
        cands += [(b, s, k, 1) for b, s, k in self._run_detector(small, close_range=True) if s >= threshold]
        passes.append("frame")
        long_side = max(small.shape[:2])
        if tiles and self.use_tiles and _crowd_likely(_nms(cands), long_side):  # a portrait needs no tiles
            self._tile_pass(small, _tiles(small.shape[1], small.shape[0]), threshold, cands, passes)
            if long_side >= FINE_TILES_MIN_SIDE and _crowd_likely(_nms(cands), long_side):
                # a second, finer level (a fifth of the long side): faces of 35-50 px in a
                # crowd become large enough for the detector's 192-px input
                self._tile_pass(small, _tiles(small.shape[1], small.shape[0], FINE_TILES), threshold, cands, passes)
        return _nms(cands)

    def _border_pass(self, small: np.ndarray, threshold: float, cands: list, passes: list[str]) -> list[tuple]:
        """Faces cut by the frame's edge: both models on the copy with a mirrored margin,
        where half a face and its mirror image make a whole one. Only detections that cross
        the edge, with at least BORDER_MIN_INSIDE of their box inside, are new."""
        h, w = small.shape[:2]
        pad = int(BORDER_PAD * max(h, w))
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        found = []
        for close in (False, True):
            for b, s, k in self._run_detector(padded, close_range=close):
                box = (b[0] - pad, b[1] - pad, b[2] - pad, b[3] - pad)
                inside = (max(0.0, min(box[2], w) - max(box[0], 0.0)) * max(0.0, min(box[3], h) - max(box[1], 0.0))
                          / max((box[2] - box[0]) * (box[3] - box[1]), 1e-6))
                if s >= threshold and BORDER_MIN_INSIDE <= inside < 0.95:
                    found.append((box, s, k - np.float32(pad), BORDER))
        passes.append("border")
        return _nms(cands + found)

    def _copy_reach(self, small_long_side: int, scale: float) -> float:
        """Smallest face (photo pixels) the passes on the copy can find."""
        finest = _tile_side(small_long_side, FINE_TILES) if small_long_side >= FINE_TILES_MIN_SIDE else small_long_side
        return finest * SMALLEST_INPUT_FACE / DETECTOR_INPUT / scale

    def _full_res_pass(self, image: np.ndarray, scale: float, threshold: float, cands: list, passes: list[str],
                       tiles: bool = True) -> list[tuple]:
        """Tiles of the full-resolution photo where the copy cannot show a face of
        `min_face_px`; boxes come back in the copy's pixels, merged with `cands`."""
        long_copy = round(max(image.shape[:2]) * scale)
        if not (tiles and self.use_tiles and self.min_face_px and scale < 1):
            return cands
        if self._copy_reach(long_copy, scale) < 1.25 * self.min_face_px or not _crowd_likely(cands, long_copy):
            return cands
        side = self.min_face_px * DETECTOR_INPUT // SMALLEST_INPUT_FACE
        tiles = _grid(image.shape[1], image.shape[0], side)
        graphs = self._helper_detectors(min(self.threads or FULL_RES_THREADS, FULL_RES_THREADS, usable_cores(), len(tiles)))
        found: list[tuple] = []
        with ThreadPoolExecutor(len(graphs)) as pool:  # list.append is atomic: one list serves all
            list(pool.map(lambda i: self._tile_pass(image, tiles[i::len(graphs)], threshold, found, [],
                                                    input_side=DETECTOR_INPUT, graph=graphs[i]), range(len(graphs))))
        found.sort(key=lambda c: c[0])  # the threads' order varies: merge in a fixed one
        passes.append(f"full-res tiles:{len(tiles)}")
        return _nms(cands + [(tuple(v * scale for v in b), s, k * scale, p) for b, s, k, p in found])

    def _tile_pass(self, image: np.ndarray, tiles: list, threshold: float, cands: list, passes: list[str],
                   input_side: int | None = None, graph=None) -> None:
        """Detector on each tile (shrunk to `input_side` first, if given); tile-only faces
        need TILE_SCORE_BONUS more score."""
        tile_thr = min(0.95, threshold + TILE_SCORE_BONUS)
        for x0, y0, x1, y1 in tiles:
            tile, kx, ky = image[y0:y1, x0:x1], 1.0, 1.0
            if input_side and max(tile.shape[:2]) > input_side:
                k = input_side / max(tile.shape[:2])
                size = (max(1, round(tile.shape[1] * k)), max(1, round(tile.shape[0] * k)))
                kx, ky = size[0] / tile.shape[1], size[1] / tile.shape[0]
                tile = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
            for b, s, kp in self._run_detector(np.ascontiguousarray(tile), graph=graph):
                if s >= tile_thr:
                    box = (b[0] / kx + x0, b[1] / ky + y0, b[2] / kx + x0, b[3] / ky + y0)
                    cands.append((box, s, kp / np.float32([kx, ky]) + np.float32([x0, y0]), 0))
        if tiles:
            passes.append(f"tiles:{len(tiles)}")

    def _roll_pass(self, small: np.ndarray, threshold: float, cands: list, passes: list[str],
                   tiles: bool = True) -> list[tuple]:
        """When the faces found lean (median roll >= ROLL_PASS_DEG: a tilted camera, heads
        leaning together), search the copy again, turned upright by that roll: the detector
        misses more faces the more they lean. Boxes and key points are mapped back."""
        long_side = max(small.shape[:2])
        if not cands or not _crowd_likely(cands, long_side):  # one large face: nothing more to find
            return cands
        rolls = [np.degrees(np.arctan2(*(k[1] - k[0])[::-1])) for _, _, k, _ in cands if len(k) >= 2]
        roll = float(np.median(rolls)) if rolls else 0.0
        if abs(roll) < ROLL_PASS_DEG:
            return cands
        h, w = small.shape[:2]
        upright, m = turned(small, roll)
        sub: list[str] = []
        found = self._candidates(upright, threshold, sub, tiles)
        passes.append(f"roll{roll:+.0f}:" + "+".join(sub))
        inv = cv2.invertAffineTransform(m)
        back = []
        for b, s, k, p in found:
            cx, cy = inv @ np.float64([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, 1.0])
            half_w, half_h = (b[2] - b[0]) / 2, (b[3] - b[1]) / 2
            if not (0 <= cx < w and 0 <= cy < h):
                continue  # in the corners the turn added
            kps = (k @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
            back.append(((cx - half_w, cy - half_h, cx + half_w, cy + half_h), s, kps, p))
        return _nms(cands + back)

    def _rotated_candidates(self, small: np.ndarray, threshold: float, passes: list[str]) -> list[tuple]:
        """Try the frame turned by 90, 270, 180 degrees; map boxes back to the upright copy."""
        h, w = small.shape[:2]
        for code, name in ((cv2.ROTATE_90_CLOCKWISE, "rot90"), (cv2.ROTATE_90_COUNTERCLOCKWISE, "rot270"),
                           (cv2.ROTATE_180, "rot180")):
            rot = cv2.rotate(small, code)
            found = [(b, s, k) for b, s, k in self._run_detector(rot) if s >= threshold]
            passes.append(name)
            if not found:
                continue
            out = []
            for b, s, k in found:
                pts = np.vstack([np.float32([[b[0], b[1]], [b[2], b[3]]]), k])
                back = _unrotate_points(pts, code, w, h)
                xs, ys = back[:2, 0], back[:2, 1]
                out.append(((float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())), s, back[2:], 1))
            return _nms(out)
        return []

    # -- mesh -------------------------------------------------------------------------
    def _mesh_on_crop(self, image: np.ndarray, box, kps: np.ndarray, context: float = MESH_CONTEXTS[0],
                      mirrored: bool = False) -> np.ndarray | None:
        """478 landmarks (image pixels) from an upright crop around one detected face; where
        the crop leaves the frame it repeats the edge pixels, or mirrors the frame
        (`mirrored`, for faces cut by the edge: the mesh then sees a whole face)."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(box[2] - box[0], box[3] - box[1]) * context
        # detector key points 0, 1 = the subject's right and left eye: their line gives roll
        dx, dy = kps[1] - kps[0]
        angle = float(np.degrees(np.arctan2(dy, dx))) if len(kps) >= 2 else 0.0
        scale = MESH_CROP / side
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[:, 2] += (MESH_CROP / 2 - cx, MESH_CROP / 2 - cy)
        # bilinear at every scale: warpAffine has no area filter (asked for INTER_AREA, it
        # samples bilinearly), so a face box over ~350 px aliases a little. Filtering first
        # (pyrDown) made landmarks 21 % steadier but moved which glasses pixels a source's
        # paint-out takes (QUALITY.md stop 35): not done
        crop = cv2.warpAffine(image, m, (MESH_CROP, MESH_CROP), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101 if mirrored else cv2.BORDER_REPLICATE)
        if self._mesh_started:
            res = self._mesh.process(crop)
        else:  # its first real face logs a notice to fd 2 once per process
            with quiet_native_logs():
                res = self._mesh.process(crop)
            self._mesh_started = True
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        pts = np.array([[p.x * MESH_CROP, p.y * MESH_CROP] for p in lm], np.float32)
        inv = cv2.invertAffineTransform(m)
        return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)

    # -- public -----------------------------------------------------------------------
    def mesh_at(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """The 478-point mesh of the face near `landmarks` (a previous frame's), from the
        mesh model alone on that region: what a video tracker runs between full detections
        (one mesh call instead of the detectors' passes). None when no face is there."""
        box = _points_box(landmarks)
        kps = landmarks[[RIGHT_IRIS, LEFT_IRIS]]
        with self._lock:
            lms = self._mesh_on_crop(image, box, kps, MESH_CONTEXTS[1])
        if lms is None or _iou(_points_box(lms), box) < 0.3:
            return None
        return lms

    def detect(self, image: np.ndarray, threshold: float = 0.6, tiles: bool = True) -> Detection:
        """All faces of an RGB uint8 image at or above `threshold`, in fusion order.
        `tiles` False: without the tile passes (the faces a crowd's small ones are found by,
        most of a crowd frame's time: 300 ms against 65 at 720p), for a video's routine
        re-detection of faces it already follows."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError("detect expects an RGB uint8 image")
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = resize_frame(image, (max(1, round(w * scale)), max(1, round(h * scale))))
        passes: list[str] = []
        faces: list[Face] = []
        dropped: list[dict] = []
        with self._lock:
            cands = self._candidates(small, threshold, passes, tiles)
            cands = self._full_res_pass(image, scale, threshold, cands, passes, tiles)
            cands = self._border_pass(small, threshold, cands, passes)
            if cands:
                cands = self._roll_pass(small, threshold, cands, passes, tiles)
            else:
                cands = self._rotated_candidates(small, threshold, passes)
            for box_s, score, kps_s, priority in cands:
                box = tuple(v / scale for v in box_s)
                lms, reason = None, ""
                for context in MESH_CONTEXTS:
                    lms = self._mesh_on_crop(image, box, kps_s / scale, context, mirrored=priority == BORDER)
                    reason = "no face mesh on the face's crop" if lms is None else _mesh_disagrees(lms, box)
                    if not reason:
                        break
                if reason:
                    dropped.append({"box": _rounded(box), "score": round(score, 3), "reason": reason})
                    continue
                faces.append(Face(box=_points_box(lms), score=score, landmarks=lms))
        faces = _dedupe_meshes(faces, dropped)
        faces.sort(key=lambda f: (-round(f.width * f.height, -1), f.box[0]))
        return Detection(faces=faces, dropped=dropped, scale=scale, passes=passes)


@contextmanager
def quiet_native_logs():
    """mediapipe's C++ side prints start-up notices straight to file descriptor 2; a
    command-line tool promises one line on stderr, so mute fd 2 while the graphs start."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded, captured): nothing to mute
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def turned(image: np.ndarray, angle: float, fill: tuple[int, int, int] = (0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """`image` turned by `angle` degrees (counter-clockwise) on a canvas enlarged to hold all
    of it, `fill` in the new corners; returns (photo, the 2 x 3 matrix from image to photo)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    tw, th = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    m[:, 2] += (tw / 2 - w / 2, th / 2 - h / 2)
    return cv2.warpAffine(image, m, (tw, th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill), m


def _rounded(box) -> list[float]:
    return [round(float(v), 1) for v in box]


def _points_box(pts: np.ndarray) -> tuple[float, float, float, float]:
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _mesh_disagrees(lms: np.ndarray, box) -> str:
    """Why a mesh is not the detected face ("" when it is)."""
    return "face mesh does not agree with the detection" if _iou(_points_box(lms), box) < 0.25 else ""


def _dedupe_meshes(faces: list[Face], dropped: list[dict]) -> list[Face]:
    """Two detections can lead the mesh to the same face: keep the higher score."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.score):
        if all(_iou(f.box, k.box) < 0.5 for k in kept):
            kept.append(f)
        else:
            dropped.append({"box": _rounded(f.box), "score": round(f.score, 3), "reason": "duplicate of another face"})
    return kept


def _unrotate_points(pts: np.ndarray, code: int, w: int, h: int) -> np.ndarray:
    """Map points from a cv2.rotate()d copy back to the original (w x h) frame."""
    x, y = pts[:, 0], pts[:, 1]
    if code == cv2.ROTATE_90_CLOCKWISE:  # rotated (x', y') = (h - 1 - y, x)
        return np.stack([y, h - 1 - x], axis=1)
    if code == cv2.ROTATE_90_COUNTERCLOCKWISE:  # (x', y') = (y, w - 1 - x)
        return np.stack([w - 1 - y, x], axis=1)
    return np.stack([w - 1 - x, h - 1 - y], axis=1)
