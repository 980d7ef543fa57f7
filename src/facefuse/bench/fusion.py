"""`facefuse bench fusion`: measured speed and memory of the fusion path, beside a codec floor.

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

Imported by every CLI call (through the bench package's parser), so everything heavy is
imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..commands import SAMPLES, load_settings
from ..errors import ConfigError, EngineError, InputError, OutputExistsError
from ..io import read_bytes
from .machine import machine_info

DEFAULT_SOURCE = SAMPLES / "source.jpg"
DEFAULT_TARGET = SAMPLES / "large_target.jpg"  # 4352 x 2903
DEFAULT_RESOLUTIONS = "512,1024,2048,4096"
DEFAULT_CATALOG = SAMPLES / "catalog.tsv"  # the bundled photos; BENCHMARKS.md uses ../shared/faces
STAGES = ("decode", "detect", "roi", "engine", "blend", "paste", "encode")
FACE_STAGES = ("roi", "engine", "blend")  # work that happens inside the ROI only
FRAME_STAGES = ("decode", "paste", "encode")  # work on the whole frame (paste = resize + copy)
JPEG_QUALITY = 95
COLD_RESOLUTION = 1024
GOALS = {  # the project's own goals on a 2-core CPU (shown with --goals, as in BENCHMARKS.md)
    "total_s": {512: 0.15, 1024: 0.25, 2048: 0.5, 4096: 1.2},
    "ratio": {2048: 4.0, 4096: 3.0},
    "peak_rss_mb": {4096: 1200.0},
    "cold_s": 3.0,
    "long_growth_mb": 50.0,
}


def parse_resolutions(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--resolutions: expected comma-separated pixel sizes like 512,1024, got {text!r}") from None
    if not values:
        raise ConfigError("--resolutions: give at least one size")
    for v in values:
        check_resolution(v, "--resolutions")
    return values


def check_resolution(value: int, flag: str) -> None:
    if not 64 <= value <= 8192:
        raise ConfigError(f"{flag}: output sizes must be 64-8192 px, got {value}")


def check_output(path: str | None, overwrite: bool) -> None:
    if not path:
        return
    p = Path(path)
    if not (p.parent if str(p.parent) else Path(".")).is_dir():
        raise InputError(f"{path}: output folder does not exist")
    if p.exists() and not overwrite:
        raise OutputExistsError(path)


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
    """A warm fusion as a server or batch runs it, timed: `Fuser.fuse_encoded` from the
    target's bytes (decoded at the reduced JPEG scale the output allows) to JPEG q95, the
    source decoded and analysed once, then taken from the Fuser's cache (its bytes are
    hashed each call). Returns (stage seconds incl. total, FusionResult, encoded bytes)."""
    fused = fuser.fuse_encoded(source_bytes, target_bytes, params, "JPEG", JPEG_QUALITY)
    times = {s: float(fused.timings.get(s, 0.0)) for s in STAGES}
    times["total"] = fused.seconds
    return times, fused.result, fused.data


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
    ratios = [r["total"] / f["total"] for r, f in zip(runs, floors, strict=True)]
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
    from ..io import read_image

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
    from ..pipeline import Fuser

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
    def med(k):
        return statistics.median(r[k] for r in records)
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
def scaling_targets(size: int, photos: list[str] | None = None) -> tuple[list[dict], str]:
    """Two targets of (about) the same frame at long side `size`: a small and a large face.

    `photos` (--scaling-photos SMALL LARGE) when given; otherwise built from the bundled
    portrait (shrunk to a third, centred on a border-replicated canvas of the same size)."""
    import cv2
    import numpy as np

    def at_size(img):
        h, w = img.shape[:2]
        s = size / max(h, w)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)

    def to_jpeg(img_rgb):
        from ..io import encode_image

        return encode_image(img_rgb, "JPEG", quality=JPEG_QUALITY)

    from ..io import read_image

    if photos:
        small_p, large_p = Path(photos[0]), Path(photos[1])
        note = f"{small_p.name} vs {large_p.name}, each resized to long side {size}"
        pairs = [((small_p.name, "small face"), read_image(small_p)), ((large_p.name, "large face"), read_image(large_p))]
    else:
        big = at_size(read_image(SAMPLES / "target.jpg"))
        h, w = big.shape[:2]
        little = cv2.resize(big, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
        top, left = (h - little.shape[0]) // 2, (w - little.shape[1]) // 2
        canvas = cv2.copyMakeBorder(little, top, h - little.shape[0] - top, left, w - little.shape[1] - left,
                                    cv2.BORDER_REPLICATE)
        note = (f"bundled photos: target.jpg at long side {size} vs the same photo shrunk "
                "to a third on a border-replicated canvas of the same size")
        pairs = [(("target.jpg (1/3, padded)", "small face, synthetic canvas"), np.ascontiguousarray(canvas)),
                 (("target.jpg", "large face, portrait"), big)]
    out = []
    for (name, label), img in pairs:
        img = at_size(img)
        out.append({"name": name, "label": label, "bytes": to_jpeg(img)})
    return out, note


def measure_scaling(fuser, args, source_bytes, max_pixels, tick) -> dict:
    targets, note = scaling_targets(args.scaling_size, args.scaling_photos)
    params = _params(fuser, args, args.scaling_size)
    rows = []
    for t in targets:
        m = measure_resolution(fuser, params, source_bytes, t["bytes"], args.repeat, max_pixels, tick)
        rows.append({"target": t["name"], "label": t["label"], **m})
    return {"size": args.scaling_size, "note": note, "targets": rows}


# -- naive baseline -------------------------------------------------------------------
def naive_fusion(fuser, source_bytes: bytes, target_bytes: bytes, resolution: int, max_pixels: int) -> dict:
    """What a short script would do, built from the core's own steps (decode, detect, resize,
    encode) with only its paste its own: align the whole source to the target by a
    similarity on rigid landmarks (warpAffine of the full frame) and cv2.seamlessClone it
    inside the convex hull of the target's face mesh -- on the whole frame, not a region."""
    import cv2
    import numpy as np

    from .. import mesh
    from ..imaging import output_size, resize_frame
    from ..io import encode_image

    times = {}
    t = time.perf_counter()
    target = fuser.read(target_bytes, "target")
    source = fuser.read(source_bytes, "source")
    times["decode"], t = time.perf_counter() - t, time.perf_counter()
    s_faces = fuser.detect(source).faces
    t_faces = fuser.detect(target).faces
    if not s_faces or not t_faces:
        raise EngineError("bench --compare: no face found for the naive baseline")
    times["detect"], t = time.perf_counter() - t, time.perf_counter()
    w, h = output_size(target.shape[1], target.shape[0], resolution)
    frame = resize_frame(target, (w, h))
    t_lms = t_faces[0].scaled(w / target.shape[1]).landmarks
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


def run_all(args, resolutions: list[int]) -> dict:
    from tqdm import tqdm

    from ..pipeline import Fuser

    source_bytes, target_bytes = read_bytes(args.source, args.source), read_bytes(args.target, args.target)
    n_scaling = 0 if args.no_scaling else 2 * (args.repeat + 1)
    total_steps = (len(resolutions) * (args.repeat + 1) + 1 + n_scaling
                   + (len(resolutions) * args.repeat if args.compare else 0)
                   + (0 if args.no_rss else len(resolutions)) + (0 if args.no_cold else 1) + args.long)
    progress = tqdm(total=total_steps, desc="bench", unit="step", file=sys.stderr, mininterval=0.5)
    def tick():
        progress.update(1)

    info = machine_info()
    t0 = time.perf_counter()
    fuser = Fuser(load_settings(args))
    model_load_s = time.perf_counter() - t0
    max_pixels = fuser.settings.output.max_pixels
    from ..io import read_image

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
    if getattr(args, "goals", False):
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


