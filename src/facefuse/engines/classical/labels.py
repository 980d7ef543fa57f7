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
from ...hands import find_hands, hands_in_front
from ...imaging import scale_for
from ...masks import face_share
from ...regions import TUNING as REGION_TUNING, region_map
from .tuning import ClassicalTuning, Labels

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


def label_hands(source: SourceFace, tuning: Labels) -> None:
    """Find the hands in front of the prepared source's face (mediapipe's hand models, on
    the crop: the face and a margin, where a hand over it lies whole) and keep where they
    are (0..1, on a copy of the crop at most `hand_side` px long) in `source.prepared["hands"]`,
    with the share of the face they cover: a hand has the skin's colour, so the colour rules
    pasted it (issue 26: a source's hands are never pasted; what_to_keep keeps the target's
    skin there)."""
    k = min(1.0, tuning.hand_side / max(source.image.shape[:2]))
    small = cv2.resize(source.image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else source.image
    lms = source.face.landmarks[: mesh.N_MESH] * np.float32([small.shape[1] / source.image.shape[1],
                                                               small.shape[0] / source.image.shape[0]])
    eye = mesh.eye_distance(lms)
    mask = hands_in_front(find_hands(small), small.shape[:2], eye, REGION_TUNING.finger_width)
    if mask is None:
        return
    # `hand_margin` eye distances wider: the landmarks are the joints, and the hand's soft edge
    # lies beyond the stroke through them (pasted, it outlined the hand); in full to there,
    # soft beyond (a hard edge left a tone step along the hand)
    d = max(3, int(round(tuning.hand_margin * eye)) | 1)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d)))
    mask = np.minimum(cv2.GaussianBlur(mask, (0, 0), d / 4) * 2.0, 1.0)
    share = face_share(mask, lms)
    if share > 0:
        source.prepared["hands"], source.prepared["hands_share"] = mask, share


def warped_prepared(source: SourceFace, key: str, sampled_shape: tuple[int, int], map_x: np.ndarray,
                    map_y: np.ndarray) -> np.ndarray | None:
    """A mask prepared once on the source crop (`source.prepared[key]`, 0..1, any size: the
    region map's labels, the hands) at each ROI pixel, read where the map samples the source
    image of `sampled_shape` (the crop, possibly shrunk). None: nothing under `key`."""
    mask = source.prepared.get(key)
    if mask is None:
        return None
    h, w = sampled_shape
    at_size = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.remap(at_size, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
