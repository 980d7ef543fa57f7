"""The region map (regions.py, hands.py): skin, hair, glasses, hand and other, learned per
face. Each detector is also run switched off (`off=`), to show the fault it is there for."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from facefuse.hands import find_hands, hand_mask
from facefuse.io import read_image
from facefuse.regions import LABELS, TUNING, RegionMap, region_map

WORK_FACE = 128  # the engine's work scale: 2.5 eye distances = 128 px


def _work_crop(img: np.ndarray, lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The face and an eye distance around it at work scale, its landmarks and eye distance there."""
    eye = float(np.linalg.norm(lms[33] - lms[263]))
    x0, y0 = np.maximum(lms.min(0) - eye, 0).astype(int)
    x1, y1 = np.minimum(lms.max(0) + eye, [img.shape[1], img.shape[0]]).astype(int)
    scale = min(1.0, WORK_FACE / (2.5 * eye))
    crop = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return crop, ((lms - [x0, y0]) * scale).astype(np.float32), eye * scale


def _face(fuser, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    return _work_crop(img, fuser.detect(img).faces[0].landmarks)


def _disc(shape, centre, radius) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (int(centre[0]), int(centre[1])), int(radius), 1, -1)
    return m.astype(np.float32)


def _painted_strand(crop: np.ndarray, lms: np.ndarray, eye: float, colour) -> tuple[np.ndarray, np.ndarray]:
    """A strand of hair as a bundle of five 1-px lines (two shades of `colour`) from the
    outline at the temple down across the cheek to the nose's side; and where it lies."""
    painted, where = crop.copy(), np.zeros(crop.shape[:2], np.uint8)
    start, end = lms[127], lms[203]  # temple on the outline, beside the nostril
    across = np.float32([1.0, 0.2]) / np.hypot(1.0, 0.2)
    for i in range(5):
        offset = across * (i * 2 - 4) * 0.04 * eye
        a, b = tuple(np.round(start + offset).astype(int)), tuple(np.round(end + offset).astype(int))
        shade = np.float32(colour) * (1.0 if i % 2 else 0.9)
        cv2.line(painted, a, b, tuple(int(c) for c in np.clip(shade, 0, 255)), 1, cv2.LINE_AA)
        cv2.line(where, a, b, 1, 1, cv2.LINE_AA)
    return painted, where.astype(np.float32)


def _skin_colour(crop: np.ndarray, lms: np.ndarray, eye: float) -> np.ndarray:
    return np.median(crop[_disc(crop.shape[:2], lms[50], 0.1 * eye) > 0], 0).astype(np.float32)


def test_the_maps_are_shares_that_sum_to_one_and_resample(fuser, source_path):
    crop, lms, eye = _face(fuser, read_image(source_path))
    regions = region_map(crop, lms, eye)
    assert regions.maps.shape == (len(LABELS), *crop.shape[:2]) and regions.maps.dtype == np.float32
    assert np.allclose(regions.maps.sum(0), 1.0, atol=1e-4)
    cheek = _disc(crop.shape[:2], lms[50], 0.1 * eye)
    assert regions.share("skin", within=cheek) > 0.95
    assert regions.share("other", within=_disc(crop.shape[:2], lms[468], 0.05 * eye)) > 0.9  # the iris (measured 0.95)
    big = regions.resized((crop.shape[0] * 3, crop.shape[1] * 3))
    assert isinstance(big, RegionMap) and big.shape == (crop.shape[0] * 3, crop.shape[1] * 3)
    assert abs(big.share("skin") - regions.share("skin")) < 0.01


@pytest.mark.parametrize("case", ["light hair on light skin", "dark hair on dark skin"])
def test_a_strand_across_the_face_is_hair_where_painted_and_skin_elsewhere(fuser, source_path, case):
    """A strand close to the skin's own colour (a little lighter and yellower on fair skin,
    a little darker on the same face darkened to deep brown) is hair: no fixed threshold."""
    crop, lms, eye = _face(fuser, read_image(source_path))
    if case == "dark hair on dark skin":
        crop = (crop.astype(np.float32) * np.float32([0.38, 0.3, 0.26])).astype(np.uint8)
        colour = _skin_colour(crop, lms, eye) * 0.6
    else:
        colour = _skin_colour(crop, lms, eye) * np.float32([1.1, 1.05, 0.85])
    painted, where = _painted_strand(crop, lms, eye, colour)
    regions = region_map(painted, lms, eye)
    assert regions.share("hair", within=where) > 0.3  # measured 0.44 light, 0.58 dark (the lines' soft rims stay skin)
    other_cheek = _disc(crop.shape[:2], lms[280], 0.12 * eye)
    assert regions.share("skin", within=other_cheek) > 0.9
    # the hair detector off: the strand is taken for skin
    assert region_map(painted, lms, eye, off=frozenset({"hair"})).share("skin", within=where) > 0.6
    # and colour alone (grabCut, the structure tensor's strands off) misses it: measured 0.0 and 0.002
    colour_only = replace(TUNING, strand_z=float("inf"))
    assert region_map(painted, lms, eye, tuning=colour_only).share("hair", within=where) < 0.1


def test_glasses_ring_the_eyes_and_a_face_without_has_none(fuser, data_dir):
    crop, lms, eye = _face(fuser, read_image(data_dir / "deepface_img25.jpg"))  # Sundar Pichai, dark frames
    around_eyes = np.zeros(crop.shape[:2], np.float32)
    for iris in (468, 473):
        around_eyes = np.maximum(around_eyes, _disc(crop.shape[:2], lms[iris], 0.45 * eye))
    regions = region_map(crop, lms, eye)
    assert regions.share("glasses", within=around_eyes) > 0.05
    bare, b_lms, b_eye = _face(fuser, read_image(data_dir / "deepface_img2.jpg"))
    assert region_map(bare, b_lms, b_eye).share("glasses") == 0.0
    # the glasses detector off: the frames are no glasses
    assert region_map(crop, lms, eye, off=frozenset({"glasses"})).share("glasses") == 0.0


def test_a_hand_over_a_face_is_labelled_hand(fuser, data_dir, target_path):
    """A hand cut from a photo (by its own landmarks) and laid over the target's cheek and
    mouth is found by mediapipe's hand models and labelled hand, though its colour is skin's."""
    photo = read_image(data_dir / "mediapipe_hand_four.jpg")
    hand = find_hands(photo)[0]
    cut = hand_mask([hand], photo.shape[:2], TUNING.finger_width)
    crop, lms, eye = _face(fuser, read_image(target_path))
    # scale the hand so its palm is an eye distance wide, its middle at the mouth's corner
    palm = float(np.linalg.norm(hand[5] - hand[17]))
    s = 1.0 * eye / palm
    centre = hand[[0, 5, 17]].mean(0)
    m = np.float32([[s, 0, lms[61, 0] - s * centre[0]], [0, s, lms[61, 1] - s * centre[1]]])
    size = (crop.shape[1], crop.shape[0])
    moved = cv2.warpAffine(photo, m, size, flags=cv2.INTER_AREA)
    alpha = cv2.warpAffine(cut, m, size, flags=cv2.INTER_LINEAR)[:, :, None]
    covered = (crop * (1 - alpha) + moved * alpha).astype(np.uint8)
    hands = find_hands(covered)
    assert len(hands) == 1
    where = (alpha[:, :, 0] > 0.5).astype(np.float32)
    assert region_map(covered, lms, eye, hands).share("hand", within=where) > 0.7
    # the hand detector off: the hand passes for the face's skin
    off = region_map(covered, lms, eye, hands, off=frozenset({"hand"}))
    assert off.share("hand") == 0.0 and off.share("skin", within=where * _face_oval(lms, crop.shape[:2])) > 0.5


def _face_oval(lms: np.ndarray, shape) -> np.ndarray:
    from facefuse.masks import face_region_mask

    return face_region_mask(lms, shape, cut_mouth=False, skin_only=True)


def test_a_face_far_above_work_scale_is_mapped_at_work_scale(fuser, target_path):
    """At full resolution (eye distance ~190 px) smooth skin's tiny pixel spread let pores and
    brow hairs ring an eye like a frame (glasses share 0.011 on a bare face); the map is
    made on a copy at work scale and enlarged back."""
    img = read_image(target_path)
    lms = fuser.detect(img).faces[0].landmarks
    eye = float(np.linalg.norm(lms[33] - lms[263]))
    assert eye > 3 * TUNING.work_eye_px
    regions = region_map(img, lms, eye)
    assert regions.shape == img.shape[:2]
    assert regions.share("glasses") == 0.0
    face = _face_oval(lms, img.shape[:2])
    crop, c_lms, c_eye = _work_crop(img, lms)  # the same face cut and shrunk to work scale first
    at_work_scale = region_map(crop, c_lms, c_eye).share("skin", within=_face_oval(c_lms, crop.shape[:2]))
    assert abs(regions.share("skin", within=face) - at_work_scale) < 0.05
    assert regions.share("skin", within=face) > 0.7  # measured 0.76: smile folds and the jaw's edge pass for hair
