"""REST load run: `python -m facefuse.api_load [--requests 200] [--concurrency 8] [--workers 1,2]`.

For each worker count it starts `facefuse serve --no-webui --port 0 --workers N` in a
subprocess (loopback, a throw-away output folder) and warms it up; then it sends the
requests from one asyncio client at the given concurrency, in interleaved rounds (a slice
of the requests to each server in turn, so a change in the machine's load hits every
configuration alike), and reports latency percentiles, throughput and failures (any status
but 200, or a body that is not the expected image). The client shares the machine's cores
with the server, as a local user's browser would.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .commands import SAMPLES


def _start_server(workers: int, threads: int, queue_size: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    cfg = tmp / f"config-{workers}x{threads}.yaml"
    cfg.write_text(f"output:\n  dir: {tmp / 'outputs'}\nserver:\n  queue_size: {queue_size}\n"
                   f"inference:\n  threads: {threads}\n")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("FACEFUSE_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from facefuse.cli import main; sys.exit(main())", "serve",
         "--no-webui", "--port", "0", "--workers", str(workers), "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    line = proc.stdout.readline()
    if "REST http://" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stdout.read()}")
    # keep reading what the server logs, so a full pipe never blocks it mid-run
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, line.split("REST ", 1)[1].split()[0]  # http://127.0.0.1:PORT/api/v1


class _Client:
    """One server's client and the measurements of its requests."""

    def __init__(self, url: str, concurrency: int):
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx.AsyncClient(base_url=url, timeout=300, limits=limits)
        self.sem = asyncio.Semaphore(concurrency)
        self.latencies: list[float] = []
        self.server_s: list[float] = []
        self.failures: dict[str, int] = {}
        self.busy_s = 0.0

    def _fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    async def one(self, source: bytes, target: bytes, fields: dict, expect: tuple[int, int] | None) -> None:
        import httpx
        from PIL import Image

        async with self.sem:
            t0 = time.perf_counter()
            try:
                r = await self.http.post("/fuse", data=fields, files={
                    "source": ("source.jpg", source, "image/jpeg"), "target": ("target.jpg", target, "image/jpeg")})
            except httpx.HTTPError as exc:
                return self._fail(type(exc).__name__)
            self.latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                return self._fail(str(r.status_code))
            if expect and Image.open(io.BytesIO(r.content)).size != expect:
                return self._fail("wrong size")
            self.server_s.append(float(r.headers["x-facefuse-seconds"]))

    async def batch(self, n: int, *args) -> None:
        t0 = time.perf_counter()
        await asyncio.gather(*(self.one(*args) for _ in range(n)))
        self.busy_s += time.perf_counter() - t0

    def summary(self) -> dict:
        lat = self.latencies
        if not lat:  # every request failed before an answer
            return {"ok": 0, "failures": self.failures, "wall_s": round(self.busy_s, 2), "req_per_s": 0.0,
                    "p50_s": None, "p95_s": None, "p99_s": None, "max_s": None, "server_mean_s": None}
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
        return {
            "ok": len(self.server_s), "failures": self.failures, "wall_s": round(self.busy_s, 2),
            "req_per_s": round(len(self.server_s) / self.busy_s, 2),
            "p50_s": round(q[49], 3), "p95_s": round(q[94], 3), "p99_s": round(q[98], 3), "max_s": round(max(lat), 3),
            "server_mean_s": round(statistics.fmean(self.server_s), 3) if self.server_s else None,
        }


async def _measure(urls: list[str], source: bytes, target: bytes, fields: dict, n: int, concurrency: int,
                   rounds: int, expect: tuple[int, int] | None) -> list[dict]:
    clients = [_Client(url, concurrency) for url in urls]
    args = (source, target, fields, expect)
    for c in clients:  # warm-up, not counted
        await c.batch(min(4, n), *args)
        c.latencies.clear(), c.server_s.clear(), c.failures.clear()
        c.busy_s = 0.0
    sizes = [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]
    for size in sizes:
        for c in clients:
            await c.batch(size, *args)
    for c in clients:
        await c.http.aclose()
    return [c.summary() for c in clients]


def _parse_config(spec: str) -> tuple[int, int]:
    workers, _, threads = spec.strip().partition("x")
    return int(workers), int(threads or 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facefuse.api_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="comma-separated configurations to compare: W (worker "
                    "threads) or WxT (W workers, OpenCV limited to T threads); default 1,2")
    ap.add_argument("--source", default=str(SAMPLES / "source.jpg"))
    ap.add_argument("--target", default=str(SAMPLES / "target.jpg"))
    ap.add_argument("--resolution", default="original")
    ap.add_argument("--format", default="jpg")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.json and Path(args.json).exists():
        raise SystemExit(f"{args.json}: already exists (remove it or choose another --json)")
    from PIL import Image

    from .config import FusionParams
    from .imaging import output_size

    source, target = Path(args.source).read_bytes(), Path(args.target).read_bytes()
    tw, th = Image.open(io.BytesIO(target)).size
    expect = output_size(tw, th, FusionParams.build(resolution=args.resolution).resolution)
    fields = {"resolution": args.resolution, "format": args.format}
    configs = [_parse_config(spec) for spec in args.workers.split(",")]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="facefuse-load-") as tmp:
        servers: list = []
        try:
            for w, t in configs:  # a server that fails to start stops the ones already started
                servers.append(_start_server(w, t, max(32, args.concurrency), Path(tmp)))
            summaries = asyncio.run(_measure([url for _, url in servers], source, target, fields, args.requests,
                                             args.concurrency, args.rounds, expect))
        finally:
            for proc, _ in servers:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
    results = [{"workers": w, "opencv_threads": t or "default", "cpus": os.cpu_count(), "load_avg": load, "target": f"{tw}x{th}",
                "output": f"{expect[0]}x{expect[1]}", "requests": args.requests, "concurrency": args.concurrency,
                **summary} for (w, t), summary in zip(configs, summaries, strict=True)]
    for r in results:
        print(json.dumps(r), flush=True)
    print("\n| workers | OpenCV threads | requests | concurrency | output | ok | failures | req/s | p50 s | p95 s | "
          "p99 s | max s | server s/req |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['opencv_threads']} | {r['requests']} | {r['concurrency']} | {r['output']} | {r['ok']} | "
              f"{sum(r['failures'].values())} | {r['req_per_s']} | {r['p50_s']} | {r['p95_s']} | {r['p99_s']} | "
              f"{r['max_s']} | {r['server_mean_s']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(not r["failures"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
