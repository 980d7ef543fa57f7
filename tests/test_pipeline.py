"""The whole path on real photos: what changes, what must not, and where."""

import numpy as np
import pytest

from facefuse.errors import NoFaceError
from facefuse.imaging import output_size, resize_frame
from facefuse.io import read_image
from facefuse.masks import face_region_mask


def _outside_roi_equal(result, expected, rois):
    keep = np.ones(result.shape[:2], bool)
    for r in rois:
        keep[r.slices] = False
    return np.array_equal(result[keep], expected[keep])


def test_only_the_roi_changes(fuser, source_path, target_path):
    res = fuser.fuse_detailed(source_path, target_path, fuser.params(resolution=1024))
    expected = resize_frame(read_image(target_path), res.image.shape[1::-1])
    assert len(res.faces) == 1
    assert _outside_roi_equal(res.image, expected, [f.roi for f in res.faces])
    roi = res.faces[0].roi
    changed = np.abs(res.image[roi.slices].astype(int) - expected[roi.slices]).mean()
    assert changed > 3  # the face really changed


@pytest.mark.parametrize("resolution", [512, 1024, 2048, 4096, 777])
def test_resolution_sets_the_long_side_exactly(fuser, source_path, target_path, resolution):
    img = fuser.fuse(source_path, target_path, resolution=resolution)
    assert max(img.shape[:2]) == resolution
    assert abs(img.shape[1] / img.shape[0] - 1200 / 800) < 0.01


def test_original_resolution_keeps_size(fuser, source_path, target_path):
    assert fuser.fuse(source_path, target_path).shape == (800, 1200, 3)


def test_ratio_zero_returns_the_target(fuser, source_path, target_path):
    target = read_image(target_path)
    img = fuser.fuse(source_path, target, ratio=0.0, smoothing=0.0)
    assert np.abs(img.astype(int) - target).max() <= 1


def test_change_grows_with_ratio(fuser, source_path, target_path):
    target = read_image(target_path)
    res = fuser.fuse_detailed(source_path, target, fuser.params(ratio=1.0, smoothing=0))
    roi = res.faces[0].roi
    diffs = [np.abs(fuser.fuse(source_path, target, ratio=r, smoothing=0)[roi.slices].astype(int) - target[roi.slices]).mean()
             for r in (0.25, 0.5, 1.0)]
    assert diffs[0] < diffs[1] < diffs[2]


def test_pose_and_expression_kept(fuser, source_path, target_path):
    """The result's face mesh stays where the target's was (mean error < 5 % of eye distance)."""
    target = read_image(target_path)
    img = fuser.fuse(source_path, target, ratio=1.0)
    t = fuser.detect(target).faces[0].landmarks
    r = fuser.detect(img).faces[0].landmarks
    eye = np.linalg.norm(t[33] - t[263])
    assert np.linalg.norm(r - t, axis=1).mean() / eye < 0.08


@pytest.mark.parametrize("mode", ["normal", "blend", "overlay"])
def test_modes_leave_no_seam(fuser, source_path, target_path, mode):
    """Just outside the face outline the result equals the target; just inside it has changed
    only gradually (no colour step at the mask's edge)."""
    import cv2

    target = read_image(target_path)
    res = fuser.fuse_detailed(source_path, target, fuser.params(mode=mode, ratio=1.0))
    face = res.faces[0].face
    oval = face_region_mask(face.landmarks, target.shape[:2], cut_mouth=False) > 0.5
    k = max(3, int(face.size * 0.02))
    ring_out = cv2.dilate(oval.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~oval
    ring_in = oval & ~cv2.erode(oval.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    diff = np.abs(res.image.astype(int) - target).mean(axis=2)
    assert diff[ring_out].mean() < 1.5
    assert diff[ring_in].mean() < 6
    inner = cv2.erode(oval.astype(np.uint8), np.ones((6 * k, 6 * k), np.uint8)).astype(bool)
    assert diff[inner].mean() > 8  # the face itself did change


def test_modes_differ(fuser, source_path, target_path):
    target = read_image(target_path)
    a, b, c = (fuser.fuse(source_path, target, mode=m) for m in ("normal", "blend", "overlay"))
    assert not np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(b, c)


def test_adjustments_move_the_face_the_right_way(fuser, source_path, target_path):
    target = read_image(target_path)
    res = fuser.fuse_detailed(source_path, target, fuser.params())
    roi = res.faces[0].roi
    base = res.image[roi.slices].astype(float)
    bright = fuser.fuse(source_path, target, brightness=0.5)[roi.slices].astype(float)
    grey = fuser.fuse(source_path, target, saturation=-1.0)[roi.slices].astype(float)
    assert bright.mean() > base.mean() + 3
    def sat(x):
        return np.abs(x - x.mean(axis=2, keepdims=True)).mean()
    assert sat(grey) < sat(base) * 0.8


def test_smoothing_reduces_fine_texture_on_skin(fuser, source_path, target_path):
    import cv2

    target = read_image(target_path)
    res = fuser.fuse_detailed(source_path, target, fuser.params(smoothing=0.0))
    roi = res.faces[0].roi
    def lap(im):
        return cv2.Laplacian(cv2.cvtColor(im[roi.slices], cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()
    smooth = fuser.fuse(source_path, target, smoothing=1.0)
    assert lap(smooth) < lap(res.image)


def test_group_face_index_changes_only_that_face(fuser, source_path, group_path):
    target = read_image(group_path)
    det = fuser.detect(target)
    assert len(det.faces) >= 5
    areas = [f.width * f.height for f in det.faces]
    assert areas == sorted(areas, reverse=True)  # documented order: largest first
    res = fuser.fuse_detailed(source_path, target, fuser.params(face_index=2))
    assert [f.index for f in res.faces] == [2]
    assert _outside_roi_equal(res.image, target, [res.faces[0].roi])


def test_group_all_faces(fuser, source_path, group_path):
    target = read_image(group_path)
    res = fuser.fuse_detailed(source_path, target, fuser.params(all_faces=True))
    assert len(res.faces) == res.target_faces_found >= 5
    for f in res.faces:
        assert np.abs(res.image[f.roi.slices].astype(int) - target[f.roi.slices]).mean() > 2
    assert _outside_roi_equal(res.image, target, [f.roi for f in res.faces])


def test_face_index_out_of_range(fuser, source_path, target_path):
    with pytest.raises(NoFaceError, match="target: face 5"):
        fuser.fuse(source_path, target_path, face_index=5)


def test_no_face_says_which(fuser, source_path, noface_path):
    with pytest.raises(NoFaceError, match="target") as err:
        fuser.fuse(source_path, noface_path)
    assert err.value.which == "target"
    with pytest.raises(NoFaceError, match="source") as err:
        fuser.fuse(noface_path, source_path)
    assert err.value.which == "source"


def test_prepared_source_reused(fuser, source_path, target_path):
    src = fuser.prepare_source(source_path)
    a = fuser.fuse(src, target_path)
    b = fuser.fuse(source_path, target_path)
    assert np.array_equal(a, b)


def test_timings_and_report(fuser, source_path, target_path):
    res = fuser.fuse_detailed(source_path, target_path, fuser.params())
    rep = res.report()
    assert set(rep["timings_s"]) >= {"decode", "detect", "roi", "engine", "blend", "paste", "total"}
    assert rep["faces_fused"][0]["roi"]["x1"] > rep["faces_fused"][0]["roi"]["x0"]
    assert rep["params"]["ratio"] == 0.8


def test_output_size_helper():
    assert output_size(1200, 800, "original") == (1200, 800)
    assert output_size(1200, 800, 600) == (600, 400)
    assert output_size(800, 1200, 4096) == (2731, 4096)


def test_transparent_band_over_a_source_face_is_not_pasted(fuser, source_path, target_path):
    """A source PNG whose face is crossed by a half-transparent white band: flattened onto
    white (as a target is) that band was detected and pasted as skin. No row of the
    result's face may be brighter than both the fusion of the opaque source and the
    target there (the band's place takes the target's skin)."""
    import io as _io

    from PIL import Image

    src = read_image(source_path)
    lms = fuser.detect(src).faces[0].landmarks
    y0, y1 = int(lms[159, 1]), int(lms[2, 1])  # upper lid to the nose's base
    x0, x1 = int(lms[:, 0].min()), int(lms[:, 0].max())
    rgb, alpha = src.copy(), np.full(src.shape[:2], 255, np.uint8)
    rgb[y0:y1, x0:x1], alpha[y0:y1, x0:x1] = 255, 110
    buf = _io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(buf, "PNG")
    params = fuser.params(ratio=1.0)
    banded = fuser.fuse_encoded(buf.getvalue(), target_path, params, fmt="PNG").result
    plain = fuser.fuse_detailed(source_path, target_path, params).image
    face = banded.faces[0].face
    bx0, by0, bx1, by1 = (int(v) for v in face.box)
    def luma(im):
        return im[by0:by1, bx0:bx1].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    target = read_image(target_path)
    brighter = (luma(banded.image) - np.maximum(luma(plain), luma(target))).mean(1)  # per row of the face box
    assert brighter.max() < 10.0  # pasted as skin, the band was 30 brighter


@pytest.mark.slow
def test_a_large_face_is_fused_at_working_scale_alike(fuser, source_path, monkeypatch):
    """A still's face larger than STILL_WORK_FACE is fused at that size and only the change
    is enlarged back: the face looks the same as fused at full size (within a few levels on
    average), and it is the working scale that ran (the results are not identical)."""
    from pathlib import Path

    from facefuse import pipeline

    target = Path(__file__).resolve().parents[1] / "examples" / "large_target.jpg"
    worked = fuser.fuse_detailed(source_path, target, fuser.params(resolution=4096))
    assert worked.faces[0].face.size > pipeline.STILL_WORK_FACE
    monkeypatch.setattr(pipeline, "STILL_WORK_FACE", 0)
    full = fuser.fuse_detailed(source_path, target, fuser.params(resolution=4096))
    x0, y0, x1, y1 = (int(v) for v in worked.faces[0].face.box)
    diff = np.abs(worked.image[y0:y1, x0:x1].astype(np.float32) - full.image[y0:y1, x0:x1])
    assert 0.0 < float(diff.mean()) < 2.0
    assert float(np.percentile(diff, 99)) < 20.0
