"""Pixel boost (FaceFusion's method): a small swap model run on the n*n strided sub-images of
a face aligned at the boost size, the results interleaved back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models as om  # noqa: E402
from facefuse import align  # noqa: E402
from facefuse.config import InferenceSettings, load_config  # noqa: E402
from facefuse.engines import create_engine  # noqa: E402
from facefuse.errors import ConfigError  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.roi import plan_roi  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("boost")
    om.embedder(d / "emb.onnx")
    om.swap_identity(d / "identity.onnx")
    om.swap_tile_mean(d / "mean.onnx")
    om.swap_identity(d / "identity96.onnx", size=96)
    return d


def swap(models: Path, name: str, boost=None):
    return create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(models / name),
                                                        embedder=str(models / "emb.onnx"), pixel_boost=boost))


@pytest.fixture(scope="module")
def target(fuser, target_path):
    img = read_image(target_path)
    face = fuser.detect(img).faces[0]
    roi = plan_roi(face, img.shape[1], img.shape[0], 0.2)
    return img[roi.slices], face.landmarks - roi.offset, face


def test_split_and_interleave_put_every_pixel_back():
    crop = np.random.default_rng(0).random((12, 12, 3)).astype(np.float32)
    tiles = align.split_phases(crop, 3)
    assert len(tiles) == 9 and tiles[5].shape == (4, 4, 3)
    np.testing.assert_array_equal(tiles[5], crop[1::3, 2::3])  # tile (i=1, j=2)
    np.testing.assert_array_equal(align.interleave_phases(tiles, 3), crop)


@pytest.mark.parametrize("boost", [256, 512])
def test_phase_dependent_model_output_is_interleaved_back(models, target, source_path, fuser, boost):
    """Each sub-image's output is its own mean colour: the boosted crop must carry, at every
    pixel (y, x), the mean of sub-image (y mod n, x mod n)."""
    engine = swap(models, "mean.onnx", boost)
    n = boost // 128
    assert engine.crop_size == boost and engine.size == 128
    roi, lms, face = target
    src_img = read_image(source_path)
    src = engine.prepare_source(src_img, fuser.detect(src_img).faces[0])
    crop, m = engine.aligned_crop(roi, lms)
    assert crop.shape == (boost, boost, 3)
    feeds = engine.crop_feeds(src, crop, m, lms, 1.0)
    assert len(feeds) == n * n
    out = align.interleave_phases([engine.run(f) for f in feeds], n)
    for i in range(n):
        for j in range(n):
            expected = crop[i::n, j::n].reshape(-1, 3).mean(0)
            np.testing.assert_allclose(out[i::n, j::n], np.broadcast_to(expected, out[i::n, j::n].shape), atol=0.05)
    # the phases really differ on a face (else the check could not fail)
    means = [crop[i::n, j::n].mean() for i in range(n) for j in range(n)]
    assert max(means) - min(means) > 0.01


def test_boosted_identity_model_gives_the_target_back_sharper(models, target, source_path, fuser):
    """At 512 a 128-px identity model returns the face with 4x the resolution: closer to the
    target than without the boost."""
    roi, lms, face = target
    src_img = read_image(source_path)
    src_face = fuser.detect(src_img).faces[0]
    errors = {}
    for boost in (None, 512):
        engine = swap(models, "identity.onnx", boost)
        crop, m = engine.aligned_crop(roi, lms)
        src = engine.prepare_source(src_img, src_face)
        out = align.interleave_phases([engine.run(f) for f in engine.crop_feeds(src, crop, m, lms, 1.0)],
                                      engine.crop_size // engine.size)
        np.testing.assert_allclose(out, crop, atol=0.01)  # every pixel back where it came from
        fused = engine.fuse(src, roi, lms, 1.0)
        inside = fused.mask > 0.5
        errors[boost] = np.abs(fused.image - roi)[inside].mean()
    assert errors[512] < 0.6 * errors[None], errors


def test_boost_must_be_a_multiple_of_the_model_side(models):
    with pytest.raises(ConfigError, match="512 is not a multiple of the model's side 96"):
        swap(models, "identity96.onnx", 512)
    with pytest.raises(ConfigError, match="inference.pixel_boost"):
        load_config(overrides={"inference": {"pixel_boost": 300}})
