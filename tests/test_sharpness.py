"""The frame's own blur (issue 26, point 3): a fused face on a soft or motion-blurred target
is as soft as the frame, in the frame's direction of motion; one softer than its frame (the
source resampled, the work scale's enlargement) gets its finest band lifted to the frame's.

The sharpness ratio is the judge's: the Laplacian variance inside the face (its landmarks'
hull, eroded by a tenth of the face on each side), result over target.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefuse import blend, mesh, sharpness
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


def test_the_spectra_hold_the_moments_energy_unblurred(face_crop):
    """What lets estimate_blur skip the spectra: by Parseval, a spectrum's energy without
    blur is the region's mean squared derivative, which the moments give directly."""
    crop, interior = face_crop
    luma = cv2.transform(crop, sharpness.LUMA[None, :])
    h_base = sharpness.hessian(cv2.GaussianBlur(luma, (0, 0), 1.0))
    h_change = sharpness.hessian(luma - cv2.GaussianBlur(luma, (0, 0), 1.0))
    whole = sharpness.hessian_moments(tuple(a + b for a, b in zip(h_base, h_change, strict=True)), interior)
    for angle in (0.0, 0.7, np.pi / 2):
        spectrum = sharpness._Spectrum(sharpness.along(h_base, angle), sharpness.along(h_change, angle), interior, 20)
        assert spectrum.energy(Blur()) == pytest.approx(float(sharpness.directional_energy(whole, angle)), rel=1e-4)
        assert spectrum.bb == pytest.approx(float(sharpness.directional_energy(
            sharpness.hessian_moments(h_base, interior), angle)), rel=1e-4)


def test_a_face_a_little_sharper_than_its_frame_is_left_without_the_spectra(face_crop, monkeypatch):
    """A face with a few per cent more detail than its frame (under REACHABLE's tenth) is
    left as it is, and the spectra are never made."""
    crop, interior = face_crop
    frame = cv2.GaussianBlur(crop, (0, 0), 0.6)
    face = frame + 0.02 * (frame - cv2.GaussianBlur(frame, (0, 0), 1.0))  # a little crisper
    made = []
    real = sharpness._Spectrum
    monkeypatch.setattr(sharpness, "_Spectrum", lambda *a: made.append(1) or real(*a))
    found = estimate_blur(face, frame, frame, interior.astype(np.float32), face_size=300.0)
    assert found.is_identity and not made
    # and a face much sharper than the frame is still measured through them
    found = estimate_blur(crop, frame, frame, interior.astype(np.float32), face_size=300.0)
    assert made and not found.is_identity


# -- the whole path: every engine's face goes through it in the finish stage (blend.compose)

def _fuse(fuser, source, target, monkeypatch, step: bool):
    if not step:
        monkeypatch.setattr(blend, "take_frame_blur", lambda face, fused, frame: face)
    try:
        return fuser.fuse(source, target)
    finally:
        monkeypatch.undo()


def _sharpness_without_and_with_the_step(fuser, data_dir, target, monkeypatch) -> tuple[float, float]:
    """The fused face's inner sharpness over the target's (deepface_img2.jpg as the source),
    without the frame's-blur step and with it."""
    source = read_image(data_dir / "deepface_img2.jpg")
    face = fuser.detect(target).faces[0]
    inner = _inner(target.shape, face.landmarks, face.size)

    def ratio(img):
        return _laplacian_var(img, inner) / _laplacian_var(target, inner)

    return (ratio(_fuse(fuser, source, target, monkeypatch, step=False)),
            ratio(_fuse(fuser, source, target, monkeypatch, step=True)))


@pytest.mark.parametrize("photo, blur", [("deepface_img25.jpg", Blur(sigma=GAUSS_SIGMA)),
                                         ("fr_alex_lacamoire.png", Blur(length=MOTION_PX, angle=0.0)),
                                         ("fr_alex_lacamoire.png", Blur(length=MOTION_PX, angle=np.pi / 2))])
def test_a_blurred_target_gives_a_blurred_face(fuser, data_dir, monkeypatch, photo, blur):
    target = _degraded(read_image(data_dir / photo), blur)
    before, after = _sharpness_without_and_with_the_step(fuser, data_dir, target, monkeypatch)
    assert before > 2.0  # without the step the fused face is crisp on the blurred frame
    assert 0.7 <= after <= 1.4, (before, after)


@pytest.mark.parametrize("frame_blur", [0.0, 1.2])
def test_the_step_matches_the_frame_both_ways(fuser, data_dir, monkeypatch, frame_blur):
    """One target photo as it is and made soft (a Gaussian of 1.2 px): without the step the
    fused face is too soft on the first (the source resampled) and too crisp on the second;
    with it both are within the goal. (A face without glasses: a target's frames are laid back
    over the fused face as they are, and on deepface_img25.jpg, used here until stop 39, they
    then made most of the measure: laid back whole since the finder's width is 0.18, they
    took the soft case's no-step ratio from 1.55 to 1.37.)"""
    target = read_image(data_dir / "ghost_murakami.jpg")  # measured: 0.31 -> 0.75, 1.89 -> 1.05
    if frame_blur:
        target = _degraded(target, Blur(sigma=frame_blur))
    before, after = _sharpness_without_and_with_the_step(fuser, data_dir, target, monkeypatch)
    assert (before > 1.4) if frame_blur else (before < 0.7), before
    assert 0.7 <= after <= 1.4, (before, after)


def test_a_targets_glasses_do_not_set_the_faces_sharpness(fuser, data_dir, monkeypatch):
    """Leonard's sharp dark frames are laid back over the fused face as they are; measured
    with the face, their lines made the frame look sharper than any face, and the step lifted
    the fused skin to twice the frame's sharpness (1.95x, the ablation: the frames measured).
    Left out of the estimate, the skin lands at the frame's own (measured 1.05x)."""
    from facefuse.engines.classical import DEFAULT_TUNING, glasses

    target = read_image(data_dir / "faceapi_leonard1.png")
    face = fuser.detect(target).faces[0]
    lms = face.landmarks[: mesh.N_MESH]
    frames = glasses.target_frames(target, lms, mesh.eye_distance(lms), DEFAULT_TUNING.frames)
    assert frames is not None
    skin = _inner(target.shape, face.landmarks, face.size)
    skin &= cv2.dilate((frames > 0.05).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    source = read_image(data_dir / "deepface_img2.jpg")

    def ratio(result):
        return _laplacian_var(result, skin) / _laplacian_var(target, skin)

    assert 0.7 <= ratio(fuser.fuse(source, target)) <= 1.4
    estimate = sharpness.estimate_blur
    monkeypatch.setattr(sharpness, "estimate_blur", lambda *a, hidden=None: estimate(*a))
    assert ratio(fuser.fuse(source, target)) > 1.4


def test_lift_gives_a_soft_face_the_frames_sharpness(face_crop):
    crop, interior = face_crop
    soft = blurred(crop, Blur(sigma=0.6))
    ones = np.ones(interior.shape, np.float32)
    alpha = interior.astype(np.float32)
    lifted = np.clip(sharpness.lift(soft, crop, crop, alpha, ones) + 0.5, 0, 255).astype(np.uint8)
    frame = crop.astype(np.uint8)
    before = _laplacian_var(np.clip(soft + 0.5, 0, 255).astype(np.uint8), interior) / _laplacian_var(frame, interior)
    after = _laplacian_var(lifted, interior) / _laplacian_var(frame, interior)
    assert before < 0.6
    assert 0.7 <= after <= 1.4, (before, after)
    assert sharpness.lift(crop, crop, crop, alpha, ones) is crop  # as sharp as the frame: unchanged


def test_a_face_fused_at_the_work_scale_keeps_the_frames_sharpness(fuser, data_dir):
    """Video fuses a large face on its ROI shrunk (work_face_px) and enlarges the change:
    the enlargement softens it (0.85 of the frame without the lift after it)."""
    target = read_image(data_dir / "deepface_img25.jpg")
    face = fuser.detect(target).faces[0]
    source = fuser.prepare_source(read_image(data_dir / "deepface_img2.jpg"))
    out, _ = fuser.fuse_frame(target, [(face, source, None)], work_face_px=110)
    inner = _inner(target.shape, face.landmarks, face.size)
    assert 0.9 <= _laplacian_var(out, inner) / _laplacian_var(target, inner) <= 1.4


def test_lift_reads_and_changes_only_the_box_round_what_it_lifts(face_crop):
    """`lift` computes on `lifted_box` alone: it gives what the whole image's computation
    gives (sharpness._lift on every pixel), on a face set inside a wide frame of other
    content, and changes no pixel beyond the box."""
    crop, interior = face_crop
    weight = cv2.GaussianBlur(interior.astype(np.float32), (0, 0), 3.0) * interior  # 0.5 at its edge
    rng = np.random.default_rng(1)
    pad = ((40, 25), (30, 50), (0, 0))
    soft, target, alpha, weight = (np.pad(x, pad[:x.ndim]) for x in (blurred(crop, Blur(sigma=0.6)), crop, weight, weight))
    soft[:40], target[:40] = rng.uniform(0, 255, soft[:40].shape), rng.uniform(0, 255, target[:40].shape)
    region = alpha > sharpness.REGION
    lifted = sharpness.lift(soft, target, target, alpha, weight)
    whole = sharpness._lift(soft, target, target, alpha, weight, region, None)
    box = sharpness.lifted_box(weight, region)
    inside = np.zeros(soft.shape[:2], bool)
    inside[box] = True
    assert not inside.all() and np.abs(whole - soft).max() > 1.0  # a real lift, on a part of the image
    assert np.array_equal(lifted[~inside], soft[~inside])
    np.testing.assert_array_equal(lifted, whole)  # the same operations on the same values


@pytest.mark.parametrize("shape", [(90, 77), (64, 64, 3), (101, 57, 3)])
@pytest.mark.parametrize("blur", [Blur(0.0, 3.0, 2.0), Blur(1.3, 7.2, 0.6), Blur(2.0, 0.0, 0.0)])
def test_blurred_is_the_real_filter_of_its_transfer_function(shape, blur):
    """blurred() filters through OpenCV's full spectrum: it must equal the real image's
    filtering by the half spectrum (numpy's rfft2, float64), also at the Nyquist row and
    column, where an angled kernel's transfer is not symmetric by itself."""
    img = np.random.default_rng(2).uniform(0, 255, shape).astype(np.float32)
    pad = int(np.ceil(blur.length / 2 + 3 * blur.sigma)) + 2
    h, w = shape[:2]
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT).astype(np.float64)
    size = (cv2.getOptimalDFTSize(h + 2 * pad), cv2.getOptimalDFTSize(w + 2 * pad))
    k = sharpness.transfer(blur, np.fft.rfftfreq(size[1]).astype(np.float32)[None, :],
                           np.fft.fftfreq(size[0]).astype(np.float32)[:, None]).astype(np.float64)
    if img.ndim == 3:
        k = k[:, :, None]
    want = np.fft.irfft2(np.fft.rfft2(padded, s=size, axes=(0, 1)) * k, s=size, axes=(0, 1))[pad:pad + h, pad:pad + w]
    got = blurred(img, blur)
    assert got.shape == img.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-3)
