"""How much of a face fusion actually changed, and the note that says so when it is little
(pure functions on RGB uint8 images).

A face turned far from the camera, or one the engine keeps as the target's for any other
reason, comes out nearly as it went in while the report says "fused": a measured note tells
the truth whatever the cause, where one more yaw threshold would cover one cause only.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import mesh
from .masks import fill_poly

# levels (0-255): a pixel counts as changed when a channel moved by more than this; below
# it lie the light and colour matching alone, which move a face that keeps its features by
# a few levels (the measure of the turned target: 802 pixels moved more than 10)
CHANGED_LEVELS = 10
# share of the face outline at ratio 1 (times the ratio asked): a fusion that changed less
# left the face the target's. Measured at the default ratio 0.8 (limit 0.12): the 45 regular
# pairs change 0.16-0.65 (0.16 a grey target, 0.18 a small face; then 0.30 and up), the 26
# hard pairs 0.14-0.62 but for the profile prnet_3.jpg as the target, 0.06 and 0.08 (and
# 0.04-0.10 from two other sources at ratio 0.8 and 1)
LITTLE_CHANGE = 0.15


def face_patch(image: np.ndarray, landmarks: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """The box of the face outline (landmarks in image pixels, clipped to the image) and a
    copy of its pixels: what changed_share compares with after fusion."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(landmarks[mesh.FACE_OVAL].min(0)).astype(int)
    x1, y1 = np.ceil(landmarks[mesh.FACE_OVAL].max(0)).astype(int) + 1
    box = (slice(min(max(0, y0), h), min(max(0, y1), h)), slice(min(max(0, x0), w), min(max(0, x1), w)))
    return box, image[box].copy()


def changed_share(patch: tuple[tuple[slice, slice], np.ndarray], image: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of the face outline's area (landmarks in image pixels) where some channel of
    `image` differs from the face_patch taken before by more than CHANGED_LEVELS; 0 for a
    face of no area."""
    box, before = patch
    region = np.zeros(before.shape[:2], np.float32)
    fill_poly(region, landmarks[mesh.FACE_OVAL] - np.float32([box[1].start, box[0].start]), 1.0)
    inside = region > 0.5
    if not inside.any():
        return 0.0
    moved = cv2.absdiff(before, image[box]).max(axis=2) > CHANGED_LEVELS
    return float(np.count_nonzero(moved & inside) / np.count_nonzero(inside))


def little_change_note(share: float, ratio: float, face_index: int | None = None) -> list[str]:
    """The note for a face that fusion changed little for the ratio asked (none when it
    changed enough: the share expected shrinks with the ratio, so the limit is
    LITTLE_CHANGE * ratio); `face_index` names the face when several were fused."""
    if share >= LITTLE_CHANGE * ratio:
        return []
    which = "the target face" if face_index is None else f"target face {face_index}"
    return [f"fusion changed only {share:.0%} of {which} (by more than {CHANGED_LEVELS} levels): "
            "the result is close to the target; a face turned far from the camera keeps most of its own "
            "pixels, a more frontal target photo takes more of the source"]
