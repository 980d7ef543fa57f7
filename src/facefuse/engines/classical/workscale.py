"""The reduced scale (face about `WorkScale.face_px`) the light, occlusion and skin tests run
at, and the face's own axes on that grid.

Each image the tests share is shrunk (and taken to Lab) once per fusion, not once per test.
"""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from ...imaging import scale_for
from . import tuning as tn


class WorkScale:
    """One ROI's work scale: `scale` (work px per ROI px), `size` (w, h) for OpenCV."""

    def __init__(self, shape: tuple[int, int], eye_dist: float, tuning: tn.WorkScale = tn.DEFAULT_TUNING.work):
        h, w = shape
        self.shape = (h, w)
        self.scale = scale_for(eye_dist * tuning.face_span, tuning.face_px)
        self.size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))
        self._done: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def _memo(self, kind: str, x: np.ndarray, make) -> np.ndarray:
        hit = self._done.get((kind, id(x)))
        if hit is None or hit[0] is not x:  # (the array is held, so its id is not reused meanwhile)
            hit = self._done[(kind, id(x))] = (x, make(x))
        return hit[1]

    def small(self, x: np.ndarray) -> np.ndarray:
        return self._memo("small", x, lambda a: cv2.resize(a, self.size, interpolation=cv2.INTER_AREA))

    def lab(self, rgb: np.ndarray) -> np.ndarray:
        """The shrunk RGB (0..255) as float Lab."""
        return self._memo("lab", rgb, lambda a: cv2.cvtColor(np.clip(self.small(a) / 255.0, 0, 1).astype(np.float32),
                                                             cv2.COLOR_RGB2Lab))

    def axes(self, lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """`face_axes` of this grid for the landmarks `lms` (ROI pixels), made once per fusion."""
        return self._memo("axes", lms, lambda a: face_axes(a, self.size, self.scale))

    def on_grid(self, pts: np.ndarray) -> np.ndarray:
        """ROI pixel positions (n, 2) in this grid's pixels (as `small` resizes)."""
        return (pts.astype(np.float32) + 0.5) * np.float32([self.size[0] / self.shape[1], self.size[1] / self.shape[0]]) - 0.5

    def up(self, x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)

    def up_soft(self, x: np.ndarray) -> np.ndarray:
        """A work-scale mask back at ROI size, softened by one work pixel and clipped to 0..1."""
        return np.clip(cv2.resize(cv2.GaussianBlur(x, (0, 0), 1.0), (self.shape[1], self.shape[0]),
                                  interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def eye_frame(lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mid, across, down): the middle of the eyes and the face's own unit axes."""
    left, right = lms[mesh.RIGHT_EYE].mean(0), lms[mesh.LEFT_EYE].mean(0)
    across = (right - left) / (np.linalg.norm(right - left) + 1e-6)
    return (left + right) / 2, across, np.float32([-across[1], across[0]])


def face_axes(lms: np.ndarray, size: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(across, depth, brow_top) on the grid of `size` (w, h) at `scale`, in ROI pixels along
    the face's own axes from the middle of the eyes: each pixel's signed distance across the
    face and down it, and the depth of the top of the brows (< 0)."""
    mid, across, down = eye_frame(lms)
    x, y = (np.arange(size[0]) + 0.5) / scale - mid[0], (np.arange(size[1]) + 0.5)[:, None] / scale - mid[1]
    brows = np.concatenate([lms[mesh.RIGHT_BROW], lms[mesh.LEFT_BROW]])
    return (x * across[0] + y * across[1], x * down[0] + y * down[1],
            float(((brows - mid) @ down).min()))


def beside_the_eyes(lms: np.ndarray, work: WorkScale) -> np.ndarray:
    """1 beyond each eye's outer corner, toward the face's outline (along the face's own
    across direction), between the brows' top and the nose's base (on the work grid)."""
    a, d, top = work.axes(lms)
    mid, across, down = eye_frame(lms)
    outer = max(abs(float((lms[mesh.RIGHT_EYE_OUTER] - mid) @ across)), abs(float((lms[mesh.LEFT_EYE_OUTER] - mid) @ across)))
    bottom = float((lms[mesh.NOSE_BASE] - mid) @ down)
    return ((np.abs(a) > outer) & (d > top) & (d < bottom)).astype(np.float32)


def eye_band(lms: np.ndarray, work: WorkScale, eye_dist: float, tuning: tn.Occlusion) -> np.ndarray:
    """1 on the band across the face from just above the brows' top to `eye_band` eye
    distances below the eye line (on the work grid), along the face's own down."""
    _, depth, top = work.axes(lms)
    return ((depth > top - tuning.eye_band_top * eye_dist) & (depth < tuning.eye_band * eye_dist)).astype(np.float32)
