"""The neural engines on real photos, with small ONNX models the tests build (tests/onnx_models.py).

What is checked: alignment -> inference -> paste-back puts pixels where the face is (a model
that returns its target crop gives the target back; a model that paints the template's key
points paints them on the face's key points), the source path is aligned like the target
path, fp16 / IO binding agree with fp32, and every wrong model or setting is one clear error.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models as om  # noqa: E402
from facefuse import align  # noqa: E402
from facefuse.config import InferenceSettings, Settings  # noqa: E402
from facefuse.engines import create_engine  # noqa: E402
from facefuse.engines.onnx import OnnxSwapEngine, OnnxUnetEngine, Runner, load_model  # noqa: E402
from facefuse.errors import ConfigError, EngineError  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.roi import plan_roi  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("onnx_models")
    om.embedder(d / "emb.onnx")
    om.swap_identity(d / "identity.onnx")
    om.swap_pattern(d / "pattern.onnx")
    om.swap_conv(d / "conv.onnx")
    om.unet_copy(d / "unet_target.onnx", which="target")
    om.unet_copy(d / "unet_source.onnx", which="source")
    return d


def swap(models: Path, name: str, **kw) -> OnnxSwapEngine:
    return create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(models / name),
                                                        embedder=str(models / "emb.onnx"), **kw))


def unet(models: Path, name: str, **kw) -> OnnxUnetEngine:
    return create_engine("onnx-unet", InferenceSettings(engine="onnx-unet", model=str(models / name), **kw))


@pytest.fixture(scope="module")
def photos(fuser, source_path, target_path):
    """(image, first face) of the source and target portraits."""
    out = {}
    for key, path in (("source", source_path), ("target", target_path)):
        img = read_image(path)
        out[key] = (img, fuser.detect(img).faces[0])
    return out


def roi_of(image, face, padding=0.2):
    roi = plan_roi(face, image.shape[1], image.shape[0], padding)
    return image[roi.slices], face.landmarks - roi.offset


def crop_scale(engine, roi, lms) -> float:
    _, m = engine.aligned_crop(roi, lms)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def test_keypoints_are_the_detectors(photos):
    for _img, face in photos.values():
        np.testing.assert_array_equal(align.keypoints(face.landmarks), face.keypoints)


def test_identity_model_gives_the_target_back(fuser, models, photos):
    """At crop scale ~1 the round trip is within interpolation error, far below a 2 px shift."""
    engine = swap(models, "identity.onnx")
    src = engine.prepare_source(*photos["source"])
    img, face = photos["target"]
    scale = crop_scale(engine, *roi_of(img, face))
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    face = fuser.detect(small).faces[0]
    roi, lms = roi_of(small, face)
    assert 0.8 < crop_scale(engine, roi, lms) < 1.25
    fused = engine.fuse(src, roi, lms, 1.0)
    inside = fused.mask > 0.5
    assert inside.sum() > 0.3 * inside.size  # the face region is most of the ROI
    err = np.abs(fused.image - roi.astype(np.float32))[inside]
    shifted = np.abs(np.roll(fused.image, 2, axis=1) - roi)[inside]
    assert err.mean() < 2.5, err.mean()
    assert shifted.mean() > 3 * err.mean()
    # where the crop does not reach, nothing comes from the model
    _, m = engine.aligned_crop(roi, lms)
    valid = align.paste_back(np.ones((engine.size, engine.size, 1), np.float32), m, roi.shape[:2])[1]
    assert (valid == 0).sum() > 100
    np.testing.assert_array_equal(fused.image[valid == 0], roi[valid == 0].astype(np.float32))
    assert fused.mask[valid == 0].max() == 0


def test_identity_model_at_full_size_loses_only_resolution(models, photos):
    """A face ~3x larger than the crop comes back as blurred as a plain down/up resize, no worse."""
    engine = swap(models, "identity.onnx")
    src = engine.prepare_source(*photos["source"])
    roi, lms = roi_of(*photos["target"])
    scale = crop_scale(engine, roi, lms)
    assert scale < 0.5
    fused = engine.fuse(src, roi, lms, 1.0)
    inside = fused.mask > 0.5
    h, w = roi.shape[:2]
    small = cv2.resize(roi, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    resampled = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    err = np.abs(fused.image - roi)[inside].mean()
    floor = np.abs(resampled - roi)[inside].mean()
    assert err < floor + 1.0, (err, floor)


def test_pattern_lands_on_the_face(fuser, models, photos, group_path):
    """Coloured squares the model paints at the template's key points land on the face's."""
    engine = swap(models, "pattern.onnx")
    src = engine.prepare_source(*photos["source"])
    group = read_image(group_path)
    cases = [photos["target"]] + [(group, f) for f in fuser.detect(group).faces[:2]]
    tmpl = align.template("arcface", engine.size)
    for img, face in cases:
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
            # exactly where the crop's template point maps back (under a crop pixel) ...
            assert np.linalg.norm(centre - expected[k]) * scale < 1.0
            # ... which is on the face's own key point (eyes close, all within the 5-point fit)
            dist = np.linalg.norm(kps - centre, axis=1) / eye
            assert dist[k] < (0.12 if k < 2 else 0.35), (k, dist)
            assert np.argmin(dist) == k


def test_ratio_mixes_with_the_target(models, photos):
    engine = swap(models, "pattern.onnx")
    src = engine.prepare_source(*photos["source"])
    roi, lms = roi_of(*photos["target"])
    full = engine.fuse(src, roi, lms, 1.0)
    none = engine.fuse(src, roi, lms, 0.0)
    half = engine.fuse(src, roi, lms, 0.5)
    np.testing.assert_allclose(none.image, roi.astype(np.float32))
    np.testing.assert_allclose(half.image, (full.image + none.image) / 2, atol=1e-3)


def test_source_latent_is_the_normalised_mapped_embedding(models, photos, data_dir):
    engine = swap(models, "conv.onnx")
    a = engine.prepare_source(*photos["source"]).prepared["latent"]
    b = engine.prepare_source(*photos["target"]).prepared["latent"]
    assert a.shape == (1, 512) and a.dtype == np.float32
    assert abs(np.linalg.norm(a) - 1) < 1e-5
    emb = engine.embed(*photos["source"])
    np.testing.assert_allclose(a, emb @ engine.emap / np.linalg.norm(emb @ engine.emap), atol=1e-5)
    assert np.abs(a - b).max() > 1e-3  # two people, two latents
    # and the swap model's output depends on it
    roi, lms = roi_of(*photos["target"])
    sa = engine.fuse(engine.prepare_source(*photos["source"]), roi, lms, 1.0)
    sb = engine.fuse(engine.prepare_source(*photos["target"]), roi, lms, 1.0)
    assert np.abs(sa.image - sb.image)[sa.mask > 0.5].mean() > 0.5


def test_unet_round_trips_through_its_model_card(models, photos):
    """Target-copy UNet with a non-trivial mean/std gives the target back; a source-copy UNet
    fed the target as its source does too (the source is aligned like the target)."""
    img, face = photos["target"]
    roi, lms = roi_of(img, face)
    errors = {}
    for name in ("unet_target.onnx", "unet_source.onnx"):
        engine = unet(models, name)
        assert engine.size == 128 and engine.card.template == "ffhq"
        fused = engine.fuse(engine.prepare_source(img, face), roi, lms, 1.0)
        inside = fused.mask > 0.5
        errors[name] = np.abs(fused.image - roi)[inside].mean()
        floor_scale = crop_scale(engine, roi, lms)
        h, w = roi.shape[:2]
        small = cv2.resize(roi, (round(w * floor_scale), round(h * floor_scale)), interpolation=cv2.INTER_AREA)
        floor = np.abs(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32) - roi)[inside].mean()
        assert errors[name] < floor + 1.5, (name, errors[name], floor)
    # a different source person really comes through the source channels
    engine = unet(models, "unet_source.onnx")
    other = engine.fuse(engine.prepare_source(*photos["source"]), roi, lms, 1.0)
    assert np.abs(other.image - roi)[other.mask > 0.5].mean() > 4 * errors["unet_source.onnx"]


def test_fuser_end_to_end_with_identity_model(models, source_path, target_path):
    """Through the whole pipeline at 1024: outside the ROI untouched, inside close to the target."""
    from facefuse.imaging import output_size, resize_frame
    from facefuse.pipeline import Fuser

    settings = Settings(inference=InferenceSettings(engine="onnx-swap", model=str(models / "identity.onnx"),
                                                    embedder=str(models / "emb.onnx")))
    fuser = Fuser(settings)
    result = fuser.fuse_detailed(source_path, target_path, fuser.params(resolution=1024, smoothing=0, ratio=1.0))
    target = read_image(target_path)
    expected = resize_frame(target, output_size(target.shape[1], target.shape[0], 1024))
    assert result.image.shape == expected.shape and len(result.faces) == 1
    roi = result.faces[0].roi
    outside = np.ones(expected.shape[:2], bool)
    outside[roi.slices] = False
    np.testing.assert_array_equal(result.image[outside], expected[outside])
    diff = np.abs(result.image[roi.slices].astype(np.float32) - expected[roi.slices])
    assert diff.mean() < 3.0, diff.mean()
    assert result.timings["engine"] > 0


def test_fp16_and_io_binding_agree_with_fp32(models, photos):
    roi, lms = roi_of(*photos["target"])
    fp32 = swap(models, "conv.onnx")
    fp16 = swap(models, "conv.onnx", precision="fp16")
    src = fp32.prepare_source(*photos["source"])
    crop, _ = fp32.aligned_crop(roi, lms)
    feeds = fp32.feeds(src, crop)
    a, b = fp32.run(feeds), fp16.run(feeds)
    assert np.abs(a - b).max() < 3.0  # fp16 rounding, in 0..255 levels
    converted = onnx.load_from_string(load_model(models / "conv.onnx", "fp16")[1])
    weights = [i for i in converted.graph.initializer if len(i.dims) == 4]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights)
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O kept
    # IO binding on fixed buffers (the CUDA-graph path), here on the CPU
    bound = Runner(fp32.session, fp32._shapes(), bind_device="cpu")
    np.testing.assert_array_equal(bound(feeds), fp32.runner(feeds))
    np.testing.assert_array_equal(bound(feeds), fp32.runner(feeds))  # buffers reused


# -- errors ---------------------------------------------------------------------------------
def test_wrong_models_are_one_clear_engine_error(models, tmp_path, target_path):
    cases = {
        "unet model as swap": lambda: swap(models, "unet_target.onnx"),
        "swap model as unet": lambda: unet(models, "identity.onnx"),
        "embedder as swap": lambda: swap(models, "emb.onnx"),
        "not onnx": lambda: swap(Path(target_path).parent, Path(target_path).name),
        "missing": lambda: swap(models, "nope.onnx"),
        "int8 of a float model": lambda: swap(models, "identity.onnx", precision="int8"),
        "cuda not present": lambda: swap(models, "identity.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"]),
    }
    messages = {}
    for name, make in cases.items():
        with pytest.raises(EngineError) as info:
            make()
        messages[name] = str(info.value)
        assert "\n" not in messages[name]
    assert "expected inputs 'target' 1x3xSxS" in messages["unet model as swap"]
    assert "'input' 1x6x128x128" in messages["unet model as swap"]  # says what it found
    assert "expected one input 1x6xSxS" in messages["swap model as unet"]
    assert "not a readable ONNX model" in messages["not onnx"]
    assert "file not found" in messages["missing"]
    assert "facefuse quantize" in messages["int8 of a float model"]
    assert "onnxruntime-gpu" in messages["cuda not present"]


def test_wrong_embedder_dtype_card_and_settings(models, tmp_path):
    from onnx import TensorProto, helper

    # an integer-typed input is refused with what was expected
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["embedding"])], "int",
                          [helper.make_tensor_value_info("input", TensorProto.INT64, [1, 512])],
                          [helper.make_tensor_value_info("embedding", TensorProto.INT64, [1, 512])])
    bad = tmp_path / "int_embedder.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(bad))
    with pytest.raises(EngineError, match="expected one input 1x3xSxS float"):
        create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(models / "identity.onnx"), embedder=str(bad)))
    # a UNet without its card, and with a card that has a typo
    plain = tmp_path / "plain.onnx"
    om.unet_copy(plain, card=None)
    with pytest.raises(EngineError, match="no model card"):
        unet(tmp_path, "plain.onnx")
    (tmp_path / "plain.json").write_text(json.dumps({**om.UNET_CARD, "templat": "ffhq"}))
    with pytest.raises(EngineError, match="unknown model card key"):
        unet(tmp_path, "plain.onnx")
    (tmp_path / "plain.json").write_text(json.dumps({**om.UNET_CARD, "size": 96}))
    with pytest.raises(EngineError, match="card says size 96, the model 128"):
        unet(tmp_path, "plain.onnx")
    # settings that cannot work
    with pytest.raises(ConfigError, match="needs an ONNX model file"):
        create_engine("onnx-unet", InferenceSettings(engine="onnx-unet"))
    with pytest.raises(ConfigError, match="needs an identity-embedding"):
        create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(models / "identity.onnx")))
    with pytest.raises(ConfigError, match="cuda_graph"):
        unet(models, "unet_target.onnx", cuda_graph=True)


def test_cli_wrong_model_is_exit_5_one_line(models, source_path, target_path, tmp_path, capsys):
    from facefuse.cli import main

    out = tmp_path / "out.jpg"
    code = main(["fuse", str(source_path), str(target_path), "-o", str(out), "--engine", "onnx-swap",
                 "--model", str(models / "unet_target.onnx"), "--embedder", str(models / "emb.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 5 and not out.exists()
    assert err.count("\n") == 0 and "not an onnx-swap model" in err


def test_cli_flags_reach_the_settings(models, source_path, target_path, tmp_path, capsys):
    from facefuse.cli import main

    out = tmp_path / "out.png"
    shutil.copy(models / "unet_target.onnx", tmp_path / "u.onnx")
    shutil.copy(models / "unet_target.json", tmp_path / "u.json")
    code = main(["fuse", str(source_path), str(target_path), "-o", str(out), "--engine", "onnx-unet",
                 "--model", str(tmp_path / "u.onnx"), "--precision", "fp16", "--resolution", "512"])
    assert code == 0, capsys.readouterr().err
    assert max(read_image(out).shape[:2]) == 512
