"""`facefuse bench detect`: how many faces of a labelled photo set the detector finds.

Over a catalog (default the bundled `facefuse/samples/catalog.tsv`; BENCHMARKS.md uses
`../shared/faces/catalog.tsv`: tab-separated, `#` comment lines first, then a header with at
least `file`, `n_faces`, `notes`), each image is read with `facefuse.io.read_image` and
searched by one `FaceDetector` with the settings' `max_side` and `tiles`, at the settings'
threshold (0.6 unless `--threshold` / `--config` says otherwise). Per image: faces found
against the catalog's `n_faces`, the candidates the detector dropped and why, its passes,
and the detection time (decoding not included).

Totals, overall and per kind:
- recall = faces found / faces counted, found capped per image at `n_faces` (a false face
  on one image cannot make up for a missed face on another);
- false faces = faces found on the no-face photos (`n_faces` == 0);
- extra faces = faces found beyond `n_faces` on the others;
- detection seconds per image and per megapixel (median, max).

Kinds: single portraits (`n_faces` == 1), groups (>= 2), small faces (`notes` says
`max_face_px` < 64; these are also in "groups" or "single"), no-face (0).
With --goals, the project's goals are printed beside the measured values.

The catalog has no photo over 13 Mpx, so "a 40-px face in a 36-Mpx photo" is measured on
built scenes (`small_face_scene`): a no-face photo of the catalog enlarged to 12, 24 and
36 Mpx with a catalog portrait pasted in, shrunk until its face is 40 px wide.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError, OutputExistsError

SMALL_FACE_PX = 64
KINDS = ("single", "group", "small", "none")
KIND_LABELS = {
    "single": "single portraits (n_faces = 1)",
    "group": "groups (n_faces >= 2)",
    "small": f"small faces (max_face_px < {SMALL_FACE_PX})",
    "none": "no-face photos (n_faces = 0)",
}
LARGE_SCENES = ((4000, 3000), (6000, 4000), (7360, 4912))  # 12, 24, 36 Mpx
SCENE_FACE_PX = 40
GOALS = {"single_recall": 0.97, "group_recall": 0.90, "none_false_faces": 0, "none_images": 6, "max_seconds": 1.0}
_MAX_FACE_RE = re.compile(r"max_face_px\s*=\s*(\d+)")


# -- catalog --------------------------------------------------------------------------
def read_catalog(path: str | Path) -> list[dict]:
    """Rows of a catalog.tsv as dicts: file, n_faces (int), notes, max_face_px (int or
    None), kinds (list of the KINDS it belongs to), plus every other column as text."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: catalog not found (give --catalog PATH to the face set's catalog.tsv)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the catalog ({exc.__class__.__name__})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"{path}: the catalog has no header and no rows")
    header = lines[0].split("\t")
    for col in ("file", "n_faces"):
        if col not in header:
            raise InputError(f"{path}: the catalog's header has no '{col}' column (tab-separated)")
    rows = []
    for lineno, ln in enumerate(lines[1:], start=2):
        cells = ln.split("\t")
        row = dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=False))
        try:
            n = int(row["n_faces"])
        except ValueError:
            raise InputError(f"{path}: row {lineno} ({row['file']}): n_faces is not a number: {row['n_faces']!r}") from None
        if n < 0:
            raise InputError(f"{path}: row {lineno} ({row['file']}): n_faces is negative")
        m = _MAX_FACE_RE.search(row.get("notes", ""))
        max_px = int(m.group(1)) if m else None
        kinds = ["none" if n == 0 else "single" if n == 1 else "group"]
        if n > 0 and max_px is not None and max_px < SMALL_FACE_PX:
            kinds.append("small")
        row.update(n_faces=n, notes=row.get("notes", ""), max_face_px=max_px, kinds=kinds)
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: the catalog lists no images")
    return rows


# -- measurement ----------------------------------------------------------------------
def evaluate(rows: list[dict], images_dir: str | Path, detector, threshold: float, max_pixels: int,
             progress=None) -> list[dict]:
    """Detect on every catalog image; one result row per image."""
    from ..errors import FaceFuseError
    from ..io import read_image

    out = []
    for row in rows:
        path = Path(images_dir) / row["file"]
        if progress is not None:
            progress.set_postfix_str(row["file"][:40])
        rec = {"file": row["file"], "n_faces": row["n_faces"], "kinds": row["kinds"], "max_face_px": row["max_face_px"]}
        try:
            t0 = time.perf_counter()
            rgb = read_image(path, max_pixels=max_pixels)
            decode_s = time.perf_counter() - t0
        except FaceFuseError as exc:  # a missing or broken file: its faces count as missed
            rec.update(error=str(exc), found=0, hit=0, extra=0, width=None, height=None,
                       mpx=None, seconds=None, decode_seconds=None, dropped=[], passes=[], faces=[])
            out.append(rec)
            if progress is not None:
                progress.update(1)
            continue
        h, w = rgb.shape[:2]
        t0 = time.perf_counter()
        det = detector.detect(rgb, threshold)
        seconds = time.perf_counter() - t0
        found = len(det.faces)
        rec.update(
            width=w, height=h, mpx=round(w * h / 1e6, 3),
            found=found, hit=min(found, row["n_faces"]), extra=max(0, found - row["n_faces"]),
            seconds=round(seconds, 4), decode_seconds=round(decode_s, 4),
            seconds_per_mpx=round(seconds / max(w * h / 1e6, 1e-6), 4),
            passes=list(det.passes), dropped=list(det.dropped),
            faces=[{"index": k, **f.to_dict()} for k, f in enumerate(det.faces)],
        )
        out.append(rec)
        if progress is not None:
            progress.update(1)
    return out


def small_face_scene(portrait, face_box, background, size: tuple[int, int], face_px: float,
                     centre: tuple[float, float]):
    """A large photo with one small face: `background` (RGB) enlarged to `size` (w, h),
    and `portrait` shrunk so its face (`face_box` x0, y0, x1, y1 in portrait pixels) is
    `face_px` wide, pasted with the face's centre at `centre` (share of w, h).
    Returns (image, the face's box in the image)."""
    import cv2

    w, h = size
    scene = cv2.resize(background, (w, h), interpolation=cv2.INTER_CUBIC)
    k = face_px / (face_box[2] - face_box[0])
    small = cv2.resize(portrait, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    fcx, fcy = (face_box[0] + face_box[2]) / 2 * k, (face_box[1] + face_box[3]) / 2 * k
    x0 = int(np.clip(round(centre[0] * w - fcx), 0, w - small.shape[1]))
    y0 = int(np.clip(round(centre[1] * h - fcy), 0, h - small.shape[0]))
    scene[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    box = tuple(float(v) for v in (x0 + face_box[0] * k, y0 + face_box[1] * k, x0 + face_box[2] * k, y0 + face_box[3] * k))
    return scene, box


def evaluate_large(rows: list[dict], images_dir: str | Path, detector, threshold: float, max_pixels: int) -> list[dict]:
    """A 40-px face in built 12 / 24 / 36-Mpx scenes (see `small_face_scene`): found or not,
    other faces, time per image and per Mpx."""
    from ..io import read_image

    def first(kind):
        for row in rows:
            if kind in row["kinds"] and (Path(images_dir) / row["file"]).is_file():
                yield row["file"]

    background_file = next(first("none"), None)
    portrait_file, face = None, None
    for name in first("single"):
        det = detector.detect(read_image(Path(images_dir) / name, max_pixels=max_pixels), threshold)
        if len(det.faces) == 1:
            portrait_file, face = name, det.faces[0]
            break
    if background_file is None or face is None:
        return []
    background = read_image(Path(images_dir) / background_file, max_pixels=max_pixels)
    portrait = read_image(Path(images_dir) / portrait_file, max_pixels=max_pixels)
    out = []
    for size in LARGE_SCENES:
        scene, box = small_face_scene(portrait, face.box, background, size, SCENE_FACE_PX, (0.37, 0.61))
        t0 = time.perf_counter()
        det = detector.detect(scene, threshold)
        seconds = time.perf_counter() - t0
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        hits = [f for f in det.faces if abs((f.box[0] + f.box[2]) / 2 - cx) < SCENE_FACE_PX / 2
                and abs((f.box[1] + f.box[3]) / 2 - cy) < SCENE_FACE_PX / 2]
        mpx = size[0] * size[1] / 1e6
        out.append({
            "size": f"{size[0]}x{size[1]}", "mpx": round(mpx, 1), "background": background_file,
            "portrait": portrait_file, "face_box": [round(v, 1) for v in box], "found": bool(hits),
            "found_size_px": round(hits[0].size, 1) if hits else None, "other_faces": len(det.faces) - len(hits[:1]),
            "seconds": round(seconds, 3), "seconds_per_mpx": round(seconds / mpx, 4), "passes": list(det.passes),
        })
        del scene
    return out


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "max": float(a.max()), "mean": float(a.mean()), "n": int(a.size)}


def summarize(results: list[dict]) -> dict:
    """Totals overall ("all") and per kind."""
    groups = {"all": results}
    for kind in KINDS:
        groups[kind] = [r for r in results if kind in r["kinds"]]
    out = {}
    for name, rs in groups.items():
        counted = sum(r["n_faces"] for r in rs)
        hit = sum(r["hit"] for r in rs)
        timed = [r for r in rs if r["seconds"] is not None]
        out[name] = {
            "images": len(rs),
            "faces_counted": counted,
            "faces_found": hit,  # capped per image at n_faces
            "recall": hit / counted if counted else None,
            "images_all_found": sum(1 for r in rs if r["n_faces"] > 0 and r["hit"] == r["n_faces"]),
            "images_exact": sum(1 for r in rs if r["found"] == r["n_faces"]),
            "false_faces": sum(r["found"] for r in rs if r["n_faces"] == 0),
            "extra_faces": sum(r["extra"] for r in rs if r["n_faces"] > 0),
            "errors": sum(1 for r in rs if "error" in r),
            "images_over_max_seconds": sum(1 for r in timed if r["seconds"] > GOALS["max_seconds"]),
            "seconds": _stats([r["seconds"] for r in timed]),
            "seconds_per_mpx": _stats([r["seconds_per_mpx"] for r in timed]),
            "dropped": _reason_counts(rs),
        }
    return out


_DETAIL_RE = re.compile(r"^(.*?)\s*\((.*)\)\s*$")


def _split_reason(reason) -> tuple[str, str | None]:
    """'face mesh does not agree (key points 0.13 apart)' -> ('face mesh does not agree', 'key points 0.13 apart')."""
    m = _DETAIL_RE.match(str(reason))
    return (m.group(1), m.group(2)) if m else (str(reason), None)


def _reason_counts(rs: list[dict]) -> dict:
    """Dropped candidates per reason (details in parentheses left out, so they group)."""
    counts: dict[str, int] = {}
    for r in rs:
        for d in r["dropped"]:
            reason = _split_reason(d.get("reason", "?"))[0]
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def check_goals(summary: dict) -> list[dict]:
    s, g, n, a = summary["single"], summary["group"], summary["none"], summary["all"]
    goals = []
    if s["recall"] is not None:
        goals.append({"what": "single-portrait faces found", "goal": f"≥ {GOALS['single_recall']:.0%}",
                      "measured": f"{s['recall']:.1%} ({s['faces_found']}/{s['faces_counted']})",
                      "met": s["recall"] >= GOALS["single_recall"]})
    if g["recall"] is not None:
        goals.append({"what": "group-photo faces found", "goal": f"≥ {GOALS['group_recall']:.0%}",
                      "measured": f"{g['recall']:.1%} ({g['faces_found']}/{g['faces_counted']})",
                      "met": g["recall"] >= GOALS["group_recall"]})
    goals.append({"what": f"faces on the no-face photos ({n['images']} images)",
                  "goal": f"0 on {GOALS['none_images']}", "measured": str(n["false_faces"]),
                  "met": n["false_faces"] == 0 and n["images"] >= GOALS["none_images"]})
    if a["seconds"] is not None:
        goals.append({"what": "slowest image (detection)", "goal": f"≤ {GOALS['max_seconds']:g} s",
                      "measured": f"{a['seconds']['max']:.2f} s ({a['images_over_max_seconds']} over)",
                      "met": a["seconds"]["max"] <= GOALS["max_seconds"]})
    return goals


# -- output ---------------------------------------------------------------------------
def _pct(v) -> str:
    return "–" if v is None else f"{v:.1%}"


def _t(st: dict | None, key: str, fmt: str = "{:.3f}") -> str:
    return "–" if st is None else fmt.format(st[key])


def misses(results: list[dict]) -> list[dict]:
    """Images where the count found differs from the catalog's."""
    return [r for r in results if r["found"] != r["n_faces"]]


def _dropped_text(r: dict) -> str:
    if "error" in r:
        return "error: " + r["error"]
    if not r["dropped"]:
        return "–"
    groups: dict[str, list] = {}
    for d in r["dropped"]:
        reason, detail = _split_reason(d.get("reason", "?"))
        groups.setdefault(reason, []).append((d, detail))
    parts = []
    for reason, items in groups.items():
        scores = ", ".join(f"{d.get('score', 0):.2f}" for d, _ in items)
        details = "; ".join(x for _, x in items if x)
        parts.append(f"{reason}{f' ×{len(items)}' if len(items) > 1 else ''} (score {scores}"
                     f"{'; ' + details if details else ''})")
    return "; ".join(parts)


def markdown(report: dict) -> str:
    m, s, cfg = report["machine"], report["summary"], report["settings"]
    L = [(f"Machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, OpenCV {m['opencv']}, load average at start "
         f"{m['load_avg_at_start']}; commit {m['git_commit']}"
         f"{' + uncommitted changes to ' + ', '.join(m['git_modified']) if m.get('git_modified') else ''}, {m['date']}."),
         (f"Catalog: {report['catalog']} ({s['all']['images']} images, {s['all']['faces_counted']} faces). "
         f"Detector: max_side {cfg['max_side']}, tiles {cfg['tiles']}, min_face_px {cfg.get('min_face_px')}, "
         f"threshold {cfg['threshold']}. "
         f"Time = detection only (decode excluded), warm detector, {report['wall_seconds']:.0f} s wall in all."), "",
         "## Detection", "",
         "| kind | images | faces counted | found (capped) | recall | images all found | extra faces | false faces "
         "| s/image median | s/image max | s/Mpx median | s/Mpx max |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("all", *KINDS):
        k = s[name]
        label = "**all**" if name == "all" else KIND_LABELS[name]
        false = str(k["false_faces"]) if name in ("all", "none") else "–"
        extra = str(k["extra_faces"]) if name != "none" else "–"
        L.append(f"| {label} | {k['images']} | {k['faces_counted']} | {k['faces_found']} | {_pct(k['recall'])} | "
                 f"{k['images_all_found'] if name != 'none' else '–'} | {extra} | {false} | "
                 f"{_t(k['seconds'], 'median')} | {_t(k['seconds'], 'max')} | "
                 f"{_t(k['seconds_per_mpx'], 'median')} | {_t(k['seconds_per_mpx'], 'max')} |")
    if report.get("goals"):
        L += ["", "Goals (the project's):", "", "| goal | target | measured | met |", "|---|---|---|---|"]
        for g in report["goals"]:
            L.append(f"| {g['what']} | {g['goal']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |")
    slow = sorted((r for r in report["images"] if r["seconds"] is not None), key=lambda r: -r["seconds"])[:5]
    if slow:
        L += ["", "Slowest: " + ", ".join(f"{r['file']} {r['seconds']:.2f} s ({r['width']}x{r['height']}, "
                                          f"{' '.join(r['passes'])})" for r in slow)]
    if s["all"]["dropped"]:
        L += ["", "Candidates dropped (all images): " + ", ".join(f"{k} ×{v}" for k, v in s["all"]["dropped"].items())]
    if report.get("large"):
        first = report["large"][0]
        L += ["", f"## A {SCENE_FACE_PX}-px face in a large photo", "",
              f"Built scenes: {first['background']} enlarged, {first['portrait']} pasted in with its face "
              f"{SCENE_FACE_PX} px wide (see `small_face_scene`).", "",
              "| photo | Mpx | face found | found size px | other faces | seconds | s/Mpx | passes |",
              "|---|---|---|---|---|---|---|---|"]
        for r in report["large"]:
            L.append(f"| {r['size']} | {r['mpx']} | {'yes' if r['found'] else '**no**'} | {r['found_size_px'] or '–'} | "
                     f"{r['other_faces']} | {r['seconds']:.2f} | {r['seconds_per_mpx']:.3f} | {' '.join(r['passes'])} |")
    bad = misses(report["images"])
    L += ["", f"Images where found ≠ n_faces ({len(bad)}):", ""]
    if bad:
        L += ["| file | n_faces | found | max_face_px | passes | dropped |", "|---|---|---|---|---|---|"]
        for r in sorted(bad, key=lambda r: (r["found"] - r["n_faces"], r["file"])):
            L.append(f"| {r['file']} | {r['n_faces']} | {r['found']} | {r['max_face_px'] or '–'} | "
                     f"{' '.join(r['passes']) or '–'} | {_dropped_text(r)} |")
    else:
        L.append("none")
    return "\n".join(L)


# -- command --------------------------------------------------------------------------
def run_detect_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..commands import load_settings
    from ..detect import FaceDetector
    from ..io import read_image, write_bytes_atomic
    from .machine import machine_info

    json_out = getattr(args, "json", None)
    overwrite = bool(getattr(args, "overwrite", False))
    if json_out:  # fail before a minute of work, not after
        jp = Path(json_out)
        if not (jp.parent if str(jp.parent) else Path(".")).is_dir():
            raise InputError(f"{json_out}: output folder does not exist")
        if jp.exists() and not overwrite:
            raise OutputExistsError(json_out)
    settings = load_settings(args)
    fd = settings.face_detection
    threshold = fd.threshold if getattr(args, "threshold", None) is None else float(args.threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold: must be 0-1, got {threshold}")
    rows = read_catalog(args.catalog)
    images_dir = Path(getattr(args, "images_dir", None) or Path(args.catalog).parent)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: images folder not found")

    machine = machine_info()
    t_start = time.perf_counter()
    detector = FaceDetector.from_settings(settings)
    from ..commands import SAMPLES

    warm = SAMPLES / "target.jpg"  # first calls start mediapipe's graphs: keep that out of the timings
    if warm.is_file():
        detector.detect(read_image(warm), threshold)
    progress = tqdm(total=len(rows), desc="bench detect", unit="img", leave=False)
    try:
        results = evaluate(rows, images_dir, detector, threshold, settings.output.max_pixels, progress)
        progress.set_postfix_str("large photos")
        large = [] if getattr(args, "no_large", False) else evaluate_large(
            rows, images_dir, detector, threshold, settings.output.max_pixels)
    finally:
        progress.close()
        detector.close()
    summary = summarize(results)
    report = {
        "catalog": str(args.catalog), "images_dir": str(images_dir), "machine": machine,
        "settings": {"max_side": fd.max_side, "tiles": fd.tiles, "min_face_px": fd.min_face_px, "threshold": threshold},
        "wall_seconds": time.perf_counter() - t_start,
        "summary": summary, "goals": check_goals(summary) if getattr(args, "goals", False) else [],
        "images": results, "large": large,
    }
    print(markdown(report))
    if json_out:
        write_bytes_atomic(json_out, json.dumps(report, indent=1, default=_json_default).encode(), overwrite=overwrite)
    return 0


def _json_default(v):
    """numpy scalars and arrays (e.g. in Detection.dropped) as plain JSON numbers / lists."""
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")
