"""Speed of the neural engines (onnx-swap, onnx-unet) at FP32 / FP16 / INT8, beside classical.

    .venv/bin/python scripts/bench_onnx.py [--repeat 10] [--resolution 1024] [--threads 1]
                                           [--providers CUDAExecutionProvider,CPUExecutionProvider]

Builds the small test models of tests/onnx_models.py in a temporary folder (no downloads),
quantizes them with `facefuse quantize` (calibration: the photos in examples/ and
tests/data/), and times whole fusions of examples/source.jpg into examples/target.jpg: the
source is prepared once, the target is decoded once, so each run is detect + ROI + engine +
blend + paste. Prints a Markdown table: fusions/s (median), the median engine stage (align +
model + paste-back) and the median model call alone.
These are tiny test models (a few convolutions), not real face models: the numbers show what
the pipeline around a model costs and how precision changes a small model's cost.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import onnx_models as om  # noqa: E402

from facefuse.config import Settings  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.pipeline import Fuser  # noqa: E402
from facefuse.quantize import quantize_model  # noqa: E402

CALIBRATION = ["examples/source.jpg", "examples/large_target.jpg", "tests/data/deepface_img2.jpg",
               "tests/data/fr_alex_lacamoire.png", "tests/data/fr_obama_partial_face.jpg", "examples/target.jpg"]


def build(folder: Path) -> dict[str, dict]:
    """engine name -> {precision: inference settings}, models written to folder."""
    cal = folder / "calibration"
    cal.mkdir()
    for rel in CALIBRATION:
        shutil.copy(ROOT / rel, cal / Path(rel).name)
    emb = om.embedder(folder / "emb.onnx")
    swap = om.swap_conv(folder / "swap.onnx", size=128, width=32)
    unet = om.unet_conv(folder / "unet.onnx", size=256, width=32)
    quiet = lambda line: print("  quantize:", line, file=sys.stderr)
    quantize_model(swap, cal, folder / "swap.int8.onnx", embedder=emb, log=quiet)
    quantize_model(unet, cal, folder / "unet.int8.onnx", log=quiet)
    return {
        "onnx-swap": {p: dict(engine="onnx-swap", model=str(folder / ("swap.int8.onnx" if p == "int8" else "swap.onnx")),
                              embedder=str(emb), precision=p) for p in ("fp32", "fp16", "int8")},
        "onnx-unet": {p: dict(engine="onnx-unet", model=str(folder / ("unet.int8.onnx" if p == "int8" else "unet.onnx")),
                              precision=p) for p in ("fp32", "fp16", "int8")},
    }


def measure(inference: dict, providers: list[str], threads: int, resolution: int, repeat: int) -> tuple[float, float, float]:
    """(median seconds per fusion, median engine-stage seconds, median model-only seconds)."""
    settings = Settings(inference={**inference, "providers": providers, "threads": threads})
    fuser = Fuser(settings)
    source = fuser.prepare_source(ROOT / "examples" / "source.jpg")
    target = read_image(ROOT / "examples" / "target.jpg")
    params = fuser.params(resolution=resolution)
    fuser.fuse_detailed(source, target, params)  # warm-up
    totals, engine = [], []
    for _ in range(repeat):
        t = fuser.fuse_detailed(source, target, params).timings
        totals.append(t["total"] - t["decode"])
        engine.append(t["engine"])
    return statistics.median(totals), statistics.median(engine), _model_only(fuser, source, target, 3 * repeat)


def _model_only(fuser: Fuser, source, target, repeat: int) -> float:
    """Median time of the model call alone on the target's aligned crop (nan for classical)."""
    engine = fuser.engine
    if not hasattr(engine, "runner"):
        return float("nan")
    crop, _ = engine.aligned_crop(target, fuser.detect(target).faces[0].landmarks)
    feeds = engine.feeds(source, crop)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        engine.run(feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--providers", default="CPUExecutionProvider", help="comma-separated ONNX Runtime providers")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime / OpenCV threads (default 1: steadier on a shared machine)")
    args = ap.parse_args()
    providers = args.providers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        configs = build(Path(tmp))
        rows = [("classical", "-", *measure({"engine": "classical"}, providers, args.threads, args.resolution, args.repeat))]
        for name, by_precision in configs.items():
            for precision, inference in by_precision.items():
                rows.append((name, precision, *measure(inference, providers, args.threads, args.resolution, args.repeat)))
    print(f"{args.threads} thread(s), providers {args.providers}")
    print(f"| engine | precision | fusions/s at {args.resolution} | ms per fusion | engine stage ms | model call ms |")
    print("|---|---|---|---|---|---|")
    for name, precision, total, engine, model in rows:
        model_ms = "-" if model != model else f"{1000 * model:.1f}"
        print(f"| {name} | {precision} | {1 / total:.2f} | {1000 * total:.0f} | {1000 * engine:.1f} | {model_ms} |")


if __name__ == "__main__":
    main()
