"""`facefuse video SOURCE VIDEO -o OUT.mp4`: translate flags into a fuse_video call.

Exit codes as for `fuse`: 2 a bad option, 3 a bad input (not a video, damaged, over the
limits, existing output), 4 no face in the source or in any frame, 5 engine error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .commands import EXIT_OK, add_fusion_options, fusion_overrides, load_settings, parse_face_map  # noqa: F401 (re-exported)
from .errors import ConfigError, InputError, OutputExistsError, Terminated


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("video", help="fuse SOURCE's face into every frame of VIDEO and write OUT")
    p.add_argument("source", help="source photo (use '-' with --map to take every source from the mapping)")
    p.add_argument("video")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4 .mov .mkv: H.264, .webm: VP9), "
                                                         "or a .png with --preview-at")
    add_fusion_options(p)
    p.add_argument("--map", dest="face_map", metavar="INDEX=PHOTO,...",
                   help="fuse these target faces (index at the face's first appearance), each from its own photo")
    p.add_argument("--start", type=_seconds, help="first second to fuse (the output starts there)")
    p.add_argument("--end", type=_seconds, help="second to stop at")
    p.add_argument("--preview-at", type=_seconds, metavar="SECONDS", help="write only the fused frame at this time, as PNG")
    p.add_argument("--quality", type=int, help="1-100, mapped to the encoder's CRF (default 75 = CRF 18)")
    p.add_argument("--codec", choices=["h264", "vp9"], help="video codec (default: h264; vp9 for .webm)")
    p.add_argument("--detect-every", type=int, help="full face detection every N frames (default 12)")
    p.add_argument("--work-face", type=int, metavar="PX", help="fuse faces larger than PX pixels at that size and "
                   "enlarge only the change (faster on large faces; default 320, 0 = at full size)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT (and the report) if they exist")
    p.add_argument("--report", help="write a JSON report (frames, faces and tracks per frame, timings, fps)")
    p.add_argument("--workers", type=int, help="processes fusing chunks of the clip in parallel (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="fuse chunks on Ray: 'local' starts a local instance, "
                                                    "an address joins a cluster")
    p.set_defaults(run=run)


def _check_outputs(args: argparse.Namespace) -> None:
    from .io import remove_stale_temps

    for path in filter(None, (args.output, args.report)):
        if not Path(path).resolve().parent.is_dir():
            raise InputError(f"{path}: output folder does not exist", "bad_output")
        if Path(path).exists() and not args.overwrite:
            raise OutputExistsError(path)
        remove_stale_temps(Path(path).resolve().parent, {Path(path).name})  # what a kill -9 of an earlier run left


def _check_times(args: argparse.Namespace, duration: float) -> None:
    """--start and --preview-at inside the clip, naming its length (exit 2 like any value out
    of range)."""
    for flag_name, value in (("--start", args.start), ("--preview-at", args.preview_at)):
        if value is not None and duration and value >= duration:
            raise ConfigError(f"{flag_name}: {value:g} s is past the end of the clip, which is {duration:.1f} s long")


def _progress_bar(total_hint: int):
    from tqdm import tqdm

    bar = tqdm(total=total_hint, unit="frame", disable=None, file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update


def run(args: argparse.Namespace) -> int:
    from .io import write_bytes_atomic, write_image
    from .video.io import DEFAULT_QUALITY, check_output, probe

    settings = load_settings(args)
    params = settings.fusion_params(**fusion_overrides(args))  # bad values fail here, before any work
    sources = parse_face_map(args.face_map) if args.face_map else None
    source = None if sources and args.source == "-" else args.source
    if args.detect_every is not None and args.detect_every < 1:
        raise ConfigError(f"--detect-every: must be >= 1, got {args.detect_every}")
    if args.work_face is not None and not (args.work_face == 0 or 64 <= args.work_face <= 4096):
        raise ConfigError(f"--work-face: must be 0 (off) or 64-4096 pixels, got {args.work_face}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {args.workers}")
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality: must be 1-100, got {args.quality}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ConfigError(f"--end ({args.end:g} s) must be after --start ({args.start:g} s)")
    _check_outputs(args)
    if args.preview_at is not None:
        if Path(args.output).suffix.lower() != ".png":
            raise InputError(f"{args.output}: --preview-at writes a PNG; name the output .png", "bad_output")
    else:
        check_output(args.output, args.overwrite, args.codec)
    info = probe(args.video)  # not a video: exit 3 before the models load
    _check_times(args, info.duration)
    parallel = bool(args.ray) or (args.workers or 1) > 1
    if args.ray:  # a missing Ray is reported before any work
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--ray needs Ray, which is not installed: pip install 'facefuse[ray]'")
    from .pipeline import Fuser

    fuser = None if parallel and args.preview_at is None else Fuser(settings)  # workers load their own
    if args.preview_at is not None:
        from .video.fuse import preview_frame

        image = preview_frame(fuser, source, args.video, args.preview_at, sources=sources, fusion_params=params)
        write_image(args.output, image, overwrite=args.overwrite)
        print(f"{args.output}  frame at {args.preview_at:g} s")
        return EXIT_OK
    options = dict(start=args.start, end=args.end, quality=DEFAULT_QUALITY if args.quality is None else args.quality,
                   codec=args.codec, overwrite=args.overwrite, sources=sources, fusion_params=params)
    if args.detect_every:
        options["detect_every"] = args.detect_every
    if args.work_face is not None:
        options["work_face_px"] = args.work_face
    bar, update = _progress_bar(info.frames)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    try:
        if parallel:
            from .video.parallel import fuse_video_parallel

            report = fuse_video_parallel(settings, source, args.video, args.output, workers=args.workers,
                                         ray_address=args.ray, progress=update, **options)
        else:
            report = fuser.fuse_video(source, args.video, args.output, progress=update, **options)
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    if args.report:
        write_bytes_atomic(args.report, json.dumps(report, indent=2).encode(), overwrite=args.overwrite)
    print(f"{args.output}  {report['output_size'][0]}x{report['output_size'][1]}  {report['frames']} frames, "
          f"face fused in {report['frames_with_fused_face']}  {report['seconds']:.1f} s ({report['fps']:.1f} fps)"
          + (f"  warning: {report['lost']}" if report["lost"] else ""))
    return EXIT_OK


def _interrupt(signum, frame) -> None:
    raise Terminated
