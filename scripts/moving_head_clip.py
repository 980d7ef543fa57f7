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

    .venv/bin/python scripts/moving_head_clip.py --photo ../shared/faces/faceapi_bernadette1.png
        --scale 3 --out /tmp/glasses_clip.mp4

moves a still photo along the same path (25 fps, enlarged `--scale` times first): none of
the dev clips shows a face wearing glasses, and QUALITY.md stop 40 measures how a target's
frames hold through such a clip.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from facefuse.io import read_image
from facefuse.video.io import VideoInfo, VideoReader, VideoWriter

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


def still_clip(photo: str, out: str, seconds: float, scale: float, fps: int = 25) -> None:
    """A clip of `photo` moved along the camera path, `fps` frames a second."""
    rgb = read_image(photo)
    if scale != 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])  # even sides for yuv420p
    h, w = rgb.shape[:2]
    info = VideoInfo(path=photo, width=w, height=h, fps=Fraction(fps), frames=int(seconds * fps), duration=seconds,
                     time_base=Fraction(1, fps), codec="h264", pix_fmt="yuv420p", rotation=0)
    with VideoWriter(out, info, quality=90, overwrite=True, audio=False) as writer:
        for i in range(info.frames):
            writer.write(blurred(rgb, i / fps, 1.0 / fps), i)
        writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "videos" / "sadtalker_aoc.mp4"))
    ap.add_argument("--out", default="/tmp/moving_head.mp4")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--photo", help="a still photo to move instead of the clip's frames")
    ap.add_argument("--scale", type=float, default=1.0, help="enlarge the photo this many times first")
    args = ap.parse_args()
    if args.photo:
        still_clip(args.photo, args.out, args.seconds, args.scale)
        print(args.out)
        return
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
