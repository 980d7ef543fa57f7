"""`facefuse quantize`: INT8 static quantization of an ONNX face model, calibrated on real faces.

    facefuse quantize --model M.onnx --calibration PHOTOS/ --out M.int8.onnx
                      [--embedder E.onnx] [--per-channel | --no-per-channel] [--format qdq|qoperator]

The calibration inputs are built by the engine or enhancer itself (`onnx-damo` for a model
with four inputs, `onnx-swap` for a crop and a latent input, a face enhancer for one
3-channel image input, with or without a `weight`, `onnx-unet` otherwise) from the faces
found in the photos, so they are aligned, normalised and paired exactly as at inference:
each face is a target, and the next photo's face is its source. The last photos (one in five, at least one) are held out:
the FP32 and INT8 models run on their crops, and the agreement (SSIM, max / mean absolute
error in 0..255 pixel levels) and the speed-up are printed. Weights are quantized to int8
(per output channel by default), activations to uint8 with min/max calibration, with ONNX
Runtime's `quantize_static`. The output is never overwritten; the model card (if any) is
copied beside it, and an inswapper embedding map is carried over.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from .commands import EXIT_OK
from .errors import ConfigError, EngineError, InputError, OutputExistsError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two HxWx3 float images in 0..255 (Gaussian window, sigma 1.5)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def _channels(value_info) -> Optional[int]:
    dims = value_info.type.tensor_type.shape.dim
    return dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None


def _rank(value_info) -> int:
    return len(value_info.type.tensor_type.shape.dim)


def engine_for(model: Path) -> str:
    """onnx-damo for four inputs, onnx-swap for two with one image, "enhancer" for one
    3-channel image (and perhaps a scalar weight), onnx-unet otherwise."""
    import onnx

    if not model.is_file():
        raise EngineError(f"model {model}: file not found")
    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:
        raise EngineError(f"model {model}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from exc
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    images = [_channels(i) for i in inputs if _rank(i) == 4]
    if len(inputs) == 4:
        return "onnx-damo"
    if images == [3] and len(inputs) <= 2 and all(_rank(i) <= 1 for i in inputs if _rank(i) != 4):
        return "enhancer"
    return "onnx-swap" if len(inputs) == 2 else "onnx-unet"


class _Stage:
    """What quantization needs of the model's stage: its inputs per face, and how to run it."""

    def __init__(self, fuser, kind: str):
        self.kind = kind
        self.model = fuser.enhancer if kind == "enhancer" else fuser.engine
        self.weight = fuser.settings.fusion.enhancer_weight

    def inputs(self, source, roi: np.ndarray, landmarks: np.ndarray) -> list[dict]:
        if self.kind == "enhancer":
            return self.model.model_inputs(roi, landmarks, self.weight)
        return self.model.model_inputs(source, roi, landmarks)


def _photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"--calibration {folder}: not a folder")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if len(photos) < 2:
        raise InputError(f"--calibration {folder}: needs at least 2 face photos (.jpg .png .webp .bmp), found {len(photos)}")
    return photos


def _samples(fuser, stage: _Stage, photos: list[Path], max_crops: int, log: Callable) -> list[tuple[int, dict]]:
    """(photo number, model inputs) for every face found, as the engine builds them."""
    from .roi import plan_roi

    faces = []  # (photo number, image, face)
    for n, path in enumerate(photos):
        try:
            image = fuser.read(path)
        except InputError as exc:
            log(f"skipped {path.name}: {exc}")
            continue
        found = fuser.detect(image).faces
        faces += [(n, image, f) for f in found]
        if len(faces) >= max_crops:
            break
    faces = faces[:max_crops]
    if len({n for n, _, _ in faces}) < 2:
        raise InputError("--calibration: faces were found in fewer than 2 photos; give more face photos")
    pad = fuser.settings.face_detection.padding_ratio
    sources: dict[int, object] = {}
    samples = []
    for i, (n, image, face) in enumerate(faces):
        j = (i + 1) % len(faces)
        if j not in sources:
            sources[j] = fuser.engine.prepare_source(faces[j][1], faces[j][2])
        roi = plan_roi(face, image.shape[1], image.shape[0], pad)
        samples += [(n, f) for f in stage.inputs(sources[j], image[roi.slices], face.landmarks - roi.offset)]
    return samples


class _Reader:
    """ONNX Runtime calibration data reader over prepared model inputs."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self) -> Optional[dict]:
        return next(self._it, None)


def _time_per_run(run: Callable, feeds: list[dict], budget_s: float = 1.0) -> float:
    run(feeds[0])  # warm-up
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 50):
        for f in feeds:
            t0 = time.perf_counter()
            run(f)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _carry_embedding_map(emap: Optional[np.ndarray], path: Path) -> None:
    """Keep inswapper's embedding map as the last initializer (quantization may drop it:
    no node uses it)."""
    if emap is None:
        return
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    last = model.graph.initializer[-1] if model.graph.initializer else None
    if last is not None and tuple(last.dims) == emap.shape and np.array_equal(numpy_helper.to_array(last), emap):
        return
    names = {i.name for i in model.graph.initializer}
    name = next(n for n in ("emap", "emap_fp32", "facefuse_emap") if n not in names)
    model.graph.initializer.append(numpy_helper.from_array(emap, name))
    onnx.save(model, str(path))


def quantize_model(
    model: str | os.PathLike,
    calibration: str | os.PathLike,
    out: str | os.PathLike,
    embedder: str | os.PathLike | None = None,
    per_channel: bool = True,
    fmt: str = "qdq",
    held_out: Optional[int] = None,
    max_crops: int = 64,
    settings=None,
    log: Callable[[str], None] = print,
    timing_s: float = 1.0,
) -> dict:
    """Quantize `model` to INT8 at `out`; returns the agreement / speed report (each model
    is timed for about `timing_s` seconds on the held-out crops)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    from .config import Settings, load_config
    from .engines import create_engine
    from .enhancers import create_enhancer
    from .onnxrt import card_path
    from .pipeline import Fuser

    model, out = Path(model), Path(out)
    if fmt not in ("qdq", "qoperator"):
        raise ConfigError(f"--format: must be qdq or qoperator, got {fmt!r}")
    if out.exists():
        raise OutputExistsError(out, "quantize never overwrites; remove it or choose another --out")
    card = card_path(model)
    out_card = out.with_suffix(card.suffix) if card else None
    if out_card is not None and out_card.exists() and out_card.read_bytes() != card.read_bytes():
        raise OutputExistsError(out_card, "with other content; the model card is copied beside --out")
    photos = _photos(Path(calibration))
    kind = engine_for(model)
    if kind in ("onnx-swap", "onnx-damo") and not embedder:
        raise ConfigError(f"--embedder: an {kind} model's calibration needs the identity-embedding model")
    base = settings if isinstance(settings, Settings) else load_config(settings)
    inference = base.inference.model_copy(update={
        "engine": kind, "model": str(model), "embedder": str(embedder) if embedder else None,
        "precision": "fp32", "providers": ["CPUExecutionProvider"], "cuda_graph": False, "pixel_boost": None})
    if kind == "enhancer":  # the classical engine makes the faces the enhancer calibrates on
        inference = inference.model_copy(update={"engine": "classical", "model": None, "enhancer": str(model)})
    fuser = Fuser(base.model_copy(update={"inference": inference}))
    stage = _Stage(fuser, kind)

    samples = _samples(fuser, stage, photos, max_crops, log)
    photo_ids = sorted({n for n, _ in samples})
    k = held_out if held_out is not None else max(1, len(photo_ids) // 5)
    if not 1 <= k < len(photo_ids):
        raise ConfigError(f"--held-out: must be 1-{len(photo_ids) - 1} (photos with faces: {len(photo_ids)}), got {k}")
    test_ids = set(photo_ids[-k:])
    calib = [f for n, f in samples if n not in test_ids]
    test = [f for n, f in samples if n in test_ids]

    out.parent.mkdir(parents=True, exist_ok=True)
    ort.set_default_logger_severity(3)  # the tool's own sessions note inswapper's unused emap
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize-") as tmp:
        pre, tmp_out = Path(tmp) / "pre.onnx", Path(tmp) / out.name
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(tmp_out), _Reader(calib),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax)
        _carry_embedding_map(getattr(fuser.engine, "emap", None), tmp_out)
        if card:
            shutil.copyfile(card, Path(tmp) / out_card.name)
        if kind == "enhancer":
            int8 = create_enhancer("onnx", inference.model_copy(update={"enhancer": str(tmp_out), "precision": "int8"}))
        else:
            int8 = create_engine(kind, inference.model_copy(update={"model": str(tmp_out), "precision": "int8"}))
        ref = [stage.model.run(f) for f in test]
        got = [int8.run(f) for f in test]
        report = {
            "engine": kind,
            "format": fmt,
            "per_channel": per_channel,
            "calibration_crops": len(calib),
            "held_out_crops": len(test),
            "ssim_mean": float(np.mean([ssim(a, b) for a, b in zip(ref, got, strict=True)])),
            "ssim_min": float(min(ssim(a, b) for a, b in zip(ref, got, strict=True))),
            "max_abs_error": float(max(np.abs(a - b).max() for a, b in zip(ref, got, strict=True))),
            "mean_abs_error": float(np.mean([np.abs(a - b).mean() for a, b in zip(ref, got, strict=True)])),
            "ms_fp32": 1000 * _time_per_run(stage.model.run, test, timing_s),
            "ms_int8": 1000 * _time_per_run(int8.run, test, timing_s),
            "bytes_fp32": model.stat().st_size,
            "bytes_int8": tmp_out.stat().st_size,
        }
        if out.exists():  # appeared while we worked
            raise OutputExistsError(out, "quantize never overwrites")
        if card:
            os.replace(Path(tmp) / out_card.name, out_card)
        os.replace(tmp_out, out)
    report["out"] = str(out)
    report["speedup"] = report["ms_fp32"] / report["ms_int8"]
    def mb(b):
        return f"{b / 1e6:.2f} MB"
    log(f"{out}: {mb(report['bytes_int8'])} (fp32 {mb(report['bytes_fp32'])}), "
        f"{'per-channel' if per_channel else 'per-tensor'} {fmt.upper()}, calibrated on {len(calib)} face crops")
    log(f"agreement with fp32 on {len(test)} held-out crops: SSIM {report['ssim_mean']:.4f} (min {report['ssim_min']:.4f}), "
        f"max abs error {report['max_abs_error']:.1f}, mean {report['mean_abs_error']:.2f} (0-255 levels)")
    log(f"speed on this CPU: fp32 {report['ms_fp32']:.2f} ms, int8 {report['ms_int8']:.2f} ms per crop "
        f"= {report['speedup']:.2f}x")
    return report


def add_parser(sub) -> None:
    p = sub.add_parser("quantize", help="INT8 static quantization of an ONNX face model, calibrated on face photos")
    p.add_argument("--model", required=True,
                   help="the FP32 ONNX model (onnx-swap, onnx-unet, onnx-damo or face-enhancer contract)")
    p.add_argument("--calibration", required=True, help="folder of real face photos")
    p.add_argument("--out", required=True, help="the INT8 model to write (never overwritten)")
    p.add_argument("--embedder", help="identity-embedding model (needed for onnx-swap and onnx-damo models)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="one weight scale per output channel (default) or one per tensor")
    p.add_argument("--format", choices=["qdq", "qoperator"], default="qdq",
                   help="qdq (QuantizeLinear/DequantizeLinear pairs, default; what GPU providers run) or qoperator")
    p.add_argument("--held-out", type=int, help="photos kept out of calibration to measure agreement (default 1 in 5)")
    p.add_argument("--max-crops", type=int, default=64, help="face crops used at most (default 64)")
    p.add_argument("--config", help="a config.yaml (face detection settings)")
    p.set_defaults(run=run_quantize)


def run_quantize(args: argparse.Namespace) -> int:
    if args.max_crops < 2:
        raise ConfigError(f"--max-crops: must be at least 2, got {args.max_crops}")
    quantize_model(args.model, args.calibration, args.out, embedder=args.embedder, per_channel=args.per_channel,
                   fmt=args.format, held_out=args.held_out, max_crops=args.max_crops, settings=args.config)
    return EXIT_OK
