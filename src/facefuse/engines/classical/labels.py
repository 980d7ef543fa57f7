"""The source's region map, made once when the source is prepared and warped with its texture.

regions.region_map labels the source photo (skin, hair, glasses, hand, other), learned from
that face's own skin, so light hair on light skin is hair as much as dark hair is. The
labels that are never pasted (hair, glasses, hands) travel with the texture through the same
warp maps; occlusion.source_occluders decides from them which of the source's pixels give
way to the target's skin.
"""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from ...faces import SourceFace
from ...hands import find_hands
from ...imaging import scale_for
from ...regions import region_map
from .tuning import ClassicalTuning

NOT_PASTED = ("hair", "hand")


def label_source(source: SourceFace, tuning: ClassicalTuning) -> None:
    """Label the prepared source crop at the work scale; keep the never-pasted labels'
    share (0..1, work scale) in `source.prepared["not_skin"]`."""
    lms = source.face.landmarks
    eye = mesh.eye_distance(lms)
    scale = scale_for(eye * tuning.work.face_span, tuning.work.face_px)
    h, w = source.image.shape[:2]
    small = cv2.resize(source.image, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    hands = [p * scale for p in find_hands(source.image)] if tuning.labels.hands else None
    regions = region_map(small, lms * scale, eye * scale, hands=hands)
    source.prepared["not_skin"] = np.clip(sum(regions[name] for name in NOT_PASTED), 0.0, 1.0).astype(np.float32)


def warped_not_skin(source: SourceFace, sampled_shape: tuple[int, int], map_x: np.ndarray,
                    map_y: np.ndarray) -> np.ndarray | None:
    """The source's never-pasted labels at each ROI pixel (0..1), read where the map samples
    the source image of `sampled_shape` (the crop, possibly shrunk). None: not labelled."""
    not_skin = source.prepared.get("not_skin")
    if not_skin is None:
        return None
    h, w = sampled_shape
    at_size = cv2.resize(not_skin, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.remap(at_size, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
