"""`facefuse bench`: measured speed and memory of the fusion path, beside a codec floor.

What it measures (see BENCHMARKS.md for results and how to read them):
- per output resolution, warm runs (one Fuser, first run discarded): the median and spread
  of every stage (decode, detect, roi, engine, blend, paste, encode) and of the total, and
  in the same loop the *codec floor*: OpenCV decoding the target, resizing it to the output
  size and encoding JPEG q95 -- what any tool writing that file pays at least;
- peak RSS per resolution, each in a fresh process (`python -m facefuse.bench --child`);
- cold start: a fresh `facefuse fuse` process from launch to the written file;
- scaling: the same face at every resolution, and the same output size with a small and a
  large face, to show the work follows the face's region (ROI), not the frame;
- `--compare`: a naive OpenCV baseline (aligned source + seamlessClone) on the same pair;
- `--long N`: N fusions in one process, with the RSS curve.

`facefuse bench detect` runs the detection benchmark of `facefuse.detect_eval` instead.

This module is imported by every CLI call (it registers the subcommand), so everything
heavy is imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .cli import ROOT, SAMPLES, command, load_settings
from .errors import ConfigError, EngineError, InputError, OutputExistsError
from .io import read_bytes

DEFAULT_SOURCE = SAMPLES / "source.jpg"
DEFAULT_TARGET = SAMPLES / "large_target.jpg"  # 4352 x 2903
DEFAULT_RESOLUTIONS = "512,1024,2048,4096"
DEFAULT_CATALOG = ROOT.parent / "shared" / "faces" / "catalog.tsv"
SHARED_FACES = ROOT.parent / "shared" / "faces"
# small face in a wide stage shot (face ~240 px of 2048) vs a close portrait (~640 px of 2048)
SCALING_SMALL = ("deepface_img57.jpg", "small face, wide shot")
SCALING_LARGE = ("deepface_img4.jpg", "large face, close portrait")
STAGES = ("decode", "detect", "roi", "engine", "blend", "paste", "encode")
FACE_STAGES = ("roi", "engine", "blend")  # work that happens inside the ROI only
FRAME_STAGES = ("decode", "paste", "encode")  # work on the whole frame (paste = resize + copy)
JPEG_QUALITY = 95
COLD_RESOLUTION = 1024
GOALS = {  # from issue 4, on a 2-core CPU
    "total_s": {512: 0.15, 1024: 0.25, 2048: 0.5, 4096: 1.2},
    "ratio": {2048: 4.0, 4096: 3.0},
    "peak_rss_mb": {4096: 1200.0},
    "cold_s": 3.0,
    "long_growth_mb": 50.0,
}


# -- command line ---------------------------------------------------------------------
@command("bench")
def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure speed and memory (or `bench detect`: detection quality)",
                       description="Fusion benchmark: per-stage times, codec floor, peak RSS, cold start, "
                                   "scaling. `facefuse bench detect` runs the detection benchmark.")
    p.add_argument("what", nargs="?", choices=["fusion", "detect"], default="fusion",
                   help="fusion (default) or detect")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="source photo (default examples/source.jpg)")
    p.add_argument("--target", default=str(DEFAULT_TARGET), help="target photo (default examples/large_target.jpg, 4352x2903)")
    p.add_argument("--resolutions", default=DEFAULT_RESOLUTIONS, help=f"output long sides (default {DEFAULT_RESOLUTIONS})")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per resolution, after one discarded warm-up (default 5)")
    p.add_argument("--json", help="write every number to this JSON file")
    p.add_argument("--plot", help="write a PNG plot (stacked stage bars per resolution, floor marked)")
    p.add_argument("--compare", action="store_true", help="also run a naive OpenCV seamlessClone baseline")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-start (new process) measurement")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--no-scaling", action="store_true", help="skip the small-face vs large-face runs")
    p.add_argument("--scaling-size", type=int, default=2048, help="output long side of the small/large face runs (default 2048)")
    p.add_argument("--long", type=int, default=0, metavar="N", help="N consecutive fusions in one process, RSS sampled")
    p.add_argument("--long-resolution", type=int, default=1024, help="output long side of the --long run (default 1024)")
    p.add_argument("--mode", choices=["normal", "blend", "overlay"], help="fusion mode (default from config)")
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present)")
    p.add_argument("--engine", help="fusion engine (default classical)")
    p.add_argument("--overwrite", action="store_true", help="replace --json / --plot files that exist")
    p.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="bench detect: catalog.tsv of the face set")
    p.add_argument("--images-dir", help="bench detect: folder of the images (default: the catalog's folder)")
    p.add_argument("--threshold", type=float, help="bench detect: detection confidence 0-1 (default from config, 0.6)")
    p.add_argument("--no-large", action="store_true", help="bench detect: skip the 12-36 Mpx built scenes (about 7 s)")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    if args.what == "detect":
        args.images_dir = args.images_dir or str(Path(args.catalog).parent)
        try:
            from .detect_eval import run_detect_bench
        except ModuleNotFoundError as exc:
            if exc.name != "facefuse.detect_eval":
                raise
            raise ConfigError("bench detect: the detection benchmark (facefuse.detect_eval) is not in this build") from exc
        return run_detect_bench(args)

    resolutions = parse_resolutions(args.resolutions)
    if args.repeat < 1:
        raise ConfigError(f"--repeat: must be at least 1, got {args.repeat}")
    if args.long < 0:
        raise ConfigError(f"--long: must be 0 or more, got {args.long}")
    for name in ("scaling_size", "long_resolution"):
        _check_resolution(getattr(args, name), "--" + name.replace("_", "-"))
    for out in (args.json, args.plot):  # fail before minutes of work, not after
        _check_output(out, args.overwrite)
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise InputError(f"{args.plot}: the plot is written as PNG; use a .png name")

    results = run_all(args, resolutions)
    print(markdown(results))
    if args.json:
        from .io import write_bytes_atomic

        write_bytes_atomic(args.json, json.dumps(results, indent=1).encode(), overwrite=args.overwrite)
    if args.plot:
        plot(results, args.plot, overwrite=args.overwrite)
    return 0


def parse_resolutions(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--resolutions: expected comma-separated pixel sizes like 512,1024, got {text!r}")
    if not values:
        raise ConfigError("--resolutions: give at least one size")
    for v in values:
        _check_resolution(v, "--resolutions")
    return values


def _check_resolution(value: int, flag: str) -> None:
    if not 64 <= value <= 8192:
        raise ConfigError(f"{flag}: output sizes must be 64-8192 px, got {value}")


def _check_output(path: str | None, overwrite: bool) -> None:
    if not path:
        return
    p = Path(path)
    if not (p.parent if str(p.parent) else Path(".")).is_dir():
        raise InputError(f"{path}: output folder does not exist")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")


# -- measurement helpers --------------------------------------------------------------
def summary(samples: list[float]) -> dict:
    """Median and spread of a list of seconds (or MB); keeps the samples."""
    import numpy as np

    a = np.asarray(samples, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "min": float(a.min()), "max": float(a.max()),
            "q1": float(q1), "q3": float(q3), "n": int(a.size), "samples": [float(v) for v in a]}


def rss_mb() -> float:
    """Resident set size of this process now, from /proc/self/statm (MB = 10^6 bytes)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):  # not Linux: fall back to the peak
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak RSS of this process (MB). Linux: VmHWM of /proc/self/status, the high-water
    mark of this process's own memory. Not ru_maxrss: Linux carries ru_maxrss over exec, so
    a child started by a big process (subprocess uses vfork) reports its parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * (1 if sys.platform == "darwin" else 1024) / 1e6


def one_fusion(fuser, params, source_bytes: bytes, target_bytes: bytes, max_pixels: int):
    """A warm fusion as a server or batch runs it, timed: decode the target (at the
    reduced JPEG scale the output allows), fuse with the source (decoded and analysed once,
    then taken from the Fuser's cache: its bytes are hashed each call), encode JPEG q95.
    Returns (stage seconds incl. total, FusionResult, encoded bytes)."""
    from .io import encode_image, read_image

    t0 = time.perf_counter()
    target = read_image(target_bytes, max_pixels=max_pixels, reduce_to=fuser.decode_size_for(params))
    decode_s = time.perf_counter() - t0
    result = fuser.fuse_detailed(source_bytes, target, params)
    t1 = time.perf_counter()
    data = encode_image(result.image, "JPEG", quality=JPEG_QUALITY)
    encode_s = time.perf_counter() - t1
    times = {s: float(result.timings.get(s, 0.0)) for s in STAGES}
    times["decode"] += decode_s  # the pipeline's own decode is ~0: it gets arrays
    times["encode"] = encode_s
    times["total"] = sum(times[s] for s in STAGES)
    return times, result, data


def floor_interpolation(scale: float) -> int:
    """The cheapest OpenCV interpolation without visible loss: INTER_AREA only where a
    shrink is strong enough to alias (below 1/2), bilinear for milder shrinks (INTER_AREA is
    several times slower there and no better), bicubic to enlarge."""
    import cv2

    if scale < 0.5:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR if scale < 1 else cv2.INTER_CUBIC


def codec_floor(target_bytes: bytes, size: tuple[int, int]) -> dict:
    """OpenCV: decode the target, resize to `size` (w, h), encode JPEG q95 4:4:4 (the same
    quality and chroma sampling facefuse writes). Seconds per step and total."""
    import cv2
    import numpy as np

    t0 = time.perf_counter()
    img = cv2.imdecode(np.frombuffer(target_bytes, np.uint8), cv2.IMREAD_COLOR)
    t1 = time.perf_counter()
    h, w = img.shape[:2]
    if (w, h) != tuple(size):
        img = cv2.resize(img, tuple(size), interpolation=floor_interpolation(size[0] / w))
    t2 = time.perf_counter()
    ok, _ = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                                       cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    t3 = time.perf_counter()
    if not ok:
        raise EngineError("codec floor: OpenCV could not encode JPEG")
    return {"decode": t1 - t0, "resize": t2 - t1, "encode": t3 - t2, "total": t3 - t0}


def measure_resolution(fuser, params, source_bytes, target_bytes, repeat, max_pixels, tick) -> dict:
    """Warm runs at one resolution: one discarded run, then `repeat` timed fusion runs,
    each followed by a codec-floor run (interleaved, so load changes hit both alike)."""
    times, result, data = one_fusion(fuser, params, source_bytes, target_bytes, max_pixels)
    h, w = result.image.shape[:2]
    codec_floor(target_bytes, (w, h))
    tick()
    runs, floors = [], []
    for _ in range(repeat):
        times, result, data = one_fusion(fuser, params, source_bytes, target_bytes, max_pixels)
        runs.append(times)
        floors.append(codec_floor(target_bytes, (w, h)))
        tick()
    face = result.faces[0]
    stages = {s: summary([r[s] for r in runs]) for s in (*STAGES, "total")}
    floor = {k: summary([f[k] for f in floors]) for k in ("decode", "resize", "encode", "total")}
    ratios = [r["total"] / f["total"] for r, f in zip(runs, floors)]
    return {
        "output_size": [w, h],
        "frame_mpx": w * h / 1e6,
        "roi_mpx": face.roi.width * face.roi.height / 1e6,
        "roi_size": [face.roi.width, face.roi.height],
        "face_px": face.face.size,
        "faces_fused": len(result.faces),
        "output_bytes": len(data),
        "stages": stages,
        "floor": floor,
        "ratio": {"median": stages["total"]["median"] / floor["total"]["median"], "per_run": summary(ratios)},
        "face_work_s": sum(stages[s]["median"] for s in FACE_STAGES),
        "frame_work_s": sum(stages[s]["median"] for s in FRAME_STAGES),
    }


def measure_source_prep(fuser, source_bytes: bytes, repeat: int, max_pixels: int) -> dict:
    """Decode + detect of the source alone: what a caller that reuses a prepared source
    (`Fuser.prepare_source`) saves on every fusion."""
    from .io import read_image

    fuser.prepare_source(read_image(source_bytes, max_pixels=max_pixels))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fuser.prepare_source(read_image(source_bytes, max_pixels=max_pixels))
        samples.append(time.perf_counter() - t0)
    return summary(samples)


# -- subprocess measurements ----------------------------------------------------------
def _child_cmd(args, resolution: int) -> list[str]:
    cmd = [sys.executable, "-m", "facefuse.bench", "--child", "--source", str(args.source),
           "--target", str(args.target), "--resolution", str(resolution)]
    if args.config:
        cmd += ["--config", args.config]
    if args.engine:
        cmd += ["--engine", args.engine]
    if args.mode:
        cmd += ["--mode", args.mode]
    return cmd


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return env


def measure_peak_rss(args, resolution: int) -> dict:
    """One fusion at `resolution` in a fresh process; its peak RSS and RSS milestones."""
    proc = subprocess.run(_child_cmd(args, resolution), capture_output=True, text=True, env=_env(), timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineError(f"bench: RSS child at {resolution} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(argv: list[str]) -> int:
    """`python -m facefuse.bench --child ...`: one fusion, then print RSS as JSON."""
    p = argparse.ArgumentParser(prog="python -m facefuse.bench")
    p.add_argument("--child", action="store_true", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--config")
    p.add_argument("--engine")
    p.add_argument("--mode")
    a = p.parse_args(argv)
    baseline = rss_mb()
    from .pipeline import Fuser

    fuser = Fuser(load_settings(a))
    after_load = rss_mb()
    overrides = {"resolution": a.resolution} | ({"mode": a.mode} if a.mode else {})
    params = fuser.params(**overrides)
    times, result, _ = one_fusion(fuser, params, read_bytes(a.source, a.source), read_bytes(a.target, a.target),
                                  fuser.settings.output.max_pixels)
    print(json.dumps({
        "resolution": a.resolution,
        "rss_start_mb": baseline,
        "rss_after_model_load_mb": after_load,
        "rss_end_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        "total_s": times["total"],
    }))
    return 0


def measure_cold_start(args, runs: int) -> dict:
    """`facefuse fuse` (one 1024 fusion) in a new process, launch to written file."""
    import statistics

    py_start = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env())
        py_start.append(time.perf_counter() - t0)
    records = []
    with tempfile.TemporaryDirectory(prefix="facefuse-bench-") as tmp:
        for i in range(runs):
            out, rep = Path(tmp) / f"cold{i}.jpg", Path(tmp) / f"cold{i}.json"
            cmd = [sys.executable, "-m", "facefuse", "fuse", str(args.source), str(args.target),
                   "-o", str(out), "--resolution", str(COLD_RESOLUTION), "--report", str(rep)]
            if args.config:
                cmd += ["--config", args.config]
            if args.engine:
                cmd += ["--engine", args.engine]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
            to_file = None
            while proc.poll() is None:
                if to_file is None and out.exists():  # written atomically: exists = complete
                    to_file = time.perf_counter() - t0
                time.sleep(0.005)
            to_exit = time.perf_counter() - t0
            _, err = proc.communicate()
            if proc.returncode != 0 or not out.exists():
                last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
                raise EngineError(f"bench: cold `facefuse fuse` failed (exit {proc.returncode}): {last}")
            if to_file is None:
                to_file = to_exit
            t = json.loads(rep.read_text())["timings_s"]
            work = sum(t.get(s, 0.0) for s in STAGES)
            records.append({
                "to_file_s": to_file, "to_exit_s": to_exit, "model_load_s": t.get("model_load", 0.0),
                "work_s": work, "timings_s": t,
                # interpreter start, imports, argument parsing, settings: everything else before the file
                "startup_and_imports_s": max(0.0, to_file - work - t.get("model_load", 0.0)),
            })
    med = lambda k: statistics.median(r[k] for r in records)
    return {
        "resolution": COLD_RESOLUTION,
        "runs": records,
        "to_file": summary([r["to_file_s"] for r in records]),
        "to_exit": summary([r["to_exit_s"] for r in records]),
        "python_start": summary(py_start),
        "model_load_s": med("model_load_s"),
        "work_s": med("work_s"),
        "startup_and_imports_s": med("startup_and_imports_s"),
        "imports_s": max(0.0, med("startup_and_imports_s") - statistics.median(py_start)),
    }


# -- scaling: small vs large face at one output size ----------------------------------
def scaling_targets(size: int) -> tuple[list[dict], str]:
    """Two targets of (about) the same frame at long side `size`: a small and a large face.

    From the shared face set when present; otherwise built from bundled photos (the
    portrait shrunk to a third, centred on a border-replicated canvas of the same size)."""
    import cv2
    import numpy as np

    def at_size(img):
        h, w = img.shape[:2]
        s = size / max(h, w)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)

    def to_jpeg(img_rgb):
        from .io import encode_image

        return encode_image(img_rgb, "JPEG", quality=JPEG_QUALITY)

    from .io import read_image

    small_p, large_p = SHARED_FACES / SCALING_SMALL[0], SHARED_FACES / SCALING_LARGE[0]
    if small_p.is_file() and large_p.is_file():
        note = f"shared face set: {SCALING_SMALL[0]} vs {SCALING_LARGE[0]}, each resized to long side {size}"
        pairs = [(SCALING_SMALL, read_image(small_p)), (SCALING_LARGE, read_image(large_p))]
    else:
        big = at_size(read_image(SAMPLES / "target.jpg"))
        h, w = big.shape[:2]
        little = cv2.resize(big, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
        top, left = (h - little.shape[0]) // 2, (w - little.shape[1]) // 2
        canvas = cv2.copyMakeBorder(little, top, h - little.shape[0] - top, left, w - little.shape[1] - left,
                                    cv2.BORDER_REPLICATE)
        note = (f"shared face set not found: examples/target.jpg at long side {size} vs the same photo shrunk "
                "to a third on a border-replicated canvas of the same size (bundled files only)")
        pairs = [(("target.jpg (1/3, padded)", "small face, synthetic canvas"), np.ascontiguousarray(canvas)),
                 (("target.jpg", "large face, portrait"), big)]
    out = []
    for (name, label), img in pairs:
        img = at_size(img)
        out.append({"name": name, "label": label, "bytes": to_jpeg(img)})
    return out, note


def measure_scaling(fuser, args, source_bytes, max_pixels, tick) -> dict:
    targets, note = scaling_targets(args.scaling_size)
    params = _params(fuser, args, args.scaling_size)
    rows = []
    for t in targets:
        m = measure_resolution(fuser, params, source_bytes, t["bytes"], args.repeat, max_pixels, tick)
        rows.append({"target": t["name"], "label": t["label"], **m})
    return {"size": args.scaling_size, "note": note, "targets": rows}


# -- naive baseline -------------------------------------------------------------------
def naive_fusion(fuser, source_bytes: bytes, target_bytes: bytes, resolution: int, max_pixels: int) -> dict:
    """What a short script would do: detect both faces, align the whole source to the
    target by a similarity on rigid landmarks (warpAffine of the full frame), and
    cv2.seamlessClone it inside the convex hull of the target's face mesh."""
    import cv2
    import numpy as np

    from . import mesh
    from .io import encode_image, read_image
    from .roi import output_size, resize_frame

    times = {}
    t = time.perf_counter()
    target = read_image(target_bytes, max_pixels=max_pixels)
    source = read_image(source_bytes, max_pixels=max_pixels)
    times["decode"], t = time.perf_counter() - t, time.perf_counter()
    s_faces = fuser.detect(source).faces
    t_faces = fuser.detect(target).faces
    if not s_faces or not t_faces:
        raise EngineError("bench --compare: no face found for the naive baseline")
    times["detect"], t = time.perf_counter() - t, time.perf_counter()
    w, h = output_size(target.shape[1], target.shape[0], resolution)
    frame = resize_frame(target, (w, h))
    t_lms = t_faces[0].landmarks * (w / target.shape[1])
    times["resize"], t = time.perf_counter() - t, time.perf_counter()
    m = mesh.similarity(s_faces[0].landmarks[mesh.RIGID], t_lms[mesh.RIGID])
    warped = cv2.warpAffine(source, m.astype(np.float32), (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    hull = cv2.convexHull(np.round(t_lms[: mesh.N_MESH]).astype(np.int32))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    mask[[0, 1, -2, -1], :] = 0  # seamlessClone fails on masks touching the border
    mask[:, [0, 1, -2, -1]] = 0
    times["warp"], t = time.perf_counter() - t, time.perf_counter()
    x, y, bw, bh = cv2.boundingRect(mask)
    out = cv2.seamlessClone(warped, frame, mask, (x + bw // 2, y + bh // 2), cv2.NORMAL_CLONE)
    times["clone"], t = time.perf_counter() - t, time.perf_counter()
    encode_image(out, "JPEG", quality=JPEG_QUALITY)
    times["encode"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return times


NAIVE_STAGES = ("decode", "detect", "resize", "warp", "clone", "encode")


def measure_naive(fuser, source_bytes, target_bytes, resolution, repeat, max_pixels, tick) -> dict:
    naive_fusion(fuser, source_bytes, target_bytes, resolution, max_pixels)
    runs = []
    for _ in range(repeat):
        runs.append(naive_fusion(fuser, source_bytes, target_bytes, resolution, max_pixels))
        tick()
    return {s: summary([r[s] for r in runs]) for s in (*NAIVE_STAGES, "total")}


# -- long run -------------------------------------------------------------------------
def measure_long(fuser, args, source_bytes, target_bytes, max_pixels, progress) -> dict:
    """N fusions in one process; RSS sampled about 100 times (after the first fusion,
    which allocates the lasting buffers, and then every N/100 fusions)."""
    import numpy as np

    params = _params(fuser, args, args.long_resolution)
    every = max(1, args.long // 100)
    curve = [[0, rss_mb()]]
    totals = []
    for i in range(1, args.long + 1):
        times, _, _ = one_fusion(fuser, params, source_bytes, target_bytes, max_pixels)
        totals.append(times["total"])
        if i == 1 or i % every == 0 or i == args.long:
            curve.append([i, rss_mb()])
        progress.update(1)
    after_first = curve[1][1]
    end = curve[-1][1]
    second_half = [(n, r) for n, r in curve[1:] if n >= args.long / 2]
    slope = 0.0
    if len(second_half) >= 3:
        n, r = np.array(second_half, dtype=np.float64).T
        slope = float(np.polyfit(n, r, 1)[0] * 1000)  # MB per 1000 fusions
    return {
        "fusions": args.long, "resolution": args.long_resolution, "sample_every": every,
        "rss_before_mb": curve[0][1], "rss_after_first_mb": after_first, "rss_end_mb": end,
        "rss_max_mb": max(r for _, r in curve), "growth_mb": end - after_first,
        "slope_second_half_mb_per_1000": slope, "curve": curve, "fusion_total": summary(totals),
    }


# -- the whole run --------------------------------------------------------------------
def _params(fuser, args, resolution):
    return fuser.params(resolution=resolution, **({"mode": args.mode} if args.mode else {}))


def machine_info() -> dict:
    import cv2
    import numpy as np

    try:
        git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, timeout=5).stdout
        commit = git("rev-parse", "--short", "HEAD").strip() or None
        # tracked files changed since that commit: the numbers are of this tree, not of the commit
        modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.SubprocessError):
        commit, modified = None, []
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(), "load_avg_at_start": load, "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
        "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(), "numpy": np.__version__,
        "git_commit": commit, "git_modified": modified, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def run_all(args, resolutions: list[int]) -> dict:
    from tqdm import tqdm

    from .pipeline import Fuser

    source_bytes, target_bytes = read_bytes(args.source, args.source), read_bytes(args.target, args.target)
    n_scaling = 0 if args.no_scaling else 2 * (args.repeat + 1)
    total_steps = (len(resolutions) * (args.repeat + 1) + 1 + n_scaling
                   + (len(resolutions) * args.repeat if args.compare else 0)
                   + (0 if args.no_rss else len(resolutions)) + (0 if args.no_cold else 1) + args.long)
    progress = tqdm(total=total_steps, desc="bench", unit="step", file=sys.stderr, mininterval=0.5)
    tick = lambda: progress.update(1)

    info = machine_info()
    t0 = time.perf_counter()
    fuser = Fuser(load_settings(args))
    model_load_s = time.perf_counter() - t0
    max_pixels = fuser.settings.output.max_pixels
    from .io import read_image

    tgt = read_image(target_bytes, max_pixels=max_pixels)
    results: dict = {
        "machine": info,
        "argv": list(sys.argv),
        "source": str(args.source), "target": str(args.target),
        "target_size": [int(tgt.shape[1]), int(tgt.shape[0])],
        "repeat": args.repeat, "jpeg_quality": JPEG_QUALITY,
        "params": _params(fuser, args, resolutions[0]).model_dump(),
        "model_load_s": model_load_s,
        "resolutions": [],
    }
    del tgt
    for r in resolutions:
        progress.set_description(f"bench {r}")
        m = measure_resolution(fuser, _params(fuser, args, r), source_bytes, target_bytes, args.repeat, max_pixels, tick)
        results["resolutions"].append({"resolution": r, **m})
    progress.set_description("bench source prep")
    results["source_prep"] = measure_source_prep(fuser, source_bytes, args.repeat, max_pixels)
    tick()
    if not args.no_scaling:
        progress.set_description("bench scaling")
        results["scaling"] = measure_scaling(fuser, args, source_bytes, max_pixels, tick)
    if args.compare:
        progress.set_description("bench naive")
        results["compare"] = [
            {"resolution": r, "naive": measure_naive(fuser, source_bytes, target_bytes, r, args.repeat, max_pixels, tick)}
            for r in resolutions]
    if args.long:
        progress.set_description(f"bench long x{args.long}")
        results["long_run"] = measure_long(fuser, args, source_bytes, target_bytes, max_pixels, progress)
    del fuser
    if not args.no_rss:
        for row in results["resolutions"]:
            progress.set_description(f"bench RSS {row['resolution']}")
            row["memory"] = measure_peak_rss(args, row["resolution"])
            tick()
    if not args.no_cold:
        progress.set_description("bench cold start")
        results["cold_start"] = measure_cold_start(args, runs=min(args.repeat, 3))
        tick()
    progress.close()
    results["scaling_fit"] = scaling_fit(results["resolutions"])
    results["goals"] = check_goals(results)
    return results


def scaling_fit(rows: list[dict]) -> dict | None:
    """Least-squares lines over the resolutions: face work against ROI area, frame work
    and the codec floor against frame area (seconds = fixed + per_mpx x Mpx)."""
    import numpy as np

    if len(rows) < 2:
        return None

    def line(x, y):
        per, fixed = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
        return {"fixed_s": float(fixed), "per_mpx_s": float(per)}

    return {
        "face_work_vs_roi": line([r["roi_mpx"] for r in rows], [r["face_work_s"] for r in rows]),
        "frame_work_vs_frame": line([r["frame_mpx"] for r in rows], [r["frame_work_s"] for r in rows]),
        "floor_vs_frame": line([r["frame_mpx"] for r in rows], [r["floor"]["total"]["median"] for r in rows]),
    }


def check_goals(results: dict) -> list[dict]:
    """Each goal of issue 4 that this run measured: goal, measured value, met."""
    out = []
    rows = {row["resolution"]: row for row in results["resolutions"]}
    for r, goal in GOALS["total_s"].items():
        if r in rows:
            v = rows[r]["stages"]["total"]["median"]
            out.append({"what": f"warm total at {r}", "goal": goal, "unit": "s", "measured": v, "met": v <= goal})
    for r, goal in GOALS["ratio"].items():
        if r in rows:
            v = rows[r]["ratio"]["median"]
            out.append({"what": f"total / codec floor at {r}", "goal": goal, "unit": "x", "measured": v, "met": v <= goal})
    for r, goal in GOALS["peak_rss_mb"].items():
        if r in rows and "memory" in rows[r]:
            v = rows[r]["memory"]["peak_rss_mb"]
            out.append({"what": f"peak RSS at {r}", "goal": goal, "unit": "MB", "measured": v, "met": v <= goal})
    if "cold_start" in results:
        v = results["cold_start"]["to_file"]["median"]
        out.append({"what": f"cold CLI, one {COLD_RESOLUTION} fusion", "goal": GOALS["cold_s"], "unit": "s",
                    "measured": v, "met": v <= GOALS["cold_s"]})
    if "long_run" in results:
        lr = results["long_run"]
        v = lr["growth_mb"]
        out.append({"what": f"RSS growth over {lr['fusions']} fusions", "goal": GOALS["long_growth_mb"], "unit": "MB",
                    "measured": v, "met": v < GOALS["long_growth_mb"], "op": "<",
                    "note": "" if lr["fusions"] >= 1000 else "the goal is stated for 1000 fusions"})
    return out


# -- output ---------------------------------------------------------------------------
def _s(v: float) -> str:
    return f"{v:.3f}"


def _spread(d: dict) -> str:
    return f"{d['median']:.3f} ({d['min']:.3f}–{d['max']:.3f})"


def markdown(res: dict) -> str:
    """The report as Markdown, with the section headings BENCHMARKS.md uses."""
    m = res["machine"]
    L = [f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}, OpenCV {m['opencv']} "
         f"({m['opencv_threads']} threads), load average at start {m['load_avg_at_start']}; commit {m['git_commit']}"
         f"{' + uncommitted changes to ' + ', '.join(m['git_modified']) if m.get('git_modified') else ''}, {m['date']}.",
         f"Pair: {res['source']} onto {res['target']} ({res['target_size'][0]}x{res['target_size'][1]}); "
         f"{res['repeat']} warm runs per row after one discarded; seconds, median (min–max). "
         f"Mode {res['params']['mode']}, smoothing {res['params']['smoothing']}.", "",
         "## Fusion speed and memory", "",
         "| output | frame Mpx | ROI Mpx | " + " | ".join(STAGES) + " | **total** | codec floor | total / floor | peak RSS MB |",
         "|---" * (len(STAGES) + 7) + "|"]
    for row in res["resolutions"]:
        st = row["stages"]
        rss = f"{row['memory']['peak_rss_mb']:.0f}" if "memory" in row else "–"
        L.append(f"| {row['output_size'][0]}x{row['output_size'][1]} | {row['frame_mpx']:.2f} | {row['roi_mpx']:.2f} | "
                 + " | ".join(_s(st[s]["median"]) for s in STAGES)
                 + f" | **{_spread(st['total'])}** | {_s(row['floor']['total']['median'])} | {row['ratio']['median']:.1f}x | {rss} |")
    sp = res["source_prep"]["median"]
    L += ["", f"Source decode + detect alone: {sp:.3f} s (a caller that prepares the source once, "
          "e.g. batch, saves this on every fusion). Codec floor = OpenCV imdecode + resize (INTER_AREA below 1/2, "
          f"INTER_LINEAR from 1/2 to 1, INTER_CUBIC up) + imencode JPEG q{JPEG_QUALITY} 4:4:4, the same file facefuse writes."]
    if any("memory" in row for row in res["resolutions"]):
        L += ["", "| output | RSS after imports MB | after model load MB | peak MB |", "|---|---|---|---|"]
        for row in res["resolutions"]:
            if "memory" in row:
                mm = row["memory"]
                L.append(f"| {row['resolution']} | {mm['rss_start_mb']:.0f} | {mm['rss_after_model_load_mb']:.0f} | {mm['peak_rss_mb']:.0f} |")
    if res.get("goals"):
        L += ["", "Goals (issue 4):", "", "| goal | target | measured | met |", "|---|---|---|---|"]
        for g in res["goals"]:
            note = f" ({g['note']})" if g.get("note") else ""
            L.append(f"| {g['what']} | {g.get('op', '≤')} {g['goal']:g} {g['unit']} | {g['measured']:.3g} {g['unit']}{note} | {'yes' if g['met'] else '**no**'} |")
    if "cold_start" in res:
        c = res["cold_start"]
        L += ["", "## Cold start", "",
              f"`facefuse fuse` in a new process, one {c['resolution']} fusion, {len(c['runs'])} run(s):", "",
              "| launch → file written | launch → exit | python start | imports + setup | model load | fusion work (decode…encode) |",
              "|---|---|---|---|---|---|",
              f"| {_spread(c['to_file'])} | {_s(c['to_exit']['median'])} | {_s(c['python_start']['median'])} | "
              f"{_s(c['imports_s'])} | {_s(c['model_load_s'])} | {_s(c['work_s'])} |"]
    L += ["", "## Scaling", "", "Same face, every output size (from the table above):", "",
          "| output | frame Mpx | ROI Mpx | face px | roi+engine+blend s | per ROI Mpx | decode+paste+encode s | codec floor s |",
          "|---|---|---|---|---|---|---|---|"]
    for row in res["resolutions"]:
        L.append(f"| {row['resolution']} | {row['frame_mpx']:.2f} | {row['roi_mpx']:.2f} | {row['face_px']:.0f} | "
                 f"{_s(row['face_work_s'])} | {row['face_work_s'] / max(row['roi_mpx'], 1e-6):.3f} | "
                 f"{_s(row['frame_work_s'])} | {_s(row['floor']['total']['median'])} |")
    fit = res.get("scaling_fit")
    if fit:
        f, g, c = fit["face_work_vs_roi"], fit["frame_work_vs_frame"], fit["floor_vs_frame"]
        L += ["", f"Fitted lines: roi+engine+blend ≈ {f['fixed_s']:.3f} s {f['per_mpx_s']:+.3f} s per ROI Mpx; "
              f"decode+paste+encode ≈ {g['fixed_s']:.3f} s {g['per_mpx_s']:+.3f} s per output Mpx "
              f"(codec floor: {c['fixed_s']:.3f} s {c['per_mpx_s']:+.3f} s per output Mpx; the fixed part is "
              "decoding the input, the same at every output size)."]
    if "scaling" in res:
        sc = res["scaling"]
        L += ["", f"Same output size ({sc['size']}), small vs large face — {sc['note']}:", "",
              "| target | frame | face px | ROI Mpx | detect | roi+engine+blend | decode+paste+encode | total | codec floor |",
              "|---|---|---|---|---|---|---|---|---|"]
        for row in sc["targets"]:
            L.append(f"| {row['target']} ({row['label']}) | {row['output_size'][0]}x{row['output_size'][1]} | "
                     f"{row['face_px']:.0f} | {row['roi_mpx']:.2f} | {_s(row['stages']['detect']['median'])} | "
                     f"{_s(row['face_work_s'])} | {_s(row['frame_work_s'])} | {_s(row['stages']['total']['median'])} | "
                     f"{_s(row['floor']['total']['median'])} |")
    if "compare" in res:
        L += ["", "## Naive baseline (--compare)", "",
              "Naive = detect both, warpAffine the whole source by a similarity on rigid landmarks, "
              "cv2.seamlessClone in the convex hull of the target mesh.", "",
              "| output | facefuse total | naive total | naive: " + " | ".join(NAIVE_STAGES) + " |",
              "|---" * (3 + len(NAIVE_STAGES)) + "|"]
        rows = {row["resolution"]: row for row in res["resolutions"]}
        for c in res["compare"]:
            n = c["naive"]
            L.append(f"| {c['resolution']} | {_s(rows[c['resolution']]['stages']['total']['median'])} | "
                     f"{_s(n['total']['median'])} | " + " | ".join(_s(n[s]["median"]) for s in NAIVE_STAGES) + " |")
    if "long_run" in res:
        lr = res["long_run"]
        pts = lr["curve"]
        pick = [pts[0], pts[1]] + [pts[i] for i in range(2, len(pts), max(1, (len(pts) - 2) // 8))] + [pts[-1]]
        seen, curve = set(), []
        for n, r in pick:
            if n not in seen:
                seen.add(n)
                curve.append(f"{n}: {r:.0f}")
        L += ["", "## Long run (RSS)", "",
              f"{lr['fusions']} fusions at {lr['resolution']} in one process (median {lr['fusion_total']['median']:.3f} s each): "
              f"RSS {lr['rss_before_mb']:.0f} MB before, {lr['rss_after_first_mb']:.0f} MB after the first, "
              f"{lr['rss_end_mb']:.0f} MB at the end (max {lr['rss_max_mb']:.0f}); growth {lr['growth_mb']:+.1f} MB, "
              f"second-half slope {lr['slope_second_half_mb_per_1000']:+.1f} MB per 1000 fusions.", "",
              "RSS curve (fusions: MB): " + ", ".join(curve)]
    return "\n".join(L)


STAGE_COLOURS = {"decode": "#8da0cb", "detect": "#fc8d62", "roi": "#b3b3b3", "engine": "#66c2a5",
                 "blend": "#a6d854", "paste": "#e78ac3", "encode": "#ffd92f"}


def plot(res: dict, path: str, overwrite: bool = False) -> None:
    """Stacked stage bars per resolution with the codec floor and goal marked; the
    small/large face comparison and the long-run RSS curve when measured."""
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import write_bytes_atomic

    panels = 1 + ("scaling" in res) + ("long_run" in res)
    widths = [2.2] + [1.0] * (panels - 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 + 3.6 * (panels - 1), 4.2), gridspec_kw={"width_ratios": widths})
    axes = list(axes) if panels > 1 else [axes]
    ax = axes[0]
    rows = res["resolutions"]
    x = list(range(len(rows)))
    width = 0.38 if "compare" in res else 0.6
    bottom = [0.0] * len(rows)
    for s in STAGES:
        vals = [r["stages"][s]["median"] for r in rows]
        ax.bar([i - (width / 2 if "compare" in res else 0) for i in x], vals, width, bottom=bottom,
               color=STAGE_COLOURS[s], label=s, edgecolor="white", linewidth=0.3)
        bottom = [b + v for b, v in zip(bottom, vals)]
    xs = [i - (width / 2 if "compare" in res else 0) for i in x]
    for i, r in enumerate(rows):
        fl = r["floor"]["total"]["median"]
        ax.hlines(fl, xs[i] - width / 2, xs[i] + width / 2, colors="black", linewidth=2,
                  label="codec floor" if i == 0 else None)
        goal = GOALS["total_s"].get(r["resolution"])
        if goal:
            ax.hlines(goal, xs[i] - width / 2, xs[i] + width / 2, colors="red", linestyles="--", linewidth=1.2,
                      label="goal" if i == 0 else None)
        ax.text(xs[i], bottom[i], f"{r['stages']['total']['median']:.2f}s\n{r['ratio']['median']:.1f}x",
                ha="center", va="bottom", fontsize=7)
    if "compare" in res:
        naive = {c["resolution"]: c["naive"]["total"]["median"] for c in res["compare"]}
        ax.bar([i + width / 2 for i in x], [naive.get(r["resolution"], 0) for r in rows], width,
               color="none", edgecolor="#555555", hatch="//", label="naive seamlessClone")
    ax.set_xticks(x, [f"{r['resolution']}" for r in rows])
    ax.set_xlabel("output long side (px)")
    ax.set_ylabel("seconds (stage medians, warm)")
    ax.set_title(f"facefuse fusion, {res['machine']['cpus']} CPUs", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    k = 1
    if "scaling" in res:
        ax2 = axes[k]
        k += 1
        sc = res["scaling"]["targets"]
        labels = [f"{t['label']}\nROI {t['roi_mpx']:.2f} Mpx" for t in sc]
        bottom = [0.0] * len(sc)
        for s in STAGES:
            vals = [t["stages"][s]["median"] for t in sc]
            ax2.bar(range(len(sc)), vals, 0.6, bottom=bottom, color=STAGE_COLOURS[s], edgecolor="white", linewidth=0.3)
            bottom = [b + v for b, v in zip(bottom, vals)]
        for i, t in enumerate(sc):
            ax2.hlines(t["floor"]["total"]["median"], i - 0.3, i + 0.3, colors="black", linewidth=2)
        ax2.set_xticks(range(len(sc)), labels, fontsize=7)
        ax2.set_title(f"same output ({res['scaling']['size']}), small vs large face", fontsize=9)
    if "long_run" in res:
        ax3 = axes[k]
        lr = res["long_run"]
        n, r = zip(*lr["curve"])
        ax3.plot(n, r, color="#1f78b4", linewidth=1.2)
        ax3.set_xlabel("fusions")
        ax3.set_ylabel("RSS (MB)")
        ax3.set_title(f"RSS over {lr['fusions']} fusions at {lr['resolution']}", fontsize=9)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)


if __name__ == "__main__":
    if "--child" in sys.argv[1:]:
        sys.exit(child_main(sys.argv[1:]))
    from .cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
