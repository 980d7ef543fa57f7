"""Command line: `facefuse fuse | detect | start | serve | batch | bench | quantize`.

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

from . import __version__, batch, bench, quantize, server, video_cli
from .commands import (
    EXIT_ENGINE,
    EXIT_OK,
    EXIT_USAGE,
    SAMPLES,
    add_fusion_options,
    fusion_overrides,
    load_settings,
    number,
    parse_face_map,
)
from .errors import FaceFuseError, InputError, OutputExistsError

COMMAND_MODULES = (batch, bench, server, quantize, video_cli)  # each has add_parser(subparsers)


# -- fuse -----------------------------------------------------------------------------
def add_fuse_parser(sub) -> None:
    p = sub.add_parser("fuse", help="fuse SOURCE's face into TARGET and write OUT",
                       usage="facefuse fuse SOURCE TARGET OUT [options]  (or -o OUT)")
    p.add_argument("source", help="the photo with the face to bring in ('-' with --map: every source from the mapping)")
    p.add_argument("target", help="the photo whose face is replaced (scene, pose, light are kept)")
    p.add_argument("out", nargs="?", metavar="OUT", help="output file (.jpg .jpeg .png .webp); or -o")
    p.add_argument("-o", "--output", help="output file (.jpg .jpeg .png .webp)")
    add_fusion_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quality", type=int, help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--report", help="write a JSON report (faces, parameters, timings) to this file")
    p.add_argument("--map", dest="face_map", metavar="INDEX=PHOTO,...",
                   help="fuse these target faces (indices as `facefuse detect` lists them), each from its own photo; "
                        "only the mapped faces are fused")
    p.set_defaults(run=run_fuse)


def run_fuse(args: argparse.Namespace) -> int:
    from .io import output_format, remove_stale_temps, write_bytes_atomic

    out = _output_path(args)
    fmt = output_format(out)  # fail on a bad extension or folder before any work
    for path in (out, Path(args.report) if args.report else None):
        if path is not None and not path.resolve().parent.is_dir():
            raise InputError(f"{path}: output folder does not exist", "bad_output")
        if path is not None and path.exists() and not args.overwrite:
            raise OutputExistsError(path)
        if path is not None:
            remove_stale_temps(path.resolve().parent, {path.name})  # what a kill -9 of an earlier run left
    settings = load_settings(args)
    params = settings.fusion_params(**fusion_overrides(args))  # bad values fail here, before any work
    quality = settings.output_quality(args.quality)
    sources = parse_face_map(args.face_map) if args.face_map else None
    if args.source == "-" and not sources:
        raise UsageError("SOURCE '-' means every source comes from --map; give --map INDEX=PHOTO,...")
    source = None if sources and args.source == "-" else args.source
    from .pipeline import Fuser

    t0 = time.perf_counter()
    fuser = Fuser(settings)
    load_s = time.perf_counter() - t0
    fused = fuser.fuse_encoded(source, args.target, params, fmt, quality, sources=sources)
    write_bytes_atomic(out, fused.data, overwrite=args.overwrite)
    result = fused.result
    for note in result.notes:
        print(f"facefuse: note: {note}", file=sys.stderr)
    if args.report:
        report = result.report() | {"source": str(args.source), "target": str(args.target), "output": str(out)}
        if sources:
            report["map"] = {str(k): v for k, v in sources.items()}
        report["timings_s"]["model_load"] = round(load_s, 4)  # before the fusion; not in its total
        write_bytes_atomic(args.report, json.dumps(report, indent=2).encode(), overwrite=args.overwrite)
    w, h = fused.size
    print(f"{out}  {w}x{h}  faces fused: {len(result.faces)} of {result.target_faces_found}  "
          f"{fused.seconds:.2f} s")
    return EXIT_OK


def _output_path(args: argparse.Namespace) -> Path:
    if args.out and args.output and args.out != args.output:
        raise UsageError(f"two outputs given ({args.out} and -o {args.output}); give one")
    if not (args.out or args.output):
        raise UsageError("no output file: facefuse fuse SOURCE TARGET OUT.jpg (or -o OUT.jpg)")
    return Path(args.out or args.output)


# -- detect ---------------------------------------------------------------------------
def add_detect_parser(sub) -> None:
    p = sub.add_parser("detect", help="list the faces of images in fusion order")
    p.add_argument("images", nargs="+", help="one or more photos")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--draw", help="write the (first) image with numbered boxes to this file")
    p.add_argument("--threshold", type=number, help="face detection confidence 0-1 (default 0.6)")
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present)")
    p.add_argument("--overwrite", action="store_true", help="replace the --draw file if it exists")
    p.set_defaults(run=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    from .detect import FaceDetector
    from .io import read_image, write_image
    from .preview import draw_faces

    settings = load_settings(args)
    thr = settings.detection_threshold(args.threshold)
    detector = FaceDetector.from_settings(settings)
    results = []
    drawn = None
    for path in args.images:
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
        if args.draw and drawn is None:
            drawn = draw_faces(img, det.faces)
    _print_faces(results, args.json)
    if drawn is not None:  # after the listing: a refused --draw file still shows the faces found
        write_image(args.draw, drawn, overwrite=args.overwrite)
    return EXIT_OK


def _print_faces(results: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        return
    for r in results:
        print(f"{r['image']}: {len(r['faces'])} face(s), {r['width']}x{r['height']}, {r['seconds']:.2f} s "
              f"({r['seconds_per_mpx']:.3f} s/Mpx)")
        for f in r["faces"]:
            b = f["box"]
            kps = " ".join(f"({x:.0f},{y:.0f})" for x, y in f["keypoints"])
            print(f"  [{f['index']}] box=({b[0]:.0f},{b[1]:.0f},{b[2]:.0f},{b[3]:.0f}) "
                  f"size={f['size_px']:.0f}px score={f['score']:.2f} keypoints={kps}")


# -- start: the main job --------------------------------------------------------------
def add_start_parser(sub) -> None:
    p = sub.add_parser("start", help="start the WebUI, or fuse the sample pair if the WebUI is not installed")
    p.add_argument("--host", help="address to bind (default server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default server.port, 7860)")
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present)")
    p.set_defaults(run=run_start)


def run_start(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is not None:
        return server.serve(load_settings(args), host=args.host, port=args.port)
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


# -- the parser -----------------------------------------------------------------------
class UsageError(FaceFuseError):
    """A command line that cannot be run as given (exit code 2)."""

    exit_code = EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the command and where its help is, not a usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args=None, namespace=None):
        """Unknown flags are reported by the command they were given to (`facefuse fuse
        --help`), with the nearest flag it has ("did you mean --ratio?")."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._subcommand(getattr(parsed, "command", None))
            hint = _nearest_flag(extras[0], command) if command else ""
            (command or self).error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def _subcommand(self, name: str | None) -> argparse.ArgumentParser | None:
        for action in self._subparsers._group_actions if self._subparsers and name else ():
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(name)
        return None


def _nearest_flag(word: str, parser: argparse.ArgumentParser) -> str:
    """"; did you mean --ratio?" for a mistyped flag, or ""."""
    import difflib

    flags = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facefuse", description="Local face fusion.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"facefuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_fuse_parser(sub)
    add_detect_parser(sub)
    add_start_parser(sub)
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--debug"]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.debug = debug
        if not getattr(args, "run", None):
            parser.print_help()
            return EXIT_USAGE
        return int(args.run(args) or 0)
    except FaceFuseError as exc:
        if debug:
            raise
        if isinstance(exc, OutputExistsError):
            exc = exc.for_command_line()
        print(f"facefuse: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("facefuse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: one line, exit 5
        if debug:
            raise
        print(f"facefuse: internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return EXIT_ENGINE


if __name__ == "__main__":
    sys.exit(main())
