"""Speed of the neural engines (onnx-swap, onnx-unet) at FP32 / FP16 / INT8, beside classical.

    .venv/bin/python scripts/bench_onnx.py [--repeat 10] [--resolution 1024] [--threads 1]
                                           [--providers CUDAExecutionProvider,CPUExecutionProvider]

Builds the small test models of tests/onnx_models.py in a temporary folder (no downloads),
quantizes them with `facefuse quantize` (calibration: the photos in examples/ and
tests/data/), and times whole fusions of examples/source.jpg into examples/target.jpg: the
source is prepared once, the target is decoded once, so each run is detect + ROI + engine +
blend + paste. Prints a Markdown table: fusions/s (median), the median engine stage (align +
model + paste-back) and the median model call alone (on the target's crop). The
configurations run in interleaved rounds, so load from other processes hits all alike.
These are tiny test models (a few convolutions), not real face models: the numbers show what
the pipeline around a model costs and how precision changes a small model's cost.

A second table (`--enhancer-only` prints just it) gives the face enhancer's cost per face on
top of the classical engine: the `enhance` stage (align at the enhancer's side, model,
paste-back, mix) for an identity model (the stage's own cost) and a small convolutional one,
at 256 and 512 (GPEN-BFR-256, GFPGAN / CodeFormer / GPEN-BFR-512 sides), at fp32 and int8.
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
    def quiet(line):
        print("  quantize:", line, file=sys.stderr)
    quantize_model(swap, cal, folder / "swap.int8.onnx", embedder=emb, log=quiet)
    quantize_model(unet, cal, folder / "unet.int8.onnx", log=quiet)
    return {
        "onnx-swap": {p: dict(engine="onnx-swap", model=str(folder / ("swap.int8.onnx" if p == "int8" else "swap.onnx")),
                              embedder=str(emb), precision=p) for p in ("fp32", "fp16", "int8")},
        "onnx-unet": {p: dict(engine="onnx-unet", model=str(folder / ("unet.int8.onnx" if p == "int8" else "unet.onnx")),
                              precision=p) for p in ("fp32", "fp16", "int8")},
    }


def measure(configs: list[dict], providers: list[str], threads: int, resolution: int, repeat: int) -> list[tuple]:
    """Per config: (median s per fusion, median engine-stage s, median model-call s).

    The configs run in interleaved rounds (one fusion of each per round), so a burst of load
    from other processes on a shared machine hits every config alike.
    """
    target = read_image(ROOT / "examples" / "target.jpg")
    runs = []
    for inference in configs:
        fuser = Fuser(Settings(inference={**inference, "providers": providers, "threads": threads}))
        source = fuser.prepare_source(ROOT / "examples" / "source.jpg")
        params = fuser.params(resolution=resolution)
        fuser.fuse_detailed(source, target, params)  # warm-up
        feeds = None
        if hasattr(fuser.engine, "runner"):
            crop, _ = fuser.engine.aligned_crop(target, fuser.detect(target).faces[0].landmarks)
            feeds = fuser.engine.feeds(source, crop)
        runs.append((fuser, source, params, feeds, {"total": [], "engine": [], "model": []}))
    for _ in range(repeat):
        for fuser, source, params, feeds, times in runs:
            t = fuser.fuse_detailed(source, target, params).timings
            times["total"].append(t["total"] - t["decode"])
            times["engine"].append(t["engine"])
            for _ in range(3 if feeds else 0):
                t0 = time.perf_counter()
                fuser.engine.run(feeds)
                times["model"].append(time.perf_counter() - t0)
    def med(xs):
        return statistics.median(xs) if xs else float("nan")
    return [(med(t["total"]), med(t["engine"]), med(t["model"])) for *_, t in runs]


def build_enhancers(folder: Path) -> dict[tuple[str, int, str], dict]:
    """(model, side, precision) -> inference settings of an enhancer on the classical engine."""
    cal = folder / "calibration"
    if not cal.is_dir():
        cal.mkdir()
        for rel in CALIBRATION:
            shutil.copy(ROOT / rel, cal / Path(rel).name)
    def quiet(line):
        print("  quantize:", line, file=sys.stderr)
    configs = {}
    for side in (256, 512):
        ident = om.enhancer_affine(folder / f"enh_identity_{side}.onnx", size=side)
        conv = om.enhancer_conv(folder / f"enh_conv_{side}.onnx", size=side, width=32)
        quantize_model(conv, cal, folder / f"enh_conv_{side}.int8.onnx", log=quiet)
        configs[("identity", side, "fp32")] = dict(engine="classical", enhancer=str(ident))
        configs[("conv", side, "fp32")] = dict(engine="classical", enhancer=str(conv))
        configs[("conv", side, "int8")] = dict(engine="classical", enhancer=str(folder / f"enh_conv_{side}.int8.onnx"),
                                               precision="int8")
    return configs


def enhancer_cost(configs: list[dict], providers: list[str], threads: int, resolution: int, repeat: int) -> list[float]:
    """Median seconds of the `enhance` stage per face, per config (interleaved rounds)."""
    target = read_image(ROOT / "examples" / "target.jpg")
    runs = []
    for inference in configs:
        fuser = Fuser(Settings(inference={**inference, "providers": providers, "threads": threads}))
        source = fuser.prepare_source(ROOT / "examples" / "source.jpg")
        params = fuser.params(resolution=resolution, enhancer_blend=0.8)
        fuser.fuse_detailed(source, target, params)  # warm-up
        runs.append((fuser, source, params, []))
    for _ in range(repeat):
        for fuser, source, params, times in runs:
            result = fuser.fuse_detailed(source, target, params)
            times.append(result.timings["enhance"] / len(result.faces))
    return [statistics.median(t) for *_, t in runs]


def print_enhancer_table(providers: list[str], threads: int, resolution: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        configs = build_enhancers(Path(tmp))
        costs = enhancer_cost(list(configs.values()), providers, threads, resolution, repeat)
    print(f"face enhancer on the classical engine, {threads} thread(s), output {resolution}")
    print("| enhancer model | side | precision | enhance stage ms per face |")
    print("|---|---|---|---|")
    for (model, side, precision), cost in zip(configs, costs, strict=True):
        print(f"| {model} | {side} | {precision} | {1000 * cost:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--providers", default="CPUExecutionProvider", help="comma-separated ONNX Runtime providers")
    ap.add_argument("--threads", type=int, default=1,
                    help="ONNX Runtime / OpenCV threads (default 1: steadier on a shared machine)")
    ap.add_argument("--enhancer-only", action="store_true", help="only the face enhancer's cost per face")
    args = ap.parse_args()
    providers = args.providers.split(",")
    if args.enhancer_only:
        print_enhancer_table(providers, args.threads, args.resolution, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        configs = build(Path(tmp))
        names = [("classical", "-")] + [(n, p) for n, by_p in configs.items() for p in by_p]
        inference = [{"engine": "classical"}] + [c for by_p in configs.values() for c in by_p.values()]
        results = measure(inference, providers, args.threads, args.resolution, args.repeat)
        rows = [(*name, *r) for name, r in zip(names, results, strict=True)]
    print(f"{args.threads} thread(s), providers {args.providers}")
    print(f"| engine | precision | fusions/s at {args.resolution} | ms per fusion | engine stage ms | model call ms |")
    print("|---|---|---|---|---|---|")
    for name, precision, total, engine, model in rows:
        model_ms = "-" if model != model else f"{1000 * model:.1f}"
        print(f"| {name} | {precision} | {1 / total:.2f} | {1000 * total:.0f} | {1000 * engine:.1f} | {model_ms} |")
    print()
    print_enhancer_table(providers, args.threads, args.resolution, args.repeat)


if __name__ == "__main__":
    main()
