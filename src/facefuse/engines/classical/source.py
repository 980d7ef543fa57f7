"""The source face as the warp samples it: cropped once when prepared, shrunk to about the
target face's scale when it is larger."""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh, pose
from ...faces import Face, SourceFace
from .tuning import Warp


def crop_source(image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
    """Keep only the face and a margin (what the warp can sample): a prepared source is
    cached, and a 100-MP photo must not stay in memory for a 1-MP face. `alpha` (uint8,
    the photo's opacity) is cropped alike (visibility.opaque_weights)."""
    lms = face.landmarks
    margin = 0.6 * max(np.ptp(lms[:, 0]), np.ptp(lms[:, 1]))
    h, w = image.shape[:2]
    x0, y0 = max(0, int(lms[:, 0].min() - margin)), max(0, int(lms[:, 1].min() - margin))
    x1, y1 = min(w, int(np.ceil(lms[:, 0].max() + margin))), min(h, int(np.ceil(lms[:, 1].max() + margin)))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    b = face.box
    moved = Face(box=(b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0), score=face.score,
                 landmarks=(lms - np.float32([x0, y0])).astype(np.float32))
    kept = None if alpha is None or alpha.min() == 255 else np.ascontiguousarray(alpha[y0:y1, x0:x1])
    return SourceFace(image=crop, face=moved, alpha=kept)


def source_at_scale(source: SourceFace, scale: float, align: np.ndarray, tuning: Warp,
                    cache: list | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The prepared source crop, shrunk when its face is larger than the target's (`scale`:
    source px -> ROI px), so the warp never samples below the source's own detail.

    Returns the image to sample, its alpha (None: opaque), the source landmarks in its
    pixels, and the 2x3 map from ROI pixels to its pixels used outside the mesh.
    `cache` (a list the engine keeps): the last few shrunk crops, reused while the same
    source is fused at the same rounded scale (every frame of a video: the resize of a
    large source crop cost 8 ms a frame, measured on the talking head at 720p).
    """
    image, alpha = source.image, source.alpha
    step = tuning.shrink_step
    shrink = max(1, round(min(1.0, scale * tuning.shrink_margin) * step)) / step
    to_image = np.float32([[1, 0, 0], [0, 1, 0]])
    if shrink < 1.0:
        size = (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink)))
        hit = next((c for c in cache or () if c[0] is source.image and c[1] == shrink), None)
        if hit is not None:
            image, alpha = hit[2], hit[3]
        else:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            alpha = None if alpha is None else cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
            if cache is not None:
                cache[:] = [(source.image, shrink, image, alpha)] + cache[:3]
        to_image = np.float32([[size[0] / source.image.shape[1], 0, 0], [0, size[1] / source.image.shape[0], 0]])
    pts = mesh.apply_affine(to_image, source.face.landmarks[: mesh.N_MESH])
    inv_align = cv2.invertAffineTransform(align.astype(np.float32))  # ROI px -> source px
    full = np.vstack([to_image, [0, 0, 1]]) @ np.vstack([inv_align, [0, 0, 1]])
    return image, alpha, pts, full[:2].astype(np.float32)


def source_pose(source: SourceFace) -> pose.Pose:
    """The source face's pose, fitted once per prepared source (every frame of a video uses it)."""
    fitted = source.prepared.get("pose")
    if fitted is None:
        fitted = source.prepared["pose"] = pose.fit_pose(source.face.landmarks[: mesh.N_MESH].astype(np.float32))
    return fitted


def shrunk_source(source: SourceFace, scale: float) -> SourceFace:
    """A prepared source at `scale` (its crop, landmarks, opacity and the masks prepared on
    it: the region map's, the hands'), as a new SourceFace."""
    image = source.image
    size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
    sx, sy = size[0] / image.shape[1], size[1] / image.shape[0]
    face = source.face
    return SourceFace(
        image=cv2.resize(image, size, interpolation=cv2.INTER_AREA),
        face=Face(box=tuple(v * f for v, f in zip(face.box, (sx, sy, sx, sy), strict=True)), score=face.score,
                  landmarks=(face.landmarks * np.float32([sx, sy])).astype(np.float32)),
        prepared={k: source.prepared[k] for k in ("not_skin", "hands") if k in source.prepared},
        alpha=None if source.alpha is None else cv2.resize(source.alpha, size, interpolation=cv2.INTER_AREA))
