"""`facefuse quantize`: INT8 static per-channel quantization calibrated on real face crops."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models as om  # noqa: E402
from facefuse.cli import main  # noqa: E402
from facefuse.config import InferenceSettings  # noqa: E402
from facefuse.engines import create_engine  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.quantize import quantize_model, ssim  # noqa: E402

CALIBRATION = ["examples/source.jpg", "examples/target.jpg", "tests/data/deepface_img2.jpg", "tests/data/fr_alex_lacamoire.png"]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    """A folder of real face photos (4 people; the last one is held out)."""
    root = Path(__file__).resolve().parents[1]
    d = tmp_path_factory.mktemp("calibration")
    for rel in CALIBRATION:
        shutil.copy(root / rel, d / Path(rel).name)
    return d


def test_ssim_is_1_for_equal_and_drops_with_noise(target_path):
    img = read_image(target_path)[:200, :200].astype(np.float32)
    noisy = img + np.random.default_rng(0).normal(0, 20, img.shape).astype(np.float32)
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, noisy) < 0.8


def test_unet_per_channel_int8_agrees_with_fp32(calibration, tmp_path, source_path, target_path, fuser):
    model = om.unet_conv(tmp_path / "unet.onnx", size=128, width=24)
    out = tmp_path / "unet.int8.onnx"
    lines: list[str] = []
    report = quantize_model(model, calibration, out, log=lines.append, timing_s=0.2)
    assert out.is_file() and (tmp_path / "unet.int8.json").read_text() == (tmp_path / "unet.json").read_text()
    assert report["calibration_crops"] == 3 and report["held_out_crops"] == 1
    assert report["bytes_int8"] < 0.4 * report["bytes_fp32"] == 0.4 * model.stat().st_size
    assert report["ssim_mean"] > 0.98 and report["max_abs_error"] < 12.0, report
    assert any("SSIM" in line for line in lines) and any("x" in line and "int8" in line for line in lines)

    # QDQ, per channel: every conv weight has one scale per output channel
    q = onnx.load(str(out))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: i for i in q.graph.initializer}
    weight_dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                 and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[0]].dims) == 4]
    assert len(weight_dq) == 5  # the five convolutions
    for n in weight_dq:
        assert numpy_helper.to_array(inits[n.input[1]]).shape == (inits[n.input[0]].dims[0],)

    # the int8 model runs in the engine (precision int8) on a real pair, close to fp32
    settings = dict(engine="onnx-unet")
    e32 = create_engine("onnx-unet", InferenceSettings(model=str(model), **settings))
    e8 = create_engine("onnx-unet", InferenceSettings(model=str(out), precision="int8", **settings))
    src_img, tgt_img = read_image(source_path), read_image(target_path)
    sf, tf = fuser.detect(src_img).faces[0], fuser.detect(tgt_img).faces[0]
    a = e32.fuse(e32.prepare_source(src_img, sf), tgt_img, tf.landmarks, 1.0)
    b = e8.fuse(e8.prepare_source(src_img, sf), tgt_img, tf.landmarks, 1.0)
    inside = a.mask > 0.5
    assert np.abs(a.image - b.image)[inside].mean() < 2.0


def test_cli_swap_model_keeps_embedding_map_and_refuses_overwrite(calibration, tmp_path, capsys):
    model = om.swap_conv(tmp_path / "swap.onnx", size=128, width=16)
    emb = om.embedder(tmp_path / "emb.onnx")
    out = tmp_path / "swap.int8.onnx"
    args = ["quantize", "--model", str(model), "--calibration", str(calibration), "--out", str(out),
            "--embedder", str(emb), "--no-per-channel", "--format", "qoperator"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "per-tensor QOPERATOR" in text and "SSIM" in text and "speed" in text
    q = onnx.load(str(out))
    assert any(n.op_type == "QLinearConv" for n in q.graph.node)
    e8 = create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(out), embedder=str(emb), precision="int8"))
    e32 = create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(model), embedder=str(emb)))
    np.testing.assert_array_equal(e8.emap, e32.emap)

    before = out.read_bytes()
    assert main(args) == 3
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_cli_errors_are_one_line(calibration, tmp_path, data_dir, capsys):
    model = om.swap_identity(tmp_path / "swap.onnx")
    base = ["quantize", "--model", str(model), "--out", str(tmp_path / "o.onnx")]
    assert main(base + ["--calibration", str(calibration)]) == 2  # an onnx-swap model needs --embedder
    assert "--embedder" in capsys.readouterr().err
    assert main(base + ["--calibration", str(tmp_path / "none")]) == 3
    assert "not a folder" in capsys.readouterr().err
    nofaces = tmp_path / "nofaces"
    nofaces.mkdir()
    for name in ("cat1.png", "cat2.png"):
        shutil.copy(data_dir / "skimage_chelsea.png", nofaces / name)
    unet = om.unet_copy(tmp_path / "u.onnx")
    assert main(["quantize", "--model", str(unet), "--out", str(tmp_path / "u8.onnx"), "--calibration", str(nofaces)]) == 3
    err = capsys.readouterr().err
    assert "fewer than 2 photos" in err and err.count("\n") == 1
    assert not (tmp_path / "u8.onnx").exists() and not (tmp_path / "o.onnx").exists()


@pytest.mark.slow
def test_enhancer_and_damo_models_quantize_and_run_at_int8(calibration, tmp_path, source_path, target_path):
    """`facefuse quantize` builds an enhancer's and an onnx-damo model's calibration inputs
    as they are built at inference, and both run at --precision int8 close to fp32."""
    from facefuse.config import Settings
    from facefuse.enhancers import create_enhancer
    from facefuse.pipeline import Fuser
    from facefuse.quantize import engine_for

    enh = om.enhancer_conv(tmp_path / "enh.onnx", size=256, width=32)
    damo = om.damo_conv(tmp_path / "damo.onnx")
    emb = om.embedder(tmp_path / "emb.onnx")
    assert engine_for(enh) == "enhancer" and engine_for(damo) == "onnx-damo"
    assert engine_for(om.enhancer_affine(tmp_path / "cf.onnx", size=256, weight=True)) == "enhancer"
    reports = {
        "enhancer": quantize_model(enh, calibration, tmp_path / "enh.int8.onnx", log=lambda _: None, timing_s=0.1),
        "onnx-damo": quantize_model(damo, calibration, tmp_path / "damo.int8.onnx", embedder=emb,
                                    log=lambda _: None, timing_s=0.1),
    }
    for kind, report in reports.items():
        assert report["engine"] == kind and report["held_out_crops"] >= 1
        assert report["ssim_mean"] > 0.95 and report["bytes_int8"] < 0.6 * report["bytes_fp32"], report
        q = onnx.load(report["out"])
        assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    e8 = create_enhancer("onnx", InferenceSettings(enhancer=str(tmp_path / "enh.int8.onnx"), precision="int8"))
    assert e8.size == 256
    fuser = Fuser(Settings(inference=InferenceSettings(engine="onnx-damo", model=str(tmp_path / "damo.int8.onnx"),
                                                       embedder=str(emb), precision="int8",
                                                       enhancer=str(tmp_path / "enh.int8.onnx"))))
    result = fuser.fuse_detailed(source_path, target_path, fuser.params(resolution=512))
    assert result.timings["enhance"] > 0 and len(result.faces) == 1
