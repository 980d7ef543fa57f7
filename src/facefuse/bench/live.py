"""`bench live`: a clip played as a camera through the real `/api/v1/live` WebSocket on loopback.

The server (the REST app, one worker, `server.live_sessions` set to the client count) runs
in this process on 127.0.0.1; each client is a thread that plays the clip's frames as JPEG
at the camera's rate, with at most two frames unanswered as the Live tab's script does (a
camera frame that comes while two are out is not sent: counted as dropped, with the frames
the server dropped). Measured after a warm-up: fps delivered, latency (frame sent -> fused
frame received) median / p95, dropped, the process's CPU (server + clients, in cores), and,
beside it, the same frames' per-frame engine / detection / blend cost through LiveSession
alone, one frame at a time.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_SIZES = "640x480,1280x720"
DEFAULT_CLIENTS = "1,2"
CAMERA_FPS = 25.0
WARMUP_S = 3.0
JPEG_QUALITY = 80  # what the Live tab's script sends (canvas.toBlob at 0.8)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    from ..errors import ConfigError

    sizes = []
    for part in text.replace(" ", "").split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--sizes: expected camera sizes like 640x480,1280x720, got {part!r}") from None
        if not (64 <= w <= 3840 and 64 <= h <= 2160):
            raise ConfigError(f"--sizes: {part} is outside 64x64-3840x2160")
        sizes.append((w, h))
    return sizes


def camera_frames(clip: str | Path, size: tuple[int, int], limit: int = 250) -> list[np.ndarray]:
    """The clip's first `limit` frames cropped to the camera's aspect and resized, RGB."""
    import cv2

    from ..video.io import VideoReader

    w, h = size
    frames = []
    for frame in VideoReader(clip):
        img = frame.rgb
        fh, fw = img.shape[:2]
        if fw * h > fh * w:  # wider than the camera: crop the sides
            cw = fh * w // h
            img = img[:, (fw - cw) // 2:(fw - cw) // 2 + cw]
        else:
            ch = fw * h // w
            img = img[(fh - ch) // 2:(fh - ch) // 2 + ch]
        frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
        if len(frames) >= limit:
            break
    return frames


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()


class _Camera:
    """One client: plays `frames` at `fps` into the WebSocket, two frames in flight at most."""

    def __init__(self, url: str, source: bytes, frames: list[bytes], fps: float):
        self.url, self.source, self.frames, self.fps = url, source, frames, fps
        self.sent: dict[int, float] = {}  # frame number -> time sent, while unanswered
        self.received: list[tuple[float, float]] = []  # (time received, latency s)
        self.skipped: list[float] = []  # times of camera frames not sent: two were out
        self.server_dropped = 0
        self.error: str | None = None
        self._lock = threading.Lock()

    def run(self, ready: threading.Barrier, stop: threading.Event) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, max_size=None, open_timeout=30) as ws:
                ws.send(self.source)
                json.loads(ws.recv(timeout=60))
                ready.wait(120)
                receiver = threading.Thread(target=self._receive, args=(ws,), daemon=True)
                receiver.start()
                start, k = time.monotonic(), 0
                while not stop.is_set():
                    with self._lock:
                        free = len(self.sent) < 2
                        if free:
                            self.sent[k] = time.monotonic()
                    if free:
                        ws.send(self.frames[k % len(self.frames)])
                    else:
                        self.skipped.append(time.monotonic())
                    k += 1
                    time.sleep(max(0.0, start + k / self.fps - time.monotonic()))
                ws.close()
                receiver.join(10)
        except Exception as exc:  # reported in the results, not raised from a thread
            self.error = f"{type(exc).__name__}: {exc}"
            ready.abort()

    def _receive(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                info = json.loads(ws.recv())
                if info.get("type") != "frame":
                    continue
                ws.recv()  # the fused JPEG
                now = time.monotonic()
                with self._lock:
                    t0 = self.sent.pop(min(self.sent))  # answers come in the order sent
                self.received.append((now, now - t0))
                self.server_dropped = int(info.get("dropped", 0))
        except (ConnectionClosed, ValueError):
            return


def _serve(clients: int):
    """The REST app with its live route on a free loopback port, in a thread."""
    import uvicorn

    from ..api import create_rest_app
    from ..config import Settings
    from ..server import bind_socket
    from ..service import FusionPool

    settings = Settings(server={"workers": 1, "live_sessions": clients, "live_idle_seconds": 30})
    pool = FusionPool(settings)
    app = create_rest_app(settings, pool)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, pool, sock.getsockname()[1]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def stream_run(port: int, source: bytes, frames: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` cameras at once for WARMUP_S + `seconds`; numbers from after the warm-up."""
    cams = [_Camera(f"ws://127.0.0.1:{port}/api/v1/live", source, frames, CAMERA_FPS) for _ in range(clients)]
    ready, stop = threading.Barrier(clients + 1), threading.Event()
    threads = [threading.Thread(target=c.run, args=(ready, stop), daemon=True) for c in cams]
    for t in threads:
        t.start()
    try:
        ready.wait(180)
    except threading.BrokenBarrierError:
        pass
    errors = [c.error for c in cams if c.error]
    if not errors:
        time.sleep(WARMUP_S)
        t0, cpu0 = time.monotonic(), _cpu()
        time.sleep(seconds)
        t1, cpu1 = time.monotonic(), _cpu()
    stop.set()
    for t in threads:
        t.join(30)
    errors = [c.error for c in cams if c.error]
    if errors:
        return {"clients": clients, "error": errors[0]}
    per_client = []
    all_latencies = []
    for c in cams:
        lat = [latency for at, latency in c.received if t0 <= at < t1]
        all_latencies += lat
        per_client.append({"fps": round(len(lat) / (t1 - t0), 2),
                           "latency_median_ms": _ms(lat, 50), "latency_p95_ms": _ms(lat, 95),
                           "dropped": sum(1 for at in c.skipped if t0 <= at < t1)})
    return {
        "clients": clients, "seconds": round(t1 - t0, 2), "camera_fps": CAMERA_FPS,
        "fps": round(statistics.mean(p["fps"] for p in per_client), 2),
        "fps_min": min(p["fps"] for p in per_client),
        "latency_median_ms": _ms(all_latencies, 50), "latency_p95_ms": _ms(all_latencies, 95),
        "dropped": sum(p["dropped"] for p in per_client) + sum(c.server_dropped for c in cams),
        "cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2), "per_client": per_client,
    }


def _ms(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, pct)) * 1000, 1)


def engine_cost(fuser, source: bytes, frames: list[np.ndarray]) -> dict:
    """Per-frame stage times of the same frames through LiveSession alone, one at a time
    (no server, no JPEG): what the engine, detection and blend cost per frame; and the
    process's CPU time per frame (all threads), which a machine busy with other work
    inflates far less than the wall times."""
    from ..video.live import LiveSession

    session = LiveSession(fuser, source, in_flight=1)
    fused = 0
    t0, cpu0 = time.perf_counter(), _cpu()
    for k, frame in enumerate(frames):
        fused += session.fuse(session.plan(frame, k / CAMERA_FPS)).fused > 0
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    session.close()
    n = max(fused, 1)
    timings = session.tracker.timings
    return {"frames": len(frames), "frames_fused": fused, "frame_ms": round(wall / len(frames) * 1000, 1),
            "frame_cpu_ms": round(cpu / len(frames) * 1000, 1),
            **{f"{stage}_ms": round(timings.get(stage, 0.0) / n * 1000, 1)
               for stage in ("detect", "engine", "blend", "paste")}}


def run_live_bench(sizes: list[tuple[int, int]], clients: list[int], clip: str | Path, source: str | Path,
                   seconds: float) -> list[dict]:
    """One entry per camera size and client count (see the module's docstring)."""
    from ..pipeline import Fuser

    src = Path(source).read_bytes()
    fuser = Fuser()
    results = []
    for size in sizes:
        frames = camera_frames(clip, size)
        cost = engine_cost(fuser, src, frames[:100])
        jpegs = [_jpeg(f) for f in frames]
        for n in clients:
            server, thread, pool, port = _serve(n)
            try:
                run = stream_run(port, src, jpegs, n, seconds)
            finally:
                server.should_exit = True
                thread.join(15)
                pool.shutdown()
            entry = {"size": f"{size[0]}x{size[1]}", **run, "per_frame": cost, "clip": Path(clip).name}
            results.append(entry)
            print(_line(entry), flush=True)
    return results


def _line(e: dict) -> str:
    if "error" in e:
        return f"{e['size']} x{e['clients']}: failed: {e['error']}"
    c = e["per_frame"]
    return (f"{e['size']}, {e['clients']} client(s): {e['fps']} fps each (min {e['fps_min']}), latency "
            f"{e['latency_median_ms']} / {e['latency_p95_ms']} ms (median / p95), dropped {e['dropped']}, "
            f"CPU {e['cpu_cores']} cores; per frame alone: {c['frame_ms']} ms, {c['frame_cpu_ms']} CPU-ms "
            f"(engine {c['engine_ms']}, "
            f"detect {c['detect_ms']}, blend {c['blend_ms']})")


def markdown(results: list[dict]) -> str:
    rows = ["| camera | clients | fps delivered (each, min) | latency median / p95 ms | dropped | CPU cores | "
            "per frame alone ms (engine / detect / blend) | CPU-ms per frame alone |", "|---|---|---|---|---|---|---|---|"]
    for e in results:
        if "error" in e:
            rows.append(f"| {e['size']} | {e['clients']} | failed: {e['error']} | | | | | |")
            continue
        c = e["per_frame"]
        rows.append(f"| {e['size']} | {e['clients']} | {e['fps']} ({e['fps_min']}) | {e['latency_median_ms']} / "
                    f"{e['latency_p95_ms']} | {e['dropped']} | {e['cpu_cores']} | {c['frame_ms']} "
                    f"({c['engine_ms']} / {c['detect_ms']} / {c['blend_ms']}) | {c['frame_cpu_ms']} |")
    return "\n".join(rows)
