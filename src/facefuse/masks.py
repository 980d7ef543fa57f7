"""Face masks: polygon fill, the face-region mask and its feathering (pure functions).

Shared by the engines (valid regions, detail matching) and blend (the alpha of every mode).
Feathering runs at a reduced "work" scale (face about WORK_FACE px) and is upsampled, so its
cost does not grow with the output resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import mesh
from .imaging import enlarge_to, scale_for, shrink_by, wide_blur

WORK_FACE = 192  # face size (px) at which masks are feathered and skin is smoothed
FEATHER = 0.07  # feather width, share of the face size
BROW_GROW = 1.3  # a brow's landmarks' polygon enlarged about its centre by this: the hairs beyond them


def fill_poly(img: np.ndarray, pts: np.ndarray, value: float) -> None:
    """Fill polygon `pts` (float pixels, 1/16-px precision) with `value`."""
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_AA, shift=4)


def face_region_mask(lms: np.ndarray, shape: tuple[int, int], cut_mouth: bool = True, skin_only: bool = False) -> np.ndarray:
    """Hard (anti-aliased) float32 mask of the face oval at landmarks `lms`.

    cut_mouth removes the inner mouth (the target's teeth and tongue stay);
    skin_only also removes eyes, brows and lips (for light transfer and smoothing).
    """
    mask = np.zeros(shape, np.float32)
    fill_poly(mask, lms[mesh.FACE_OVAL], 1.0)
    if cut_mouth:
        fill_poly(mask, lms[mesh.INNER_MOUTH], 0.0)
    return _cut_to_skin(mask, lms) if skin_only else mask


def face_share(mask: np.ndarray, landmarks: np.ndarray) -> float:
    """The share (0..1, to 4 decimals) of the face's outline (`landmarks` in the mask's
    pixels) that `mask` (0..1) covers; 0 for a face of no area."""
    face = face_region_mask(landmarks, mask.shape[:2], cut_mouth=False) > 0.5
    return round(float(mask[face].mean()), 4) if face.any() else 0.0


def skin_of(face: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """A face region mask (face_region_mask) without the eyes, brows and lips, drawn on a
    copy: face_region_mask(..., skin_only=True) from the mask without them, made once."""
    return _cut_to_skin(face.copy(), lms)


def _cut_to_skin(mask: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """`mask` with the eyes, brows and lips cut out, in place."""
    for region in (mesh.RIGHT_EYE, mesh.LEFT_EYE, mesh.OUTER_LIPS):
        fill_poly(mask, _grown(lms[region], 1.25), 0.0)
    _fill_brows(mask, lms, 0.0)
    return mask


def _grown(pts: np.ndarray, factor: float) -> np.ndarray:
    """A landmark polygon enlarged about its centre by `factor`."""
    c = pts.mean(0)
    return c + (pts - c) * factor


def _fill_brows(mask: np.ndarray, lms: np.ndarray, value: float) -> None:
    for region in (mesh.RIGHT_BROW, mesh.LEFT_BROW):
        fill_poly(mask, _grown(lms[region], BROW_GROW), value)


def brows_mask(lms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Hard (anti-aliased) float32 mask of the two brows at landmarks `lms` (the polygons
    face_region_mask's skin_only cuts out)."""
    mask = np.zeros(shape, np.float32)
    _fill_brows(mask, lms, 1.0)
    return mask


def work_scale(face_size: float) -> float:
    return scale_for(face_size, WORK_FACE)


def feather(mask: np.ndarray, face_size: float, width: float = FEATHER) -> np.ndarray:
    """Soft alpha that is 1 well inside `mask` and reaches 0 at its edge (feathered inward,
    so nothing from outside the engine's valid region leaks in)."""
    scale = work_scale(face_size)
    small = shrink_by(mask, scale)
    radius = max(1.0, width * face_size * scale)
    k = 2 * int(round(radius)) + 1
    # in 8 bits (twice as fast; a minimum commutes with the rounding, so at most half a step off)
    eroded = cv2.erode(np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8),
                       cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    eroded = eroded.astype(np.float32) * np.float32(1.0 / 255.0)
    soft = wide_blur(eroded, radius / 2.0)
    return np.clip(enlarge_to(soft, mask.shape), 0.0, 1.0) * (mask > 0)
