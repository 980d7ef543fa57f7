"""Check that a refactor leaves every output as it was: record a set of fusions once, then
compare a later run with the record, image by image.

    .venv/bin/python scripts/same_outputs.py record /tmp/before      # on the old code
    .venv/bin/python scripts/same_outputs.py compare /tmp/before     # on the new code

The set: every pair of shared/faces/pairs.tsv and hard_pairs.tsv at ratio 1.0, the first
five regular pairs in each mode at ratio 0.6, the README example at the defaults, and the
first 50 fused frames of the talking-head clip (frame by frame, one in flight). `compare`
prints, per image that is not identical, the largest difference and the share of pixels
that differ, and exits 1 when any image differs by more than 1 level or on more than 0.1 %
of its pixels (the issue's bound for a reordered float operation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODES = ("normal", "blend", "overlay")


def _pairs(name: str) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in (SHARED / "faces" / name).read_text().splitlines()[1:] if line.strip()]
    return [(r[0], r[1]) for r in rows]


def cases():
    """(name, callable returning an RGB array) for each output of the set."""
    from facefuse import FaceFuseError, Fuser

    fuser = Fuser()
    faces = SHARED / "faces"

    def photo(src, tgt, **params):
        def run():
            try:
                return fuser.fuse_detailed(src, tgt, fuser.params(**params)).image
            except FaceFuseError as exc:  # a pair with no face: its error is the output
                return np.frombuffer(type(exc).__name__.encode(), np.uint8)
        return run

    for name in ("pairs.tsv", "hard_pairs.tsv"):
        for i, (s, t) in enumerate(_pairs(name)):
            yield f"{name[:-4]}_{i:02d}", photo(faces / s, faces / t, ratio=1.0)
    for i, (s, t) in enumerate(_pairs("pairs.tsv")[:5]):
        for mode in MODES:
            yield f"mode_{mode}_{i}", photo(faces / s, faces / t, ratio=0.6, mode=mode)
    yield "readme_example", photo(ROOT / "examples" / "source.jpg", ROOT / "examples" / "target.jpg")
    yield from _video_frames(fuser)


def _video_frames(fuser, count: int = 50):
    from facefuse.video.fuse import FrameTracker, fuse_next_frame
    from facefuse.video.io import VideoReader

    params = fuser.params(ratio=0.8)
    source = fuser.prepare_source(SHARED / "faces" / "deepface_img2.jpg")
    tracker = FrameTracker()
    for i, frame in enumerate(VideoReader(SHARED / "videos" / "sadtalker_aoc.mp4")):
        if i >= count:
            break
        out = fuse_next_frame(fuser, frame.rgb, tracker, source, params, t=frame.time).image
        yield f"video_{i:02d}", (lambda out=out: out)


def record(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, run in cases():
        np.save(folder / f"{name}.npy", run())
        print(name, flush=True)


def compare(folder: Path) -> int:
    worst = 0
    for name, run in cases():
        new, old = run(), np.load(folder / f"{name}.npy")
        if new.shape != old.shape:
            print(f"{name}: shape {old.shape} -> {new.shape}")
            worst = 2
            continue
        diff = np.abs(new.astype(np.int16) - old.astype(np.int16))
        if diff.any():
            share = float((diff.max(axis=-1) if diff.ndim == 3 else diff).astype(bool).mean())
            print(f"{name}: max {int(diff.max())} levels on {100 * share:.4f} % of pixels")
            if diff.max() > 1 or share > 0.001:
                worst = 1
    print("identical within the bound" if worst == 0 else "DIFFERENT")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("record", "compare"))
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    if args.action == "record":
        record(args.folder)
    else:
        sys.exit(compare(args.folder))


if __name__ == "__main__":
    main()
