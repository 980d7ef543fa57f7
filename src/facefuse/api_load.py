"""REST load run: `python -m facefuse.api_load [--requests 200] [--concurrency 8] [--workers 1,2]`.

For each worker count it starts `facefuse serve --no-webui --port 0 --workers N` in a
subprocess (loopback, a throw-away output folder), warms it up, then sends the requests
from one asyncio client at the given concurrency and reports latency percentiles,
throughput and failures (any status but 200, or a body that is not the expected image).
The client shares the machine's cores with the server, as a local user's browser would.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _start_server(workers: int, queue_size: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    cfg = tmp / f"config-{workers}.yaml"
    cfg.write_text(f"output:\n  dir: {tmp / 'outputs'}\nserver:\n  queue_size: {queue_size}\n")
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
    return proc, line.split("REST ", 1)[1].split()[0]  # http://127.0.0.1:PORT/api/v1


async def _run(url: str, source: bytes, target: bytes, fields: dict, n: int, concurrency: int,
               expect_size: tuple[int, int] | None) -> dict:
    import httpx
    from PIL import Image

    latencies: list[float] = []
    server_s: list[float] = []
    failures: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/fuse", data=fields, files={
                        "source": ("source.jpg", source, "image/jpeg"), "target": ("target.jpg", target, "image/jpeg")})
                except httpx.HTTPError as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    return
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures[str(r.status_code)] = failures.get(str(r.status_code), 0) + 1
                    return
                if expect_size and Image.open(io.BytesIO(r.content)).size != expect_size:
                    failures["wrong size"] = failures.get("wrong size", 0) + 1
                    return
                server_s.append(float(r.headers["x-facefuse-seconds"]))

        for _ in range(min(4, n)):  # warm-up, not counted
            await one()
        latencies.clear()
        server_s.clear()
        failures.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "requests": n, "concurrency": concurrency, "ok": len(server_s), "failures": failures,
        "wall_s": round(wall, 2), "req_per_s": round(len(server_s) / wall, 2),
        "p50_s": round(q[49], 3), "p95_s": round(q[94], 3), "p99_s": round(q[98], 3), "max_s": round(max(latencies), 3),
        "server_mean_s": round(statistics.fmean(server_s), 3) if server_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facefuse.api_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare (default 1,2)")
    ap.add_argument("--source", default=str(ROOT / "examples" / "source.jpg"))
    ap.add_argument("--target", default=str(ROOT / "examples" / "target.jpg"))
    ap.add_argument("--resolution", default="original")
    ap.add_argument("--format", default="jpg")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    from PIL import Image

    from .roi import output_size
    from .config import _parse_resolution

    source, target = Path(args.source).read_bytes(), Path(args.target).read_bytes()
    tw, th = Image.open(io.BytesIO(target)).size
    expect = output_size(tw, th, _parse_resolution(args.resolution))
    fields = {"resolution": args.resolution, "format": args.format}
    results = []
    with tempfile.TemporaryDirectory(prefix="facefuse-load-") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            proc, url = _start_server(workers, max(32, args.concurrency), Path(tmp))
            try:
                res = asyncio.run(_run(url, source, target, fields, args.requests, args.concurrency, expect))
            finally:
                proc.terminate()
                proc.wait(15)
            res = {"workers": workers, "cpus": os.cpu_count(), "target": f"{tw}x{th}",
                   "output": f"{expect[0]}x{expect[1]}", **res}
            results.append(res)
            print(json.dumps(res), flush=True)
    print("\n| workers | requests | concurrency | output | ok | failures | req/s | p50 s | p95 s | p99 s | max s | server s/req |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['requests']} | {r['concurrency']} | {r['output']} | {r['ok']} | "
              f"{sum(r['failures'].values())} | {r['req_per_s']} | {r['p50_s']} | {r['p95_s']} | {r['p99_s']} | "
              f"{r['max_s']} | {r['server_mean_s']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(not r["failures"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
