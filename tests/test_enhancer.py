"""The face-enhancer stage on real photos, with small ONNX models the tests build.

What is checked: an identity enhancer changes the result by no more than resampling does; a
darkening one darkens the face and nothing outside the face region; blend 0 is bit-exact
and blend mixes linearly; the weight input gets the weight; a preset's template is used;
every wrong model is one clear EngineError (exit code 5).
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
from facefuse.config import InferenceSettings, Settings  # noqa: E402
from facefuse.engines import create_engine  # noqa: E402
from facefuse.enhancers import create_enhancer, enhancer_for  # noqa: E402
from facefuse.errors import ConfigError, EngineError  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.masks import face_region_mask  # noqa: E402
from facefuse.pipeline import Fuser  # noqa: E402
from facefuse.roi import plan_roi  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("enhancers")
    om.enhancer_affine(d / "identity.onnx")
    om.enhancer_affine(d / "dark.onnx", gain=0.5, shift=-0.5)
    om.enhancer_affine(d / "weighted.onnx", weight=True)
    om.enhancer_affine(d / "gpen256.onnx", size=256)
    om.unet_copy(d / "unet.onnx")
    om.swap_identity(d / "swap.onnx")
    return d


def fuser_with(enhancer: Path | None, **inference) -> Fuser:
    return Fuser(Settings(inference=InferenceSettings(enhancer=str(enhancer) if enhancer else None, **inference)))


@pytest.fixture(scope="module")
def plain(source_path, target_path):
    """The classical fusion at 512 without an enhancer, and the source prepared once."""
    fuser = fuser_with(None)
    src = fuser.prepare_source(source_path)
    target = read_image(target_path)
    params = fuser.params(resolution=512, smoothing=0)
    return src, target, params, fuser.fuse_detailed(src, target, params)


def face_region(result, grow_px: int = 0) -> np.ndarray:
    """The target face's region in the output; grown by `grow_px` for the classical engine,
    whose own region follows the fused geometry (a pixel or two off the target's outline)."""
    face = result.faces[0].face
    region = (face_region_mask(face.landmarks, result.image.shape[:2], cut_mouth=True) > 0).astype(np.uint8)
    if grow_px:
        region = cv2.dilate(region, np.ones((2 * grow_px + 1, 2 * grow_px + 1), np.uint8))
    return region > 0


def test_identity_enhancer_leaves_the_result_unchanged(models, plain):
    src, target, params, base = plain
    result = fuser_with(models / "identity.onnx").fuse_detailed(src, target, params.model_copy(update={"enhancer_blend": 1.0}))
    diff = np.abs(result.image.astype(np.float32) - base.image)
    region = face_region(base)
    assert diff[region].mean() < 1.0, diff[region].mean()  # resampling at crop scale ~1
    assert result.timings["enhance"] > 0
    # a crop shifted by 2 px would be far off: the check can fail
    shifted = np.abs(np.roll(base.image, 2, axis=1).astype(np.float32) - base.image)[region].mean()
    assert shifted > 3 * diff[region].mean()


def test_darkening_enhancer_darkens_the_face_and_nothing_outside(models, plain):
    src, target, params, base = plain
    result = fuser_with(models / "dark.onnx").fuse_detailed(src, target, params.model_copy(update={"enhancer_blend": 1.0}))
    region = face_region(base)
    changed = np.any(result.image != base.image, axis=2)
    assert changed[region].mean() > 0.9
    assert not changed[~face_region(base, grow_px=3)].any(), "pixels outside the face region changed"
    inner = result.image[region].astype(np.float32).mean() / base.image[region].astype(np.float32).mean()
    assert inner < 0.75, inner  # halved in the core, feathered towards the edge


def test_blend_zero_is_bit_exact_and_blend_mixes_linearly(models, plain, fuser, target_path):
    src, target, params, base = plain
    enhanced = fuser_with(models / "dark.onnx")
    zero = enhanced.fuse_detailed(src, target, params.model_copy(update={"enhancer_blend": 0.0}))
    np.testing.assert_array_equal(zero.image, base.image)
    # on the engine's FusedFace: blend b gives (1 - b) * fused + b * enhanced, inside the face
    engine = create_engine("classical")
    img = read_image(target_path)
    face = fuser.detect(img).faces[0]
    roi = plan_roi(face, img.shape[1], img.shape[0], 0.2)
    fused = engine.fuse(engine.prepare_source(img, face), img[roi.slices], face.landmarks - roi.offset, 1.0)
    full, half = (enhanced.enhancer.enhance(fused, b, 0.5).image for b in (1.0, 0.5))
    np.testing.assert_allclose(half, (fused.image + full) / 2, atol=1e-3)
    assert np.abs(full - fused.image)[fused.mask > 0.99].mean() > 20
    np.testing.assert_array_equal(full[fused.mask == 0], fused.image[fused.mask == 0])


def test_weight_reaches_a_codeformer_style_model(models, plain):
    src, target, params, base = plain
    fuser = Fuser(Settings(inference=InferenceSettings(enhancer=str(models / "weighted.onnx")),
                           fusion={"enhancer_weight": 0.0}))
    assert fuser.params().enhancer_weight == 0.0  # the default comes from fusion.enhancer_weight
    a = fuser.fuse_detailed(src, target, params.model_copy(update={"enhancer_blend": 1.0, "enhancer_weight": 0.0}))
    b = fuser.fuse_detailed(src, target, fuser.params(resolution=512, smoothing=0, enhancer_blend=1.0, enhancer_weight=1.0))
    region = face_region(base)
    assert np.abs(a.image.astype(np.float32) - base.image)[region].mean() < 1.0  # weight 0: identity
    assert b.image[region].astype(np.float32).mean() < a.image[region].astype(np.float32).mean() - 30


def test_gpen_bfr_256_preset_uses_the_arcface_128_template(models):
    settings = InferenceSettings(enhancer=str(models / "gpen256.onnx"), enhancer_preset="gpen_bfr_256")
    enhancer = create_enhancer("onnx", settings)
    assert enhancer.size == 256
    np.testing.assert_allclose(enhancer.template_px, (align.ARCFACE_112 + [8, 0]) * 2, atol=1e-4)
    default = create_enhancer("onnx", InferenceSettings(enhancer=str(models / "gpen256.onnx")))
    np.testing.assert_allclose(default.template_px, align.FFHQ * 256, atol=1e-4)  # no card: FFHQ


def test_fp16_enhancer_agrees_with_fp32(models, fuser, target_path):
    img = read_image(target_path)
    face = fuser.detect(img).faces[0]
    e32 = create_enhancer("onnx", InferenceSettings(enhancer=str(models / "dark.onnx")))
    e16 = create_enhancer("onnx", InferenceSettings(enhancer=str(models / "dark.onnx"), precision="fp16"))
    feeds = e32.model_inputs(img, face.landmarks, 0.5)[0]
    assert np.abs(e32.run(feeds) - e16.run(feeds)).max() < 1.0


def test_no_enhancer_unless_asked():
    assert enhancer_for(InferenceSettings()) is None


def test_wrong_enhancer_models_are_one_clear_engine_error(models, tmp_path, target_path):
    int_weight = om.enhancer_affine(tmp_path / "int_weight.onnx", weight=True, weight_dtype=om.TensorProto.INT64)
    cases = {
        "unet (6 channels)": (models / "unet.onnx", {}),
        "swap (two inputs)": (models / "swap.onnx", {}),
        "integer weight": (int_weight, {}),
        "missing": (tmp_path / "nope.onnx", {}),
        "not onnx": (Path(target_path), {}),
        "wrong size for preset": (models / "identity.onnx", {"enhancer_preset": "gpen_bfr_256"}),
        "int8 of a float model": (models / "identity.onnx", {"precision": "int8"}),
    }
    messages = {}
    for name, (path, extra) in cases.items():
        with pytest.raises(EngineError) as info:
            create_enhancer("onnx", InferenceSettings(enhancer=str(path), **extra))
        assert info.value.exit_code == 5
        messages[name] = str(info.value)
        assert "\n" not in messages[name]
    assert "not a face-enhancer model: expected one input 1x3xSxS" in messages["unet (6 channels)"]
    assert "'input' 1x6x128x128" in messages["unet (6 channels)"]
    assert "'weight' 1 tensor(int64)" in messages["integer weight"]
    assert "file not found" in messages["missing"]
    assert "not a readable ONNX model" in messages["not onnx"]
    assert "preset gpen_bfr_256 says size 256, the model 512" in messages["wrong size for preset"]
    with pytest.raises(ConfigError, match="unknown preset 'gfpgan'"):
        create_enhancer("onnx", InferenceSettings(enhancer=str(models / "identity.onnx"), enhancer_preset="gfpgan"))
    with pytest.raises(ConfigError, match="is a preset for onnx-swap, not for enhancer"):
        create_enhancer("onnx", InferenceSettings(enhancer=str(models / "identity.onnx"), enhancer_preset="simswap_256"))
