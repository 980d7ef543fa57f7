"""`bench live`: a clip played as a camera through the real `/api/v1/live` WebSocket on loopback.

The server (the REST app, one worker, `server.live_sessions` set to the client count, its
fusing processes) runs in this process on 127.0.0.1. The cameras run in a process of their
own, as a browser does: each is a thread that plays the clip's frames as JPEG at the
camera's rate, with at most two frames unanswered, as the Live tab's script does: a camera
frame that comes while two are out is not sent (counted as dropped, with the frames the
server dropped), and when an answer frees a slot the newest camera frame not yet sent goes
at once. Measured after a warm-up: fps delivered, latency (frame sent -> fused frame
received) median / p95, dropped, the CPU of this process and its children (server,
fusing processes, cameras; in cores), the server's own median times (arrival to sent,
planning, fusion), and, beside it, the same frames' per-frame engine / detection / blend
cost through LiveSession alone, one frame at a time.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import threading
import time
from dataclasses import dataclass
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
        self.server: list[tuple] = []  # (time received, the server's ms: arrival to sent, planning, fusion)
        self.skipped: list[float] = []  # times of camera frames not sent: two were out
        self.server_dropped = 0
        self.error: str | None = None
        self._lock = threading.Lock()
        self._answered = threading.Event()  # an answer came: a slot is free
        self.latest: int | None = None  # the newest camera frame not sent (two were out)

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
                    self._camera_frame(ws, k)
                    k += 1
                    # until the camera's next frame: a slot that frees takes this one at once
                    while (left := start + k / self.fps - time.monotonic()) > 0:
                        if self._answered.wait(left):
                            self._answered.clear()
                            self._send_latest(ws)
                ws.close()
                receiver.join(10)
        except Exception as exc:  # reported in the results, not raised from a thread
            self.error = f"{type(exc).__name__}: {exc}"
            ready.abort()

    def _camera_frame(self, ws, k: int) -> None:
        """The camera's frame `k`: sent if fewer than two are out, else kept as the latest
        (the page's <video> element always shows the camera's newest frame)."""
        with self._lock:
            free = len(self.sent) < 2
            if free:
                self.sent[k] = time.monotonic()
                self.latest = None
            else:
                self.latest = k
        if free:
            ws.send(self.frames[k % len(self.frames)])
        else:
            self.skipped.append(time.monotonic())

    def _send_latest(self, ws) -> None:
        """An answer freed a slot: the newest camera frame not yet sent goes now, as the
        Live tab's script sends on each answer (no wait for the next camera tick)."""
        with self._lock:
            k, self.latest = self.latest, None
            if k is None or len(self.sent) >= 2:
                self.latest = k
                return
            self.sent[k] = time.monotonic()
            self.skipped.pop()  # it was counted as not sent
        ws.send(self.frames[k % len(self.frames)])

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
                self.server.append((now, info.get("server_ms"), info.get("plan_ms"), info.get("fuse_ms")))
                self._answered.set()
                self.server_dropped = int(info.get("dropped", 0))
        except (ConnectionClosed, ValueError):
            return


def _serve(clients: int):
    """The REST app with its live route on a free loopback port, in a thread."""
    import uvicorn

    from ..api import create_rest_app
    from ..config import Settings
    from ..server import WS_DEFLATE, bind_socket
    from ..service import FusionPool

    settings = Settings(server={"workers": 1, "live_sessions": clients, "live_idle_seconds": 30})
    pool = FusionPool(settings)
    app = create_rest_app(settings, pool)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_per_message_deflate=WS_DEFLATE))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, pool, sock.getsockname()[1]


def _cpu() -> float:
    """CPU seconds of this process and its live children (the fusing processes), from /proc
    where there is one."""
    t = os.times()
    total = t.user + t.system
    try:
        children = [pid for task in Path(f"/proc/{os.getpid()}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
    except OSError:
        return total
    tick = os.sysconf("SC_CLK_TCK")
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _play(url: str, source: bytes, frames: list[bytes], clients: int, ready, answered, stop, results) -> None:
    """In the cameras' own process (a browser is not in the server's): `clients` cameras
    until `stop`; `answered` is set once every camera has had a fused frame back; each one's
    records go back on `results`."""
    cams = [_Camera(url, source, frames, CAMERA_FPS) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=c.run, args=(barrier, stop), daemon=True) for c in cams]
    for t in threads:
        t.start()
    try:
        barrier.wait(180)
    except threading.BrokenBarrierError:
        pass
    ready.set()
    while not stop.is_set() and not all(c.received or c.error for c in cams):
        stop.wait(0.05)
    answered.set()
    stop.wait()
    for t in threads:
        t.join(30)
    results.put([(c.received, c.server, c.skipped, c.server_dropped, c.error) for c in cams])


def stream_run(port: int, source: bytes, frames: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` cameras at once, in a process of their own, for WARMUP_S + `seconds`;
    numbers from after the warm-up, which starts when every camera has had its first fused
    frame back (on a loaded machine the first frames once came after a fixed warm-up and the
    window measured none)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, answered, stop, results = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    player = ctx.Process(target=_play, args=(f"ws://127.0.0.1:{port}/api/v1/live", source, frames, clients,
                                             ready, answered, stop, results), daemon=True)
    player.start()
    ready.wait(240)
    answered.wait(240)
    time.sleep(WARMUP_S)
    t0, cpu0 = time.monotonic(), _cpu()
    time.sleep(seconds)
    t1, cpu1 = time.monotonic(), _cpu()
    stop.set()
    try:
        cams = [_Record(*r) for r in results.get(timeout=120)]
    except queue.Empty:
        cams = [_Record([], [], [], 0, "the cameras' process gave no results")]
    player.join(30)
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
    served = [row[1:] for c in cams for row in c.server if t0 <= row[0] < t1 and None not in row]
    server_ms = {name: round(float(np.median([row[i] for row in served])), 1) if served else None
                 for i, name in enumerate(("server", "plan", "fuse"))}
    return {
        "clients": clients, "seconds": round(t1 - t0, 2), "camera_fps": CAMERA_FPS,
        "server_median_ms": server_ms,
        "fps": round(statistics.mean(p["fps"] for p in per_client), 2),
        "fps_min": min(p["fps"] for p in per_client),
        "latency_median_ms": _ms(all_latencies, 50), "latency_p95_ms": _ms(all_latencies, 95),
        "dropped": sum(p["dropped"] for p in per_client) + sum(c.server_dropped for c in cams),
        "cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2), "per_client": per_client,
    }


@dataclass
class _Record:
    received: list
    server: list
    skipped: list
    server_dropped: int
    error: str | None


def _ms(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, pct)) * 1000, 1)


def engine_cost(fuser, source: bytes, frames: list[np.ndarray]) -> dict:
    """Per-frame stage times of the same frames through LiveSession alone, one at a time
    (no server, no JPEG): what the engine, detection and blend cost per frame; and the
    process's CPU time per frame (all threads), which a machine busy with other work
    inflates far less than the wall times. The periodic full search runs in line here
    (counted in detection), not on its thread beside the stream as a live session's does:
    beside, it shared the two cores with the engine and its time showed in the engine's.
    The engine's one-time set-up is done as the session opens (Engine.warm_up), as a live
    connection's is, so it is in no frame's time (it had put about 1.5 ms on the mean)."""
    from ..video.live import LiveSession

    session = LiveSession(fuser, source, in_flight=1, search_beside=False)
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
    from ..video.live import stop_fusing_processes

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
                stop_fusing_processes()
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
            f"CPU {e['cpu_cores']} cores; in the server (median ms) {e['server_median_ms']}; "
            f"per frame alone: {c['frame_ms']} ms, {c['frame_cpu_ms']} CPU-ms "
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
