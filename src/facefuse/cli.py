"""Command line: `facefuse fuse | detect | start | ...`.

Translates flags into a Fuser call and the result into a file; no fusion logic here.
Exit codes: 0 ok, 2 usage / bad value, 3 bad input, 4 no face, 5 engine or internal error.
Errors are one line on stderr; --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from .errors import ConfigError, FaceFuseError, InputError

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_NOFACE, EXIT_ENGINE = 0, 2, 3, 4, 5
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "examples"

# subcommand name -> function adding its parser; other modules register theirs here
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def command(name: str):
    def wrap(fn):
        COMMANDS[name] = fn
        return fn
    return wrap


def _unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return v


def add_fusion_options(p: argparse.ArgumentParser) -> None:
    """The fusion flags, shared by fuse, batch and anything else that fuses."""
    g = p.add_argument_group("fusion")
    g.add_argument("--ratio", type=_unit_float, help="0-1: how far the face moves toward the source (default 0.8)")
    g.add_argument("--mode", choices=["normal", "blend", "overlay"], help="normal (feathered), blend (Poisson-style), overlay (multi-band)")
    g.add_argument("--smoothing", type=_unit_float, help="skin smoothing 0-1 (default 0.4)")
    g.add_argument("--brightness", type=_unit_float, help="-1..1 (default 0)")
    g.add_argument("--contrast", type=_unit_float, help="-1..1 (default 0)")
    g.add_argument("--saturation", type=_unit_float, help="-1..1 (default 0)")
    g.add_argument("--resolution", help="'original' or the output's long side (512, 1024, 2048, 4096; any 64-8192)")
    g.add_argument("--face-index", type=int, help="which target face, 0 = largest (see `facefuse detect`)")
    g.add_argument("--all-faces", action="store_true", default=None, help="fuse every face of the target")
    g.add_argument("--source-face-index", type=int, help="which face of the source (default 0)")
    g.add_argument("--threshold", type=_unit_float, help="face detection confidence 0-1 (default 0.6)")
    g.add_argument("--padding", type=_unit_float, help="ROI padding around the face box (default 0.2)")
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present); flags override it")
    p.add_argument("--engine", help="fusion engine (default classical)")
    p.add_argument("--model", help="ONNX model file for the onnx-swap / onnx-unet engines")
    p.add_argument("--embedder", help="ONNX identity-embedding model (onnx-swap)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="ONNX model precision (default fp32)")


FUSION_FLAGS = ("ratio", "mode", "smoothing", "brightness", "contrast", "saturation", "resolution",
                "face_index", "all_faces", "source_face_index", "threshold", "padding")


def fusion_overrides(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in FUSION_FLAGS if getattr(args, k, None) is not None}


def load_settings(args: argparse.Namespace):
    from .config import load_config

    overrides: dict = {}
    for key in ("engine", "model", "embedder", "precision"):
        if getattr(args, key, None):
            overrides.setdefault("inference", {})[key] = getattr(args, key)
    return load_config(getattr(args, "config", None), overrides)


# -- fuse -----------------------------------------------------------------------------
@command("fuse")
def _fuse_parser(sub) -> None:
    p = sub.add_parser("fuse", help="fuse SOURCE's face into TARGET and write OUT")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("-o", "--output", required=True, help="output file (.jpg .jpeg .png .webp)")
    add_fusion_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quality", type=int, help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--report", help="write a JSON report (faces, parameters, timings) to this file")
    p.set_defaults(run=run_fuse)


def run_fuse(args: argparse.Namespace) -> int:
    from .io import decode_image, encode_like, output_format, write_bytes_atomic
    from .errors import OutputExistsError

    out = Path(args.output)
    fmt = output_format(out)  # fail on a bad extension or folder before any work
    for path in (out, Path(args.report) if args.report else None):
        if path is not None and not path.resolve().parent.is_dir():
            raise InputError(f"{path}: output folder does not exist", "bad_output")
    if out.exists() and not args.overwrite:
        raise OutputExistsError(f"{out}: already exists (use --overwrite to replace it)")
    if args.report and Path(args.report).exists() and not args.overwrite:
        raise OutputExistsError(f"{args.report}: already exists (use --overwrite to replace it)")
    settings = load_settings(args)
    params = settings.fusion_params(**fusion_overrides(args))  # bad values fail here, before any work
    quality = args.quality if args.quality is not None else settings.output.quality
    if not 1 <= quality <= 100:
        raise ConfigError(f"quality: must be 1-100, got {quality}")
    t1 = time.perf_counter()
    reduce_to = None if params.resolution == "original" else max(int(params.resolution), settings.face_detection.max_side)
    target = decode_image(args.target, max_pixels=settings.output.max_pixels, name=f"target {args.target}", reduce_to=reduce_to)
    source = decode_image(args.source, max_pixels=settings.output.max_pixels, name=f"source {args.source}")
    decode_s = time.perf_counter() - t1
    from .pipeline import Fuser

    t0 = time.perf_counter()
    fuser = Fuser(settings)
    load_s = time.perf_counter() - t0
    result = fuser.fuse_detailed(source.flattened(), target.flattened(), params)
    result.timings["decode"] += decode_s
    t2 = time.perf_counter()
    data = encode_like(result.image, target, fmt, quality)
    write_bytes_atomic(out, data, overwrite=args.overwrite)
    result.timings["encode"] = time.perf_counter() - t2
    result.timings["model_load"] = load_s
    if args.report:
        report = result.report() | {"source": str(args.source), "target": str(args.target), "output": str(out)}
        write_bytes_atomic(args.report, json.dumps(report, indent=2).encode(), overwrite=args.overwrite)
    h, w = result.image.shape[:2]
    print(f"{out}  {w}x{h}  faces fused: {len(result.faces)} of {result.target_faces_found}  "
          f"{result.timings['total'] + result.timings['encode']:.2f} s")
    return EXIT_OK


# -- detect ---------------------------------------------------------------------------
@command("detect")
def _detect_parser(sub) -> None:
    p = sub.add_parser("detect", help="list the faces of images in fusion order")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--draw", help="write the (first) image with numbered boxes to this file")
    p.add_argument("--threshold", type=_unit_float, help="face detection confidence 0-1 (default 0.6)")
    p.add_argument("--config")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    from .detect import FaceDetector
    from .io import read_image, write_image
    from .preview import draw_faces

    settings = load_settings(args)
    thr = settings.face_detection.threshold if args.threshold is None else args.threshold
    if not 0 <= thr <= 1:
        raise ConfigError(f"threshold: must be 0-1, got {thr}")
    detector = FaceDetector.from_settings(settings)
    results = []
    for i, path in enumerate(args.images):
        img = read_image(path, max_pixels=settings.output.max_pixels)
        t0 = time.perf_counter()
        det = detector.detect(img, threshold=thr)
        seconds = time.perf_counter() - t0
        mpx = img.shape[0] * img.shape[1] / 1e6
        results.append({
            "image": path, "width": img.shape[1], "height": img.shape[0], "seconds": round(seconds, 4),
            "seconds_per_mpx": round(seconds / mpx, 4),
            "faces": [{"index": k, **f.to_dict()} for k, f in enumerate(det.faces)],
            "dropped": det.dropped, "passes": det.passes,
        })
        if args.draw and i == 0:
            write_image(args.draw, draw_faces(img, det.faces), overwrite=args.overwrite)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            print(f"{r['image']}: {len(r['faces'])} face(s), {r['width']}x{r['height']}, {r['seconds']:.2f} s "
                  f"({r['seconds_per_mpx']:.3f} s/Mpx)")
            for f in r["faces"]:
                b = f["box"]
                kps = " ".join(f"({x:.0f},{y:.0f})" for x, y in f["keypoints"])
                print(f"  [{f['index']}] box=({b[0]:.0f},{b[1]:.0f},{b[2]:.0f},{b[3]:.0f}) "
                      f"size={f['size_px']:.0f}px score={f['score']:.2f} keypoints={kps}")
    return EXIT_OK


# -- start: the main job --------------------------------------------------------------
@command("start")
def _start_parser(sub) -> None:
    p = sub.add_parser("start", help="start the WebUI, or fuse the sample pair if the WebUI is not installed")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--config")
    p.set_defaults(run=run_start)


def run_start(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is not None and "serve" in COMMANDS:
        from .server import serve

        settings = load_settings(args)
        return serve(settings, host=args.host, port=args.port)
    return fuse_sample()


def fuse_sample() -> int:
    from .io import write_image
    from .pipeline import Fuser

    out_dir = Path("outputs")
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"sample-{time.strftime('%Y%m%d-%H%M%S')}.jpg"
    image = Fuser().fuse(SAMPLES / "source.jpg", SAMPLES / "target.jpg")
    write_image(out, image)
    print(f"fused {SAMPLES / 'source.jpg'} into {SAMPLES / 'target.jpg'}: {out}")
    return EXIT_OK


def _register_optional_commands() -> None:
    """Front-ends in their own modules add their subcommands when they are present."""
    import importlib

    for mod in ("bench", "batch", "server", "quantize", "video.command"):
        try:
            importlib.import_module(f"facefuse.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"facefuse.{mod}":
                raise


def build_parser() -> argparse.ArgumentParser:
    _register_optional_commands()
    parser = argparse.ArgumentParser(prog="facefuse", description="Local face fusion.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version="facefuse 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        COMMANDS[name](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except FaceFuseError as exc:
        if args.debug:
            raise
        print(f"facefuse: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("facefuse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: one line, exit 5
        if args.debug:
            raise
        print(f"facefuse: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_ENGINE


if __name__ == "__main__":  # `python -m facefuse.cli`: run the imported module, in which
    from facefuse.cli import main as _main  # the optional commands register themselves

    sys.exit(_main())
