"""The eyes: where they keep the source's colour, and where the target's own eye stays."""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from ...masks import fill_poly
from .tuning import Eyes, ramp


def keep_target_eyes(fused: np.ndarray, base: np.ndarray, lms: np.ndarray, t_lms: np.ndarray, s_lms: np.ndarray,
                     eye_dist: float, tuning: Eyes, at_least: float = 0.0) -> np.ndarray:
    """Put the target's eye back (in place: the opening, the lids and the lashes around it)
    where the target's eye is much more closed than the source's (a closed, sleepy or
    downcast eye): the source's open eye and lids squeezed into it look awake and dark.
    Where both are open the source's eye stays (its colour and look carry much of the
    likeness: keeping the target's open eyes moved identity in 11 % of the hard pairs
    instead of 46 %). `lms`: the result's geometry; the openness compared is the target's
    own (`t_lms`: the result's eye is partly the source's). `at_least`: the share kept in any
    case (a profile source, whose near eye is edge-on and far eye hidden).
    Returns the 0..1 mask of what was kept (ROI size), for the report."""
    h, w = fused.shape[:2]
    kept = np.zeros((h, w), np.float32)
    for lids in (mesh.RIGHT_EYE_LIDS, mesh.LEFT_EYE_LIDS):
        keep = max(closing(t_lms, s_lms, lids, tuning), at_least)
        if keep <= 0:
            continue
        a, b = lms[lids[2]], lms[lids[3]]
        centre, width = (a + b) / 2.0, float(np.linalg.norm(b - a)) + 1e-3
        pad = int(np.ceil(width)) + 2
        x0, y0 = max(0, int(centre[0]) - pad), max(0, int(centre[1]) - pad)
        x1, y1 = min(w, int(centre[0]) + pad), min(h, int(centre[1]) + pad)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.zeros((y1 - y0, x1 - x0), np.float32)
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        axes = (max(1, int(0.75 * width)), max(1, int(tuning.lids * width)))
        cv2.ellipse(m, (int(centre[0]) - x0, int(centre[1]) - y0), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
        m = cv2.GaussianBlur(m, (0, 0), max(0.5, tuning.soft_edge * eye_dist))[:, :, None] * keep
        fused[y0:y1, x0:x1] += m * (base[y0:y1, x0:x1] - fused[y0:y1, x0:x1])
        np.maximum(kept[y0:y1, x0:x1], m[:, :, 0], out=kept[y0:y1, x0:x1])
    return kept


def closing(lms: np.ndarray, s_lms: np.ndarray, lids: tuple[int, int, int, int], tuning: Eyes) -> float:
    """0..1: how much more closed the target's eye (lms) is than the source's."""
    t, s = mesh.eye_openness(lms, lids), mesh.eye_openness(s_lms, lids)
    return float(ramp(1.0 - t / max(s, 1e-3), tuning.closing))


def eyes_mask(lms: np.ndarray, shape: tuple[int, int], eye_dist: float,
              tuning: Eyes) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Soft mask (0..1) of both eye openings at landmarks `lms`, computed only in the box
    around the eyes (a full-ROI blur cost 0.14 s at 4096): (mask, (rows, cols) of the box)."""
    pts = np.concatenate([lms[mesh.RIGHT_EYE], lms[mesh.LEFT_EYE]])
    sig = max(0.5, tuning.soft_edge * eye_dist)
    pad = int(np.ceil(3 * sig)) + 2
    h, w = shape
    x0, y0 = max(0, int(pts[:, 0].min()) - pad), max(0, int(pts[:, 1].min()) - pad)
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max())) + pad), min(h, int(np.ceil(pts[:, 1].max())) + pad)
    box = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
    m = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.float32)
    if m.size:
        for region in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
            fill_poly(m, lms[region] - np.float32([x0, y0]), 1.0)
        m = cv2.GaussianBlur(m, (0, 0), sig)
    return m, box
