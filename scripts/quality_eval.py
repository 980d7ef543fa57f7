"""Run facefuse over shared/faces/pairs.tsv (or another pairs file) and score the results
with the independent judge.

    .venv/bin/python scripts/quality_eval.py --ratio 1.0 --out /tmp/q10
    .venv/bin/python scripts/quality_eval.py --pairs ../shared/faces/hard_pairs.tsv --out /tmp/hard
    .venv/bin/python scripts/quality_eval.py --ratio 1.0 --out /tmp/q10 --sheet docs/contact_sheet.jpg

Writes OUT/<i>.png for pair i, OUT/times.tsv (the judge's timing format), and, when the
judge is set up (../shared/tools/judge/setup.sh), OUT/report.json with its verdicts.
The project does not depend on the judge; this script only calls it as a program.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"
JUDGE = ROOT.parent / "shared" / "tools" / "judge"
JUDGE_PY = Path(os.environ.get("JUDGE_VENV", Path.home() / ".cache/facefuse-judge/venv")) / "bin" / "python"


def read_pairs(path: Path) -> list[tuple[str, str, str]]:
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [(r[0], r[1], r[2] if len(r) > 2 else "") for r in rows[1:]]


def run_fusions(out: Path, pairs_file: Path, params: dict, limit: int | None) -> None:
    from facefuse import FaceFuseError, write_image
    from facefuse.pipeline import Fuser

    fuser = Fuser()
    out.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(pairs_file)[:limit]
    lines = ["id\tidx\twall_s\ttgt_w\ttgt_h\tmpix\tok\terror"]
    for i, (src, tgt, _) in enumerate(pairs):
        t0 = time.perf_counter()
        err, ok = "", 1
        try:
            res = fuser.fuse_detailed(FACES / src, FACES / tgt, fuser.params(**params))
            wall = time.perf_counter() - t0
            write_image(out / f"{i}.png", res.image, overwrite=True)
            h, w = res.image.shape[:2]
        except FaceFuseError as exc:
            wall, ok, err, (h, w) = time.perf_counter() - t0, 0, str(exc), (0, 0)
            print(f"pair {i}: {exc}", file=sys.stderr)
        lines.append(f"{i}\t{i}\t{wall:.4f}\t{w}\t{h}\t{w * h / 1e6:.3f}\t{ok}\t{err}")
    (out / "times.tsv").write_text("\n".join(lines) + "\n")


def judge(out: Path, pairs_file: Path) -> dict | None:
    if not JUDGE_PY.exists():
        print("judge not set up: run ../shared/tools/judge/setup.sh", file=sys.stderr)
        return None
    subprocess.run([str(JUDGE_PY), str(JUDGE / "judge.py"), "batch", "--pairs", str(pairs_file),
                    "--images", str(FACES), "--results", str(out), "--out", str(out / "report.json")], check=True)
    return json.loads((out / "report.json").read_text())


PAIR_COLUMNS = [("found", "found", "{:.0f}"), ("d_res_src", "d(res,src)", "{:.3f}"), ("d_res_tgt", "d(res,tgt)", "{:.3f}"),
                ("lmk_nme", "lmk err", "{:.3f}"), ("bg_psnr", "PSNR out (dB)", "{:.1f}"), ("seam_ratio", "seam ratio", "{:.2f}"),
                ("seam_step", "seam ΔE", "{:.2f}"), ("sharp_ratio", "sharpness", "{:.2f}"),
                ("face_color_dE", "colour ΔE", "{:.2f}")]


def markdown(report: dict, times: Path) -> str:
    """Per-pair table (Markdown) of a judge report, with our seconds per pair."""
    secs = {}
    if times.exists():
        for line in times.read_text().splitlines()[1:]:
            cols = line.split("\t")
            secs[int(cols[0])] = float(cols[2])
    head = "| # | source | target | " + " | ".join(c[1] for c in PAIR_COLUMNS) + " | s |"
    rows = [head, "|" + "---|" * (len(PAIR_COLUMNS) + 4)]
    for i, p in enumerate(report["pairs"]):
        cells = ["—" if p.get(k) is None else fmt.format(p[k]) for k, _, fmt in PAIR_COLUMNS]
        rows.append(f"| {i} | {Path(p.get('source', '')).name} | {Path(p.get('target', '')).name} | "
                    + " | ".join(cells) + f" | {secs.get(i, 0):.2f} |")
    return "\n".join(rows) + "\n"


def _face_crop(img: np.ndarray, box, margin: float = 0.45) -> np.ndarray:
    """The face's box grown by `margin` of its size on every side (clipped to the image)."""
    x0, y0, x1, y1 = box
    m = margin * max(x1 - x0, y1 - y0)
    h, w = img.shape[:2]
    return img[max(0, int(y0 - m)):min(h, int(y1 + m)), max(0, int(x0 - m)):min(w, int(x1 + m))]


def contact_sheet(out: Path, pairs_file: Path, sheet: Path, indices: list[int], height: int = 200,
                  faces: bool = False, columns: int = 1) -> None:
    """source | target | result per pair; with `faces`, each cut to its face (the target's
    box for the result), so faces in wide photos are large enough to judge."""
    from facefuse.io import read_image, write_image

    pairs = read_pairs(pairs_file)
    detector = None
    if faces:
        from facefuse.pipeline import Fuser

        detector = Fuser()
    rows = []
    for i in indices:
        src, tgt, _ = pairs[i]
        if not (out / f"{i}.png").exists():
            continue
        ims = [read_image(FACES / src), read_image(FACES / tgt), read_image(out / f"{i}.png")]
        if detector is not None:
            s_faces, t_faces = detector.detect(ims[0]).faces, detector.detect(ims[1]).faces
            if s_faces:
                ims[0] = _face_crop(ims[0], s_faces[0].box)
            if t_faces:
                ims[1], ims[2] = _face_crop(ims[1], t_faces[0].box), _face_crop(ims[2], t_faces[0].box)
        row = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height), interpolation=cv2.INTER_AREA)
               for im in ims]
        rows.append(np.hstack(row))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1] + 8), (0, 0)), constant_values=255) for r in rows]
    per_column = -(-len(rows) // columns)
    blank = np.full_like(rows[0], 255)
    cols = [np.vstack(rows[k:k + per_column] + [blank] * (per_column - len(rows[k:k + per_column])))
            for k in range(0, len(rows), per_column)]
    write_image(sheet, np.hstack(cols), overwrite=True, quality=80)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--pairs", type=Path, default=FACES / "pairs.tsv", help="pairs file (source, target, note)")
    ap.add_argument("--ratio", type=float, default=1.0)
    ap.add_argument("--mode", default=None)
    ap.add_argument("--smoothing", type=float, default=None)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--all-faces", action="store_true")
    ap.add_argument("--no-judge", action="store_true")
    ap.add_argument("--sheet", type=Path, help="write a contact sheet (source | target | result)")
    ap.add_argument("--markdown", type=Path, help="write the per-pair table (Markdown) to this file")
    ap.add_argument("--sheet-pairs", default="0,1,3,4,5,7,9,12,15,17,20,23,24,27,30,36")
    ap.add_argument("--sheet-height", type=int, default=200, help="row height of the contact sheet (px)")
    ap.add_argument("--sheet-faces", action="store_true", help="cut each photo of the sheet to its face")
    ap.add_argument("--sheet-columns", type=int, default=1, help="columns of pairs on the sheet")
    ap.add_argument("--sheet-only", action="store_true", help="only (re)write the contact sheet from OUT")
    args = ap.parse_args()
    params = {"ratio": args.ratio}
    if args.mode:
        params["mode"] = args.mode
    if args.smoothing is not None:
        params["smoothing"] = args.smoothing
    if args.all_faces:
        params["all_faces"] = True
    if not args.sheet_only:
        run_fusions(args.out, args.pairs, params, args.limit)
    if not args.no_judge and not args.sheet_only:
        report = judge(args.out, args.pairs)
        if report:
            print(json.dumps(report["summary"], indent=1))
            if args.markdown:
                args.markdown.write_text(markdown(report, args.out / "times.tsv"))
    if args.sheet:
        contact_sheet(args.out, args.pairs, args.sheet, [int(x) for x in args.sheet_pairs.split(",")],
                      args.sheet_height, args.sheet_faces, args.sheet_columns)


if __name__ == "__main__":
    main()
