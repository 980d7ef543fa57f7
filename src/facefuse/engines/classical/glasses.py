"""A target's glasses frames: found as dark ridges that ring the eyes, laid back over the
blended face so they stay in front, as crisp as the photo."""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from ...imaging import LUMA, scale_for
from ...masks import face_region_mask
from .tuning import Frames


def target_frames(img: np.ndarray, lms: np.ndarray, eye_dist: float, tuning: Frames) -> np.ndarray | None:
    """0..1 over the ROI where the target wears glasses frames (None: no frames found), to
    be laid over the blended face (FusedFace.overlay): a frame is thinner than the occluder
    rule's opening and faded where the face was pasted.

    A ridge filter, not skin colour: a frame is a line darker than a closing `width` wide
    fills it with (a black-hat), looked for only in the box around the eyes and brows,
    inside the face and outside the eye openings and the nose's flanks. Only lines that ring
    an eye count (in the eye's middle column, above its upper lid and below its lower one):
    a brow joined to a lid crease hooks round the eye's corner only, and on the 60 dev
    targets only the three wearing dark frames are found, so a face without glasses keeps
    the source's eyes and brows. (Brows are not cut out: a top rim runs under them and was
    lost.) Found at an eye distance of `eye_px`; the pixels laid over are the target's own
    at full resolution, so the frame stays as crisp as the photo."""
    h, w = img.shape[:2]
    pts = np.concatenate([lms[mesh.RIGHT_EYE], lms[mesh.LEFT_EYE], lms[mesh.RIGHT_BROW], lms[mesh.LEFT_BROW]])
    x0, y0 = (pts.min(0) - np.float32(tuning.box_above) * eye_dist).astype(int)
    x1, y1 = (pts.max(0) + np.float32(tuning.box_below) * eye_dist).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    scale = scale_for(eye_dist, tuning.eye_px)
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    luma = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA) @ LUMA
    e = eye_dist * scale
    k = max(3, int(round(tuning.width * e)) | 1)
    ridge = cv2.morphologyEx(luma.astype(np.float32), cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    local = (pts - np.float32([x0, y0])) * scale
    n = len(mesh.RIGHT_EYE)
    own = _not_frames(local, n, size, e, tuning)
    face = face_region_mask((lms - np.float32([x0, y0])) * scale, (size[1], size[0]), cut_mouth=False)
    cand = ((ridge > tuning.step) & (own == 0) & (face > 0.99)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    # a rim rings an eye: in the eye's middle column it passes both above the upper lid and
    # below the lower one (a brow joined to a lid crease only hooks round the corner)
    ring = (stats[:, cv2.CC_STAT_WIDTH] >= tuning.span * e) & (stats[:, cv2.CC_STAT_HEIGHT] >= tuning.span * e)
    around = np.zeros_like(ring)
    for eye_pts in (local[:n], local[n:2 * n]):
        ex, ey0, ey1 = eye_pts[:, 0].mean(), eye_pts[:, 1].min(), eye_pts[:, 1].max()
        column = labels[:, max(0, int(ex - tuning.column * e)):max(1, int(ex + tuning.column * e) + 1)]
        above = np.unique(column[:max(0, int(ey0))])
        below = np.unique(column[min(size[1], int(ey1 + tuning.lid_gap * e) + 1):])
        around[np.intersect1d(above, below)] = True
    ring &= around
    ring[0] = False
    if not ring.any():
        return None
    # a brow joined to a top rim is the person's own, not the frame: not laid over
    brows = np.zeros_like(own)
    for part in (local[2 * n:2 * n + 10], local[2 * n + 10:]):
        cv2.fillConvexPoly(brows, np.round(cv2.convexHull(part)).astype(np.int32), 1)
    # as strong as the line is dark: the rim's core in full, its soft edge partly
    frames = (ring[labels] & (brows == 0)) * np.clip(ridge / tuning.step - 0.5, 0.0, 1.0)
    frames = cv2.resize(cv2.GaussianBlur(frames, (0, 0), 0.7), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), np.float32)
    out[y0:y1, x0:x1] = np.clip(frames, 0.0, 1.0)
    return out


def _not_frames(local: np.ndarray, n: int, size: tuple[int, int], e: float, tuning: Frames) -> np.ndarray:
    """1 where no frame is looked for: the eye openings (and a margin), and the nose's
    flanks below the eye line between the eyes (their shadow is a dark line too)."""
    own = np.zeros((size[1], size[0]), np.uint8)
    for part in (local[:n], local[n:2 * n]):
        cv2.fillConvexPoly(own, np.round(cv2.convexHull(part)).astype(np.int32), 1)
    own = cv2.dilate(own, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(tuning.opening_margin * e) | 1),) * 2))
    inner = local[[8, n + 8]]  # inner eye corners (133, 362)
    cv2.rectangle(own, (int(inner[:, 0].min()), int(inner[:, 1].max() + tuning.nose_below * e)),
                  (int(inner[:, 0].max()), size[1]), 1, -1)
    return own
