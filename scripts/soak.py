"""Soak run: does a server stay flat over many requests? Not part of the test suite.

    python scripts/soak.py [--fusions 1000] [--webui 100] [--videos 20] [--max-minutes 60]

Starts `facefuse serve` (WebUI and REST, 127.0.0.1, a free port) in a subprocess with a
throw-away output folder and its own Gradio cache folder (GRADIO_TEMP_DIR), then sends, one
after the other: REST fusions of ordinary photos, WebUI fusions through gradio_client (what
fills Gradio's cache and outputs/), and REST video jobs. Before, between and after the
phases it records the server's resident memory (RSS), its open file descriptors, and the
sizes of the Gradio cache folder, outputs/ and outputs/jobs/. The bounds under test are the
settings given to the server: server.ui_cache_minutes (Gradio's cache), output.keep_days
(WebUI results), server.job_keep_hours (video jobs). The run stops early at --max-minutes
and says so. Prints a table and writes it as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [ROOT / "examples" / "source.jpg", ROOT / "examples" / "target.jpg", ROOT / "tests" / "data" / "deepface_img2.jpg",
          ROOT / "tests" / "data" / "fr_alex_lacamoire.png", ROOT / "tests" / "data" / "insightface_t1.jpg"]


def folder_mb(folder: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return round(total / 1e6, 2)


def sample(pid: int, cache: Path, outputs: Path, label: str, t0: float) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status)[1])
    return {"at": label, "minutes": round((time.monotonic() - t0) / 60, 1), "rss_mb": round(rss_kb / 1024),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "gradio_cache_mb": folder_mb(cache),
            "outputs_mb": folder_mb(outputs), "jobs_mb": folder_mb(outputs / "jobs"),
            "outputs_files": sum(1 for p in outputs.iterdir() if p.is_file()) if outputs.is_dir() else 0}


def start_server(tmp: Path, args) -> tuple[subprocess.Popen, str]:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"output:\n  dir: {tmp / 'outputs'}\n  keep_days: {args.keep_days}\n"
                   f"server:\n  workers: {args.workers}\n  ui_cache_minutes: {args.ui_cache_minutes}\n"
                   f"  job_keep_hours: {args.job_keep_hours}\n")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", GRADIO_TEMP_DIR=str(tmp / "gradio"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))  # this checkout
    env.pop("FACEFUSE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "facefuse.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp)
    line = proc.stdout.readline()
    match = re.search(r"REST (http://127\.0\.0\.1:\d+)/api/v1", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stdout.read()}")
    return proc, match[1]


def rest_fusions(http, base: str, n: int, deadline: float) -> dict:
    done = failed = 0
    for i in range(n):
        if time.monotonic() > deadline:
            break
        src, tgt = PHOTOS[i % len(PHOTOS)], PHOTOS[(i + 1) % len(PHOTOS)]
        r = http.post(f"{base}/api/v1/fuse", files={"source": (src.name, src.read_bytes()),
                                                    "target": (tgt.name, tgt.read_bytes())},
                      data={"resolution": "1024"})
        done += r.status_code == 200
        failed += r.status_code != 200 and r.status_code != 422  # 422: a pair without a usable face
    return {"sent": i + 1 if n else 0, "ok": done, "failed": failed}


def webui_fusions(base: str, n: int, deadline: float) -> dict:
    from gradio_client import Client, handle_file

    client = Client(f"{base}/", verbose=False)
    done = failed = 0
    for i in range(n):
        if time.monotonic() > deadline:
            break
        src, tgt = PHOTOS[i % len(PHOTOS)], PHOTOS[(i + 1) % len(PHOTOS)]
        try:
            client.predict(source=handle_file(str(src)), target=handle_file(str(tgt)), resolution="1024",
                           face_index=["0"], api_name="/fuse")
            done += 1
        except Exception:
            failed += 1
    return {"sent": i + 1 if n else 0, "ok": done, "failed": failed}


def video_jobs(http, base: str, n: int, clip: Path, deadline: float) -> dict:
    done = failed = 0
    for i in range(n):  # noqa: B007 (read after the loop: the jobs sent)
        if time.monotonic() > deadline:
            break
        r = http.post(f"{base}/api/v1/video", files={"source": ("s.jpg", PHOTOS[0].read_bytes()),
                                                     "video": (clip.name, clip.read_bytes())})
        if r.status_code != 202:
            failed += 1
            continue
        job = r.json()["id"]
        while (st := http.get(f"{base}/api/v1/jobs/{job}").json())["state"] in ("queued", "running"):
            time.sleep(0.5)
        if st["state"] == "done":
            done += http.get(f"{base}/api/v1/jobs/{job}/result").status_code == 200
        else:
            failed += 1
    return {"sent": i + 1 if n else 0, "ok": done, "failed": failed}


def make_clip(path: Path, frames: int) -> Path:
    """A panning crop of a portrait: a real face in every frame."""
    sys.path.insert(0, str(ROOT / "tests"))
    import video_clips

    return video_clips.write_clip(path, video_clips.pan_frames(PHOTOS[1], frames, (480, 320)), fps=25, audio=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fusions", type=int, default=1000, help="REST fusions")
    p.add_argument("--webui", type=int, default=100, help="WebUI fusions (gradio_client)")
    p.add_argument("--videos", type=int, default=20, help="REST video jobs (3 s clips)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ui-cache-minutes", type=float, default=2.0, help="server.ui_cache_minutes for the run")
    p.add_argument("--keep-days", type=float, default=0.002, help="output.keep_days for the run (0.002 = ~3 min)")
    p.add_argument("--job-keep-hours", type=float, default=0.05, help="server.job_keep_hours for the run")
    p.add_argument("--max-minutes", type=float, default=60)
    p.add_argument("--json", help="write the samples and counts here")
    args = p.parse_args()
    import httpx

    t0 = time.monotonic()
    deadline = t0 + args.max_minutes * 60
    with tempfile.TemporaryDirectory(prefix="facefuse-soak-") as tmp_name:
        tmp = Path(tmp_name)
        clip = make_clip(tmp / "clip.mp4", 75)
        proc, base = start_server(tmp, args)
        outputs, cache = tmp / "outputs", tmp / "gradio"
        samples, counts = [], {}
        try:
            with httpx.Client(timeout=300) as http:
                http.get(f"{base}/api/v1/health").raise_for_status()
                samples.append(sample(proc.pid, cache, outputs, "start", t0))
                counts["rest"] = rest_fusions(http, base, args.fusions, deadline)
                samples.append(sample(proc.pid, cache, outputs, f"after {counts['rest']['sent']} REST fusions", t0))
                counts["webui"] = webui_fusions(base, args.webui, deadline)
                samples.append(sample(proc.pid, cache, outputs, f"after {counts['webui']['sent']} WebUI fusions", t0))
                counts["video"] = video_jobs(http, base, args.videos, clip, deadline)
                samples.append(sample(proc.pid, cache, outputs, f"after {counts['video']['sent']} video jobs", t0))
                # the bounds act on their own clock: wait one ui_cache period, then one more request
                time.sleep(min(args.ui_cache_minutes * 60 * 1.3, max(0.0, deadline - time.monotonic())))
                webui_fusions(base, 1, deadline + 300)  # output.keep_days is applied on a save
                video_jobs(http, base, 1, clip, deadline + 300)  # server.job_keep_hours on a submission
                samples.append(sample(proc.pid, cache, outputs, "end (one cache period later, +1 fusion, +1 job)", t0))
        finally:
            proc.terminate()
            proc.wait(30)
        stopped_early = time.monotonic() > deadline
    print(f"{'at':<55} {'min':>5} {'RSS MB':>7} {'fds':>5} {'cache MB':>9} {'outputs MB':>11} {'jobs MB':>8} {'files':>6}")
    for s in samples:
        print(f"{s['at']:<55} {s['minutes']:>5} {s['rss_mb']:>7} {s['fds']:>5} {s['gradio_cache_mb']:>9} "
              f"{s['outputs_mb']:>11} {s['jobs_mb']:>8} {s['outputs_files']:>6}")
    print("counts:", json.dumps(counts), "(stopped at --max-minutes)" if stopped_early else "")
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": samples, "counts": counts, "settings": vars(args),
                                               "stopped_early": stopped_early}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
