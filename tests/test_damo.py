"""The `onnx-damo` engine (the seed's generator contract) on real photos, with small ONNX
models the tests build: the template crop round-trips, the seed's template points land on
the face's, channel order and normalisation are the seed's (RGB, or BGR by card), the
contour inputs are in range and move with the ratio, and a wrong model is one clear error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models as om  # noqa: E402
from facefuse import align  # noqa: E402
from facefuse.config import InferenceSettings  # noqa: E402
from facefuse.engines import create_engine  # noqa: E402
from facefuse.engines.damo import CONTOUR_SHARE, JAW_17, contour_in_crop  # noqa: E402
from facefuse.errors import ConfigError, EngineError  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.roi import plan_roi  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("damo")
    om.embedder(d / "emb.onnx")
    om.damo_copy(d / "copy.onnx")
    om.damo_copy(d / "renamed.onnx", names=("img", "id", "fused", "target"), out_name="out")
    om.damo_pattern(d / "pattern.onnx")
    om.damo_channel0(d / "red.onnx")
    om.damo_channel0(d / "bgr.onnx")
    om.write_card(d / "bgr.onnx", channels="bgr")
    om.swap_identity(d / "swap.onnx")
    return d


def damo(models: Path, name: str, **kw):
    return create_engine("onnx-damo", InferenceSettings(engine="onnx-damo", model=str(models / name),
                                                        embedder=str(models / "emb.onnx"), **kw))


@pytest.fixture(scope="module")
def photos(fuser, source_path, target_path):
    out = {}
    for key, path in (("source", source_path), ("target", target_path)):
        img = read_image(path)
        out[key] = (img, fuser.detect(img).faces[0])
    return out


def roi_of(image, face, scale: float = 1.0):
    """The face's ROI (and landmarks in it) of the image resized by `scale`."""
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    roi = plan_roi(face.scaled(scale), image.shape[1], image.shape[0], 0.2)
    return image[roi.slices], face.landmarks * scale - roi.offset


def test_seed_template_is_the_contracted_arcface():
    tmpl = align.template("damo", 256)
    expected = ((align.ARCFACE_112 - 56) * 0.85 + 56) * 256 / 112
    np.testing.assert_allclose(tmpl, expected, atol=1e-4)
    # the plain ArcFace template at 256 is ~8 % of the eye distance off on the eyes
    eye = np.linalg.norm(tmpl[1] - tmpl[0])
    assert 0.05 < np.linalg.norm(align.template("arcface_112", 256) - tmpl, axis=1)[:2].mean() / eye < 0.12


def test_copy_model_gives_the_target_back(models, photos):
    engine = damo(models, "copy.onnx")
    assert (engine.image_input, engine.id_input, engine.fused_input, engine.target_input) == om.DAMO_NAMES
    src = engine.prepare_source(*photos["source"])
    img, face = photos["target"]
    _, m = engine.aligned_crop(img, face.landmarks)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # bring the face to crop scale ~1
    roi, lms = roi_of(img, face, scale)
    fused = engine.fuse(src, roi, lms, 1.0)
    inside = fused.mask > 0.5
    assert inside.mean() > 0.3
    err = np.abs(fused.image - roi.astype(np.float32))[inside].mean()
    shifted = np.abs(np.roll(fused.image, 2, axis=1) - roi)[inside].mean()
    swapped = np.abs(fused.image[:, :, ::-1] - roi)[inside].mean()
    assert err < 2.5, err
    assert shifted > 3 * err and swapped > 3 * err


def test_pattern_dots_land_where_the_seed_template_sends_them(models, photos, fuser, group_path):
    engine = damo(models, "pattern.onnx")
    src = engine.prepare_source(*photos["source"])
    tmpl = align.template("damo", 256)
    group = read_image(group_path)
    for img, face in [photos["target"]] + [(group, f) for f in fuser.detect(group).faces[:2]]:
        roi, lms = roi_of(img, face)
        fused = engine.fuse(src, roi, lms, 1.0)
        _, m = engine.aligned_crop(roi, lms)
        inv = cv2.invertAffineTransform(m)
        expected = np.round(tmpl) @ inv[:, :2].T + inv[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        kps = align.keypoints(lms)
        eye = np.linalg.norm(kps[1] - kps[0])
        for k, colour in enumerate(om.PATTERN_COLOURS):
            ys, xs = np.nonzero(np.abs(fused.image / 255.0 - colour).max(2) < 0.1)
            assert len(xs) > 20, f"colour {k} missing"
            centre = np.array([xs.mean(), ys.mean()])
            assert np.linalg.norm(centre - expected[k]) * scale < 1.0
            dist = np.linalg.norm(kps - centre, axis=1) / eye
            assert dist[k] < (0.12 if k < 2 else 0.35), (k, dist)


def test_channel_0_is_red_by_default_and_blue_with_a_bgr_card(models, photos):
    roi, lms = roi_of(*photos["target"])
    colours = {}
    for name in ("red.onnx", "bgr.onnx"):
        engine = damo(models, name)
        fused = engine.fuse(engine.prepare_source(*photos["source"]), roi, lms, 1.0)
        colours[name] = fused.image[fused.mask > 0.99].mean(0)
    # (+1, 0, -1) in [-1, 1] is (255, 127.5, 0): the mid channel proves the 0.5 / 0.5 normalisation
    np.testing.assert_allclose(colours["red.onnx"], [255, 127.5, 0], atol=2.0)
    np.testing.assert_allclose(colours["bgr.onnx"], [0, 127.5, 255], atol=2.0)


def test_model_inputs_are_the_seeds(models, photos):
    engine = damo(models, "copy.onnx")
    src = engine.prepare_source(*photos["source"])
    roi, lms = roi_of(*photos["target"])
    (feeds,) = engine.model_inputs(src, roi, lms, 1.0)
    crop, m = engine.aligned_crop(roi, lms)
    # input_1: RGB (x / 255 - 0.5) / 0.5 of the template crop
    np.testing.assert_allclose(feeds["input_1"][0], (crop.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5, atol=1e-5)
    assert feeds["input_1"].min() >= -1 and feeds["input_1"].max() <= 1
    # input_2: the L2-normalised embedding of the source's 256 crop resized to 112
    s_img, s_face = photos["source"]
    s_crop, _ = engine.aligned_crop(s_img, s_face.landmarks)
    emb = engine.embedder(cv2.resize(s_crop, (112, 112), interpolation=cv2.INTER_AREA))
    np.testing.assert_allclose(feeds["input_2"], emb / np.linalg.norm(emb), atol=1e-5)
    # input_4: the target's jaw line in [-1, 1] of the crop, x right, y down, chin at the bottom
    target = feeds["input_4"][0]
    np.testing.assert_allclose((target + 1) / 2 * 256, lms[JAW_17] @ m[:, :2].T + m[:, 2], atol=1e-3)
    assert np.all(np.abs(target) <= 1) and target[8, 1] > 0.5 and target[0, 0] < -0.3 < 0.3 < target[16, 0]


def test_contour_moves_half_way_at_ratio_1(models, photos):
    engine = damo(models, "copy.onnx")
    src = engine.prepare_source(*photos["source"])
    roi, lms = roi_of(*photos["target"])
    fused = {r: engine.model_inputs(src, roi, lms, r)[0]["input_3"][0] for r in (0.0, 0.5, 1.0)}
    target = engine.model_inputs(src, roi, lms, 1.0)[0]["input_4"][0]
    source = src.prepared["contour"]
    assert np.abs(source - target).mean() > 0.01  # two people, two jaw lines
    np.testing.assert_allclose(fused[0.0], target, atol=1e-6)
    np.testing.assert_allclose(fused[1.0], target + CONTOUR_SHARE * (source - target), atol=1e-6)
    np.testing.assert_allclose(fused[0.5], (fused[0.0] + fused[1.0]) / 2, atol=1e-6)
    assert all(np.all(np.abs(c) <= 1) for c in fused.values())
    # the source's contour is in its own aligned crop, like the target's
    s_img, s_face = photos["source"]
    _, m = engine.aligned_crop(s_img, s_face.landmarks)
    np.testing.assert_allclose(source, contour_in_crop(s_face.landmarks, m, 256), atol=1e-6)


def test_names_are_read_from_the_model(models, photos):
    engine = damo(models, "renamed.onnx")
    assert (engine.image_input, engine.id_input, engine.fused_input, engine.target_input) == ("img", "id", "fused", "target")
    roi, lms = roi_of(*photos["target"])
    fused = engine.fuse(engine.prepare_source(*photos["source"]), roi, lms, 1.0)
    assert fused.image.shape == roi.shape


def test_wrong_models_and_settings_are_one_clear_error(models, photos):
    with pytest.raises(EngineError) as info:
        damo(models, "swap.onnx")
    msg = str(info.value)
    assert "\n" not in msg and info.value.exit_code == 5
    assert "not an onnx-damo model: expected inputs 'input_1' 1x3x256x256" in msg and "'target' 1x3x128x128" in msg
    with pytest.raises(EngineError, match="file not found"):
        damo(models, "nope.onnx")
    with pytest.raises(ConfigError, match="needs an identity-embedding"):
        create_engine("onnx-damo", InferenceSettings(engine="onnx-damo", model=str(models / "copy.onnx")))
    with pytest.raises(ConfigError, match="pixel_boost: only for onnx-swap"):
        damo(models, "copy.onnx", pixel_boost=512)
