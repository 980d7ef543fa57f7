"""The frame's own blur (issue 26, point 3): a fused face on a soft or motion-blurred target
is as soft as the frame, in the frame's direction of motion; on a sharp target nothing changes.

The sharpness ratio is the judge's: the Laplacian variance inside the face (its landmarks'
hull, eroded by a tenth of the face on each side), result over target.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefuse import blend, sharpness
from facefuse.io import read_image
from facefuse.sharpness import Blur, apply_blur, blurred, estimate_blur

MOTION_PX = 15  # the motion blur
GAUSS_SIGMA = 2.5  # the defocus


def _degraded(img: np.ndarray, blur: Blur) -> np.ndarray:
    return np.clip(blurred(img.astype(np.float32), blur) + 0.5, 0, 255).astype(np.uint8)


def _inner(shape, landmarks: np.ndarray, face_size: float) -> np.ndarray:
    hull = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(landmarks.astype(np.int32)), 1)
    k = max(3, int(0.2 * face_size)) | 1
    return cv2.erode(hull, np.ones((k, k), np.uint8)) > 0


def _laplacian_var(img: np.ndarray, inner: np.ndarray) -> float:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F)[inner].var())


# -- the pure step, on a real face: the fused face is the sharp photo, the frame a blurred copy

@pytest.fixture(scope="module")
def face_crop(data_dir):
    """A 320x320 float crop of a sharp face (Angelina Jolie) and its inner region."""
    img = read_image(data_dir / "deepface_img2.jpg")
    h, w = img.shape[:2]
    crop = img[h // 2 - 200:h // 2 + 120, w // 2 - 160:w // 2 + 160].astype(np.float32)
    interior = np.zeros(crop.shape[:2], bool)
    interior[60:260, 60:260] = True
    return crop, interior


def _estimate(crop, interior, frame):
    frame = frame.astype(np.float32)
    return estimate_blur(crop, frame, frame, interior.astype(np.float32), face_size=300.0)



@pytest.mark.parametrize("blur", [Blur(sigma=GAUSS_SIGMA), Blur(length=MOTION_PX, angle=0.0),
                                  Blur(length=MOTION_PX, angle=np.pi / 2), Blur(length=MOTION_PX, angle=np.pi / 4)])
def test_the_step_gives_the_frames_sharpness(face_crop, blur):
    crop, interior = face_crop
    frame = _degraded(crop, blur)
    found = _estimate(crop, interior, frame)
    result = np.clip(apply_blur(crop, frame.astype(np.float32), np.ones(interior.shape, np.float32), found) + 0.5, 0, 255)
    before = _laplacian_var(crop.astype(np.uint8), interior) / _laplacian_var(frame, interior)
    after = _laplacian_var(result.astype(np.uint8), interior) / _laplacian_var(frame, interior)
    assert before > 2.0  # the sharp face really is sharper than the frame
    assert 0.7 <= after <= 1.4, (found, before, after)


def test_motion_direction_is_recovered(face_crop):
    crop, interior = face_crop
    for angle in (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4):
        found = _estimate(crop, interior, _degraded(crop, Blur(length=MOTION_PX, angle=angle)))
        off = abs((found.angle - angle + np.pi / 2) % np.pi - np.pi / 2)
        assert off <= np.radians(12), (angle, found)  # within one step of the 16 directions tried
        # mostly a line, not a Gaussian (the pair stops where the face's detail in all falls
        # to the frame's, before the motion's own length)
        assert found.length >= 3 * found.sigma and found.length >= 0.25 * MOTION_PX, found


def test_a_frame_as_sharp_as_the_face_changes_nothing(face_crop):
    crop, interior = face_crop
    frame = crop.astype(np.uint8)
    found = _estimate(crop, interior, frame)
    assert found.is_identity
    assert apply_blur(crop, crop, np.ones(interior.shape, np.float32), found) is crop


# -- the whole path: every engine's face goes through it in the finish stage (blend.compose)

def _fuse(fuser, source, target, monkeypatch, step: bool):
    if not step:
        monkeypatch.setattr(blend, "take_frame_blur", lambda face, fused, frame: face)
    try:
        return fuser.fuse(source, target)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("photo, blur", [("deepface_img25.jpg", Blur(sigma=GAUSS_SIGMA)),
                                         ("fr_alex_lacamoire.png", Blur(length=MOTION_PX, angle=0.0)),
                                         ("fr_alex_lacamoire.png", Blur(length=MOTION_PX, angle=np.pi / 2))])
def test_a_blurred_target_gives_a_blurred_face(fuser, data_dir, monkeypatch, photo, blur):
    source = read_image(data_dir / "deepface_img2.jpg")
    target = _degraded(read_image(data_dir / photo), blur)
    face = fuser.detect(target).faces[0]
    inner = _inner(target.shape, face.landmarks, face.size)

    def ratio(img):
        return _laplacian_var(img, inner) / _laplacian_var(target, inner)

    before = ratio(_fuse(fuser, source, target, monkeypatch, step=False))
    after = ratio(_fuse(fuser, source, target, monkeypatch, step=True))
    assert before > 2.0  # without the step the fused face is crisp on the blurred frame
    assert 0.7 <= after <= 1.4, (before, after)


def test_a_sharp_target_is_unchanged_by_the_step(fuser, data_dir, monkeypatch):
    source, target = read_image(data_dir / "deepface_img2.jpg"), read_image(data_dir / "deepface_img25.jpg")
    calls = []
    step = sharpness.take_frame_blur
    monkeypatch.setattr(blend, "take_frame_blur", lambda face, fused, frame: calls.append(1) or step(face, fused, frame))
    with_step = fuser.fuse(source, target)
    monkeypatch.undo()
    without = _fuse(fuser, source, target, monkeypatch, step=False)
    assert calls  # the step ran
    assert np.array_equal(with_step, without)
