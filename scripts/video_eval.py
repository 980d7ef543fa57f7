"""Video fusion on the dev clips, judged by the independent judge, and timed against the floor.

    .venv/bin/python scripts/video_eval.py [--source ../shared/faces/deepface_img2.jpg]
        [--clips ../shared/videos] [--out /tmp/facefuse-video-eval] [--bench]

Fuses every clip of --clips with --source, scores each with video_judge.py (in the judge's
own venv: run ../shared/tools/judge/setup.sh first) and prints one JSON object per clip:
streams kept, flicker_ratio, id_moved_frac, lmk_nme_median, bg_psnr_median, fps. With
--bench, also `bench_clip` per clip (the clip's size, 720p, 1080p: fps, floor, ratio).
The clips and the results stay outside the repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facefuse.bench.video import bench_clip, judge_dev_clips
from facefuse.pipeline import Fuser

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=str(SHARED / "faces" / "deepface_img2.jpg"))
    ap.add_argument("--clips", default=str(SHARED / "videos"))
    ap.add_argument("--out", default="/tmp/facefuse-video-eval")
    ap.add_argument("--judge-python", default=str(Path.home() / ".cache/facefuse-judge/venv/bin/python"))
    ap.add_argument("--judge", default=str(SHARED / "tools" / "judge" / "video_judge.py"))
    ap.add_argument("--bench", action="store_true", help="also time each clip against its decode+encode floor")
    args = ap.parse_args()
    clips = sorted(Path(args.clips).glob("*.mp4"))
    fuser = Fuser()
    for name, scores in judge_dev_clips(fuser, args.source, clips, args.out, args.judge_python, args.judge).items():
        print(json.dumps({"clip": name, **scores}))
    if args.bench:
        for clip in clips:
            print(json.dumps(bench_clip(fuser, args.source, clip, workdir=Path(args.out))))


if __name__ == "__main__":
    main()
