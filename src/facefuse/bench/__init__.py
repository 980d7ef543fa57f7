"""`facefuse bench`: speed and memory of the fusion path (`fusion`), detection quality (`detect`).

    fusion.py   per-stage times beside a codec floor, peak RSS, cold start, scaling, a baseline
    detect.py   detection on a catalog of photos (found, false faces, time per image)
    machine.py  the machine and commit a run measured
    report.py   Markdown and a PNG plot of a fusion run

Imported by every CLI call (for its parser), so nothing heavy at the top of any module here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, InputError
from .fusion import (
    DEFAULT_CATALOG,
    DEFAULT_RESOLUTIONS,
    DEFAULT_SOURCE,
    DEFAULT_TARGET,
    check_output,
    check_resolution,
    parse_resolutions,
    run_all,
)

QUICK_RESOLUTIONS, QUICK_REPEAT = "1024,2048", 2


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure speed and memory (or `bench detect`: detection quality)",
                       description="Fusion benchmark: per-stage times, codec floor, peak RSS, cold start, "
                                   "scaling. `facefuse bench detect` runs the detection benchmark.")
    p.add_argument("what", nargs="?", choices=["fusion", "detect", "video", "live"], default="fusion",
                   help="fusion (default), detect, video, or live (a clip as a camera through /api/v1/live)")
    p.add_argument("--clip", action="append", help="bench video: a clip (repeat for several; default: a 2-s 720p "
                   "clip made from the bundled target.jpg)")
    p.add_argument("--sizes", help="bench video: the clip's own size and/or short sides to scale it to (default "
                   "original,720,1080); bench live: camera sizes (default 640x480,1280x720)")
    p.add_argument("--clients", default="1,2", help="bench live: cameras at once, one run each (default 1,2)")
    p.add_argument("--seconds", type=float, default=20, help="bench live: measured seconds per run, after a 3-s "
                   "warm-up (default 20)")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="source photo (default the bundled source.jpg)")
    p.add_argument("--target", default=str(DEFAULT_TARGET), help="target photo (default the bundled large_target.jpg, 4352x2903)")
    p.add_argument("--resolutions", default=DEFAULT_RESOLUTIONS, help=f"output long sides (default {DEFAULT_RESOLUTIONS})")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per resolution, after one discarded warm-up (default 5)")
    p.add_argument("--json", help="write every number to this JSON file")
    p.add_argument("--plot", help="write a PNG plot (stacked stage bars per resolution, floor marked)")
    p.add_argument("--work-face", type=int, metavar="PX", help="bench video: fuse faces larger than PX at that size "
                   "(default: facefuse video's, 320; 0 = at full size)")
    p.add_argument("--compare", action="store_true", help="also run a naive OpenCV seamlessClone baseline")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-start (new process) measurement")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--no-scaling", action="store_true", help="skip the small-face vs large-face runs")
    p.add_argument("--scaling-size", type=int, default=2048, help="output long side of the small/large face runs (default 2048)")
    p.add_argument("--scaling-photos", nargs=2, metavar=("SMALL", "LARGE"), help="two photos of about the same frame, "
                   "a small face and a large one, for the scaling runs (default: the bundled target.jpg and the "
                   "same photo shrunk to a third on a canvas of its size)")
    p.add_argument("--long", type=int, default=0, metavar="N", help="N consecutive fusions in one process, RSS sampled")
    p.add_argument("--long-resolution", type=int, default=1024, help="output long side of the --long run (default 1024)")
    p.add_argument("--mode", choices=["normal", "blend", "overlay"], help="fusion mode (default from config)")
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present)")
    p.add_argument("--engine", help="fusion engine (default classical)")
    p.add_argument("--overwrite", action="store_true", help="replace --json / --plot files that exist")
    p.add_argument("--quick", action="store_true", help=f"a few seconds: {QUICK_RESOLUTIONS}, "
                   f"{QUICK_REPEAT} runs each, no memory, cold-start or scaling runs")
    p.add_argument("--goals", action="store_true", help="also list the project's speed / detection goals "
                   "(as BENCHMARKS.md does)")
    p.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="bench detect: catalog.tsv of a labelled face set "
                   "(default: the bundled sample photos' catalog.tsv)")
    p.add_argument("--images-dir", help="bench detect: folder of the images (default: the catalog's folder)")
    p.add_argument("--threshold", type=float, help="bench detect: detection confidence 0-1 (default from config, 0.6)")
    p.add_argument("--no-large", action="store_true", help="bench detect: skip the 12-36 Mpx built scenes (about 7 s)")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    if args.what == "detect":
        from .detect import run_detect_bench

        args.images_dir = args.images_dir or str(Path(args.catalog).parent)
        return run_detect_bench(args)

    if args.what == "video":
        return run_video_bench(args)
    if args.what == "live":
        return run_live_bench(args)
    if args.quick:
        args.resolutions, args.repeat = QUICK_RESOLUTIONS, QUICK_REPEAT
        args.no_cold = args.no_rss = args.no_scaling = True
    resolutions = parse_resolutions(args.resolutions)
    if args.repeat < 1:
        raise ConfigError(f"--repeat: must be at least 1, got {args.repeat}")
    if args.long < 0:
        raise ConfigError(f"--long: must be 0 or more, got {args.long}")
    for name in ("scaling_size", "long_resolution"):
        check_resolution(getattr(args, name), "--" + name.replace("_", "-"))
    for out in (args.json, args.plot):  # fail before minutes of work, not after
        check_output(out, args.overwrite)
    for photo in args.scaling_photos or ():
        if not Path(photo).is_file():
            raise InputError(f"--scaling-photos: {photo}: file not found")
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise InputError(f"{args.plot}: the plot is written as PNG; use a .png name")

    from .report import markdown, plot

    results = run_all(args, resolutions)
    print(markdown(results))
    if args.json:
        from ..io import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps(results, indent=1).encode(), overwrite=args.overwrite)
    if args.plot:
        plot(results, args.plot, overwrite=args.overwrite)
    return 0


def run_video_bench(args: argparse.Namespace) -> int:
    """Per clip and size: fps, stage times, the decode + encode floor of the same clip in
    the same run, the ratio to it, the flicker ratio."""
    import tempfile

    from ..commands import load_settings
    from ..pipeline import Fuser
    from .video import bench_clip, markdown as video_markdown, plot as plot_video, sample_clip

    for out in (args.json, args.plot):
        check_output(out, args.overwrite)
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise InputError(f"{args.plot}: the plot is written as PNG; use a .png name")
    if args.work_face is not None and not (args.work_face == 0 or 64 <= args.work_face <= 4096):
        raise ConfigError(f"--work-face: must be 0 (off) or 64-4096 pixels, got {args.work_face}")
    params = {} if args.work_face is None else {"work_face_px": args.work_face}
    try:
        sizes = tuple(None if s == "original" else int(s)
                      for s in (args.sizes or "original,720,1080").replace(" ", "").split(",") if s)
    except ValueError:
        raise ConfigError(f"--sizes: expected original and/or short sides like 720,1080, got {args.sizes!r}") from None
    if args.quick:
        sizes = sizes[:1]
    fuser = Fuser(load_settings(args))
    source = args.source
    results = []
    with tempfile.TemporaryDirectory(prefix="facefuse-bench-video-") as tmp:
        clips = args.clip or [str(sample_clip(Path(DEFAULT_TARGET).parent / "target.jpg", Path(tmp) / "sample.mp4"))]
        for clip in clips:
            res = bench_clip(fuser, source, clip, sizes=sizes, workdir=Path(tmp), **params)
            results.append(res)
            print(video_markdown(res))
    if args.json:
        from ..io import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps({"video": results}, indent=1).encode(), overwrite=args.overwrite)
    if args.plot:
        plot_video(results, args.plot, overwrite=args.overwrite)
    return 0


def run_live_bench(args: argparse.Namespace) -> int:
    """fps delivered, latency, dropped frames and CPU per camera size and client count."""
    import tempfile

    from .live import DEFAULT_SIZES, markdown as live_markdown, parse_sizes, run_live_bench as run_live
    from .video import sample_clip

    check_output(args.json, args.overwrite)
    sizes = parse_sizes(args.sizes or DEFAULT_SIZES)
    try:
        clients = [int(c) for c in args.clients.replace(" ", "").split(",") if c]
    except ValueError:
        raise ConfigError(f"--clients: expected counts like 1,2, got {args.clients!r}") from None
    if not clients or not all(1 <= c <= 16 for c in clients):
        raise ConfigError(f"--clients: each count must be 1-16, got {args.clients!r}")
    if not 1 <= args.seconds <= 3600:
        raise ConfigError(f"--seconds: must be 1-3600, got {args.seconds:g}")
    with tempfile.TemporaryDirectory(prefix="facefuse-bench-live-") as tmp:
        clip = (args.clip or [None])[0] or str(sample_clip(Path(DEFAULT_TARGET).parent / "target.jpg",
                                                           Path(tmp) / "sample.mp4"))
        results = run_live(sizes, clients, clip, args.source, args.seconds)
    print(live_markdown(results))
    if args.json:
        from ..io import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps({"live": results}, indent=1).encode(), overwrite=args.overwrite)
    return 0
