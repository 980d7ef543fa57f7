"""`bench video`: fusion speed against the decode + encode floor of the same clip, in one run.

The floor is what any video tool pays before fusing anything: decode every frame to RGB
and encode it again with the same encoder settings (libx264 veryfast, the same CRF). The
ratio fusion time / floor time says how much fusion adds; the issue's goal is <= 4 at
720p on 2 cores. Sizes: the clip as it is, and scaled so its short side is 720 and 1080
(a 640x360 clip becomes 1280x720 and 1920x1080), made before any timing.

`judge_dev_clips` runs the independent judge (`shared/tools/judge/video_judge.py`, in its
own venv) on fused dev clips: flicker, identity, landmark error, background PSNR, streams.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..imaging import resize_frame
from ..video.fuse import WORK_FACE_PX
from ..video.io import DEFAULT_QUALITY, VideoReader, VideoWriter, probe

BENCH_SIZES = (None, 720, 1080)  # None: the clip's own size; else the short side


def scaled_clip(clip: str | Path, short_side: int, out: Path) -> Path:
    """The clip re-encoded with its short side at `short_side` (aspect kept, even sides)."""
    reader = VideoReader(clip)
    info = reader.info
    k = short_side / min(info.width, info.height)
    size = (int(round(info.width * k / 2)) * 2, int(round(info.height * k / 2)) * 2)
    with VideoWriter(out, info, size=size, quality=90, overwrite=True) as writer:
        for frame in reader:
            writer.write(resize_frame(frame.rgb, size), frame.pts)
        writer.close()
    return out


def decode_encode_floor(clip: str | Path, out: Path, quality: int = DEFAULT_QUALITY) -> float:
    """Seconds to decode every frame to RGB and encode it again (audio copied as in fusion)."""
    t0 = time.perf_counter()
    reader = VideoReader(clip)
    with VideoWriter(out, reader.info, quality=quality, overwrite=True) as writer:
        for frame in reader:
            writer.write(frame.rgb, frame.pts)
        writer.close()
    return time.perf_counter() - t0


def flicker_ratio(original: str | Path, fused: str | Path, threshold: int = 12) -> float | None:
    """Temporal second difference |f(t+1) - 2 f(t) + f(t-1)| where fusion changed the
    picture, fused over original (1.0: no flicker added). A quick in-process cousin of the
    judge's flicker_ratio, which measures inside dlib's face hull at sampled frames."""
    a = [f.rgb.astype(np.float32) for f in VideoReader(original)]
    b = [f.rgb.astype(np.float32) for f in VideoReader(fused)]
    num = den = 0.0
    for t in range(1, min(len(a), len(b)) - 1):
        region = np.abs(b[t] - a[t]).max(axis=2) > threshold
        if region.sum() < 16:
            continue
        num += float(np.abs(b[t + 1] - 2 * b[t] + b[t - 1])[region].mean())
        den += float(np.abs(a[t + 1] - 2 * a[t] + a[t - 1])[region].mean())
    return round(num / den, 3) if den > 0 else None


def bench_clip(fuser, source, clip: str | Path, sizes=BENCH_SIZES, workdir: Path | None = None,
               **params: Any) -> dict:
    """Per size: fusion fps and stage times, the floor of the same clip measured in the
    same run (before and after the fusion, their mean), their ratio, and the flicker ratio."""
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        for side in sizes:
            name = "original" if side is None else f"{side}p"
            path = Path(clip) if side is None else scaled_clip(clip, side, tmp / f"{name}.mp4")
            info = probe(path)
            # the floor just before and just after the fusion, their mean: one pass before it
            # moved the talking head's 720p ratio from 3.6x to 4.6x for one code within four
            # minutes (the floor 57-72 fps, the fusion 13.6-15.8); bracketing follows the
            # machine through the fusion's own minutes
            before = decode_encode_floor(path, tmp / f"{name}-floor.mp4")
            report = fuser.fuse_video(source, path, tmp / f"{name}-fused.mp4", overwrite=True, **params)
            after = decode_encode_floor(path, tmp / f"{name}-floor.mp4")
            floor_s = (before + after) / 2
            fuse_s = report["loop_seconds"]  # decode, fuse, encode: wall time, as the floor's
            results.append({
                "size": name, "width": info.width, "height": info.height, "frames": report["frames"],
                "fps": round(report["frames"] / fuse_s, 2), "floor_fps": round(report["frames"] / floor_s, 2),
                "floor_fps_before_after": [round(report["frames"] / before, 2), round(report["frames"] / after, 2)],
                "ratio_to_floor": round(fuse_s / floor_s, 2), "timings_s": report["timings_s"],
                "per_frame_ms": {k: round(1000 * v / report["frames"], 2) for k, v in report["timings_s"].items()},
                "frames_with_fused_face": report["frames_with_fused_face"],
                "flicker_ratio": flicker_ratio(path, tmp / f"{name}-fused.mp4"),
            })
    return {"clip": str(clip), "source": str(source), "work_face_px": params.get("work_face_px", WORK_FACE_PX),
            "results": results}


def judge_dev_clips(fuser, source, clips: list[str | Path], out_dir: str | Path, judge_python: str | Path,
                    judge_script: str | Path, **params: Any) -> dict:
    """Fuse each clip into out_dir and score it with the judge's video_judge.py (its own
    venv, so its dlib and OpenCV never meet ours); returns {clip name: judge metrics}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for clip in map(Path, clips):
        fused = out_dir / f"{clip.stem}.mp4"
        report = fuser.fuse_video(source, clip, fused, overwrite=True, **params)
        run = subprocess.run([str(judge_python), str(judge_script), "--source", str(source), "--target", str(clip),
                              "--result", str(fused), "--json"], capture_output=True, text=True, timeout=1800)
        judged = json.loads(run.stdout) if run.returncode == 0 else {"error": run.stderr.strip()[-300:]}
        scores[clip.name] = {**{k: v for k, v in judged.items() if k not in ("target", "result")},
                             "fps": report["fps"]}
    return scores


def sample_clip(photo: str | Path, out: Path, seconds: float = 2.0, fps: int = 25, size=(1280, 720)) -> Path:
    """A clip made from a bundled photo, for a benchmark on a machine without clips of its
    own: a slow pan and zoom across the photo (a real face that moves), H.264."""
    import av
    import cv2
    import numpy as np

    from ..io import read_image

    img = read_image(photo)
    h, w = img.shape[:2]
    n = int(seconds * fps)
    container = av.open(str(out), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for i in range(n):
        zoom = 0.9 - 0.15 * i / max(n - 1, 1)
        cw, ch = int(w * zoom), int(w * zoom * size[1] / size[0])
        ch = min(ch, h)
        x0, y0 = int((w - cw) * (0.3 + 0.4 * i / max(n - 1, 1))), (h - ch) // 2
        frame = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], size, interpolation=cv2.INTER_AREA)
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return out


PLOT_STAGES = ("detect", "track", "roi", "engine", "blend", "paste", "decode", "encode")
PLOT_COLOURS = {"detect": "#4c72b0", "track": "#8172b2", "roi": "#64b5cd", "engine": "#dd8452", "blend": "#55a868",
                "paste": "#c44e52", "decode": "#999999", "encode": "#cccccc"}


def plot(results: list[dict], path: str | Path, overwrite: bool = False, goal: float = 4.0) -> None:
    """One panel per clip: per size, fusion's ms per frame stacked by stage (the loop's
    waits for decode and encode included), beside the decode + encode floor's ms per frame;
    the ratio to the floor written on top, the goal (4x the floor) dashed."""
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_bytes_atomic

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results) + 1, 4.2), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        rows = res["results"]
        x = range(len(rows))
        bottom = [0.0] * len(rows)
        for stage in PLOT_STAGES:
            vals = [r["per_frame_ms"].get(stage, 0.0) for r in rows]
            ax.bar(x, vals, 0.6, bottom=bottom, color=PLOT_COLOURS[stage], label=stage, edgecolor="white",
                   linewidth=0.3)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        for i, r in enumerate(rows):
            floor_ms = 1000 / r["floor_fps"]
            total_ms = 1000 / r["fps"]
            ax.hlines(floor_ms, i - 0.3, i + 0.3, colors="black", linewidth=2, label="floor" if i == 0 else None)
            ax.hlines(goal * floor_ms, i - 0.3, i + 0.3, colors="red", linestyles="--", linewidth=1.2,
                      label=f"{goal:g}x floor" if i == 0 else None)
            ax.text(i, max(bottom[i], total_ms, goal * floor_ms), f"{r['ratio_to_floor']:.1f}x", ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(list(x), [f"{r['width']}x{r['height']}" for r in rows], fontsize=8)
        ax.set_title(Path(res["clip"]).stem, fontsize=9)
        ax.set_ylabel("ms per frame")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue(), overwrite=overwrite)


def markdown(res: dict) -> str:
    L = [f"## Video: {Path(res['clip']).name}", "", f"Work face size: {res.get('work_face_px', WORK_FACE_PX)} px "
         "(0: faces fused at full size).", "",
         "| size | frames | fps | decode + encode floor fps | total / floor | flicker ratio | ms per frame (stages) |",
         "|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["per_frame_ms"].items() if v >= 0.5)
        flicker = "–" if r["flicker_ratio"] is None else f"{r['flicker_ratio']:.2f}"
        L.append(f"| {r['width']}x{r['height']} | {r['frames']} | {r['fps']:.1f} | {r['floor_fps']:.1f} | "
                 f"{r['ratio_to_floor']:.2f}x | {flicker} | {stages} |")
    return "\n".join(L) + "\n"
