"""Soak test of Live: one camera streams a clip through `/api/v1/live` of a real `facefuse serve`
(its own process, loopback, free port) for MINUTES; the server's RSS (with its fusing processes) and the size of Gradio's
temp folder are sampled every SAMPLE seconds. Memory is flat when the last third's RSS is
within --tolerance-mb of the first third's (after a warm-up minute) and Gradio's folder does not
grow. Exit 0 flat, 1 not flat.

    PYTHONPATH=src python scripts/live_soak.py --clip clip.mp4 --minutes 10 [--size 640x480] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    """The RSS of `pid` and of its children, theirs too (the server's fusing processes)."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += sum(rss_mb(int(child)) for child in (task / "children").read_text().split())
    except OSError:  # a process that ended while it was read
        pass
    return total


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    cfg = tmp / "config.yaml"
    cfg.write_text("output:\n  dir: outputs\nserver:\n  workers: 1\n  live_sessions: 1\n  live_idle_seconds: 30\n")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "facefuse.cli", "serve", "--port", "0", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    line = proc.stdout.readline()
    if "REST http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}")
    port = int(line.split("REST http://127.0.0.1:", 1)[1].split("/")[0])
    return proc, f"ws://127.0.0.1:{port}/api/v1/live"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", required=True, help="a clip with a face, played as the camera")
    ap.add_argument("--source", default=str(ROOT / "examples" / "source.jpg"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument("--tolerance-mb", type=float, default=30)
    ap.add_argument("--json", help="write the samples and the verdict here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from facefuse.bench.live import CAMERA_FPS, _Camera, _jpeg, camera_frames, parse_sizes

    frames = [_jpeg(f) for f in camera_frames(args.clip, parse_sizes(args.size)[0])]
    with tempfile.TemporaryDirectory(prefix="facefuse-soak-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            cam = _Camera(url, Path(args.source).read_bytes(), frames, CAMERA_FPS)
            ready, stop = threading.Barrier(2), threading.Event()
            client = threading.Thread(target=cam.run, args=(ready, stop), daemon=True)
            client.start()
            ready.wait(120)
            samples, t0 = [], time.monotonic()
            while time.monotonic() - t0 < args.minutes * 60 and cam.error is None:
                time.sleep(args.sample)
                samples.append({"s": round(time.monotonic() - t0), "rss_mb": round(rss_mb(proc.pid), 1),
                                "gradio_tmp_mb": round(folder_mb(Path(tmp) / "gradio"), 2),
                                "frames": len(cam.received)})
                print(json.dumps(samples[-1]), flush=True)
            stop.set()
            client.join(30)
        finally:
            proc.terminate()
            proc.wait(15)
    steady = [s for s in samples if s["s"] >= 60] or samples
    third = max(1, len(steady) // 3)
    first, last = statistics.mean(s["rss_mb"] for s in steady[:third]), statistics.mean(s["rss_mb"] for s in steady[-third:])
    grew = samples[-1]["gradio_tmp_mb"] - samples[0]["gradio_tmp_mb"] if samples else 0.0
    flat = cam.error is None and last - first <= args.tolerance_mb and grew <= 0.01
    verdict = {"minutes": args.minutes, "frames": len(cam.received), "rss_first_third_mb": round(first, 1),
               "rss_last_third_mb": round(last, 1), "gradio_tmp_growth_mb": round(grew, 2), "flat": flat,
               "error": cam.error}
    print(json.dumps(verdict))
    if args.json:
        Path(args.json).write_text(json.dumps({"verdict": verdict, "samples": samples}, indent=1))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
