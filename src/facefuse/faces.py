"""Plain data that flows through the path: faces found, source faces prepared, faces fused.

No behaviour beyond small derived properties, so the base, the core and every front-end can
share these without importing the detector or an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .mesh import KEYPOINTS


@dataclass
class Face:
    """One face: box (x0, y0, x1, y1) and landmarks in image pixels, detector score."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (478, 2) float32, image pixels

    @property
    def keypoints(self) -> np.ndarray:
        """5 points: image-left eye, image-right eye, nose tip, image-left / right mouth corner."""
        return self.landmarks[list(KEYPOINTS)]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Face size in pixels: geometric mean of the box sides."""
        return float(np.sqrt(max(self.width, 1.0) * max(self.height, 1.0)))

    def scaled(self, factor: float) -> "Face":
        b = self.box
        return Face(
            box=(b[0] * factor, b[1] * factor, b[2] * factor, b[3] * factor),
            score=self.score,
            landmarks=(self.landmarks * factor).astype(np.float32),
        )

    def __repr__(self) -> str:  # not the 478 landmark rows
        b = ", ".join(f"{v:.0f}" for v in self.box)
        return f"Face(box=({b}), score={self.score:.2f}, size={self.size:.0f}px, landmarks={len(self.landmarks)})"

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 3),
            "size_px": round(self.size, 1),
            "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in self.keypoints],
        }


@dataclass
class Detection:
    """The faces of one image in fusion order, plus candidates dropped and why."""

    faces: list[Face]
    dropped: list[dict] = field(default_factory=list)
    scale: float = 1.0  # detection copy / original
    passes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Detection({len(self.faces)} face(s), {len(self.dropped)} dropped, passes={self.passes})"


@dataclass
class SourceFace:
    """A source image and its chosen face, plus whatever an engine prepared from it once."""

    image: np.ndarray  # RGB uint8, the whole source photo
    face: Face
    prepared: dict = field(default_factory=dict)
    alpha: np.ndarray | None = None  # uint8 opacity of `image` (a PNG's); None: opaque. Transparent is not face

    def __repr__(self) -> str:
        h, w = self.image.shape[:2]
        return f"SourceFace({w}x{h}, {self.face!r}, prepared={sorted(self.prepared)})"


@dataclass
class FusedFace:
    """An engine's output for one face, in ROI coordinates (float32 RGB 0..255)."""

    image: np.ndarray  # the fused face; meaningful where `mask` > 0
    base: np.ndarray  # what it is blended onto (the target ROI, possibly re-shaped)
    mask: np.ndarray  # float32 0..1, hard region where `image` may be used
    landmarks: np.ndarray  # (468+, 2) face geometry of the result, ROI pixels
    face_size: float  # pixels, sets feathering and smoothing radii
    # an engine's per-face state for the next video frame, opaque to everyone else: the
    # pipeline hands it back to the same engine with the next frame (classical: TrackState)
    light: Any = None
    overlay: np.ndarray | None = None  # float32 0..1: where `base` is laid back over the blended face (a target's glasses frames)
    alpha: np.ndarray | None = None  # masks.feather(mask, face_size), where the engine made it already (None: blend makes it)
    # masks.face_region_mask(landmarks, mask's shape, skin_only=True), where the engine made it already
    skin: np.ndarray | None = field(default=None, repr=False)
    # per rule that kept the target's pixels, the share of the face it kept (--report's "kept")
    kept: dict[str, float] = field(default_factory=dict)
    # sharpness.lift_weight of this face, made on first use (the blend's lift and the
    # enlarged face's lift in a video both need it)
    lift_weight: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        h, w = self.mask.shape[:2]
        return f"FusedFace({w}x{h} ROI, face_size={self.face_size:.0f}px)"
