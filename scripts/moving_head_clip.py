"""A moving-head test clip made from a dev clip: the frame is panned, zoomed and turned by a
smooth camera path with a few fast moves, and each frame is the average of sub-frame
renderings along the path (a shutter open half the frame time), so the fast moves carry
their own motion blur, as a real camera's would.

    .venv/bin/python scripts/moving_head_clip.py [--clip ../shared/videos/sadtalker_aoc.mp4]
        [--out /tmp/moving_head.mp4] [--seconds 8]

The talking head holds its head nearly still; this makes it move across the frame (up to
0.7 of the frame's width a second in the quick pans, zoom 1.04-1.3 at up to 0.6 a second,
rotation -6 to +10 degrees at up to 23 degrees a second), the case where fused faces
flicker and detection misses frames. The clip stays outside the repository (it is
made from a shared clip); `video_eval.py --clips DIR` judges it with the others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facefuse.video.io import VideoReader, VideoWriter

ROOT = Path(__file__).resolve().parents[1]
SHUTTER = 0.5  # share of the frame time the virtual shutter is open
SUBFRAMES = 6  # renderings averaged per frame (motion blur)


def camera(t: float) -> tuple[float, float, float, float]:
    """(dx, dy as shares of the frame, zoom, rotation in degrees) at `t` seconds: slow sway
    plus three quick moves (a pan at 2.6-2.85 s, a turn with a zoom at 5.4-5.7 s, a pan
    back at 6.6-6.9 s)."""
    def quick(t0: float, t1: float) -> float:  # 0 -> 1 with a smooth S between t0 and t1
        s = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
        return float(s * s * (3 - 2 * s))

    dx = 0.08 * np.sin(2 * np.pi * 0.23 * t) + 0.12 * quick(2.6, 2.85) - 0.12 * quick(6.6, 6.9)
    dy = 0.05 * np.sin(2 * np.pi * 0.31 * t + 1.0)
    zoom = 1.12 + 0.08 * np.sin(2 * np.pi * 0.17 * t) + 0.1 * quick(5.4, 5.7)
    angle = 6.0 * np.sin(2 * np.pi * 0.2 * t + 0.5) + 4.0 * quick(5.4, 5.7)
    return float(dx), float(dy), float(zoom), float(angle)


def render(rgb: np.ndarray, t: float) -> np.ndarray:
    """The frame seen by the camera at `t`: turned and zoomed about its centre, shifted."""
    h, w = rgb.shape[:2]
    dx, dy, zoom, angle = camera(t)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
    m[:, 2] += (dx * w, dy * h)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def blurred(rgb: np.ndarray, t: float, dt: float) -> np.ndarray:
    """The average of SUBFRAMES renderings over the open shutter, centred on `t`."""
    times = t + dt * SHUTTER * (np.arange(SUBFRAMES) / (SUBFRAMES - 1) - 0.5)
    acc = np.zeros(rgb.shape, np.float32)
    for s in times:
        acc += render(rgb, float(s))
    return np.clip(acc / SUBFRAMES + 0.5, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "videos" / "sadtalker_aoc.mp4"))
    ap.add_argument("--out", default="/tmp/moving_head.mp4")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    reader = VideoReader(args.clip, end=args.seconds)
    info = reader.info
    dt = 1.0 / float(info.fps)
    with VideoWriter(args.out, info, quality=90, overwrite=True, end=args.seconds, audio=False) as writer:
        for frame in reader:
            writer.write(blurred(frame.rgb, frame.time, dt), frame.pts)
        writer.close()
    print(args.out)


if __name__ == "__main__":
    main()
