"""Start `facefuse serve` as a user would, for the tests that talk to a real server process;
and wait for a REST job to finish, on any client (a TestClient or an httpx one)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import httpx

# the CLI run by this interpreter: what `facefuse serve` is in the test's environment
SERVE = [sys.executable, "-c", "import sys; from facefuse.cli import main; sys.exit(main())", "serve"]


@contextmanager
def serving(command: list[str], cwd: Path, env: dict, wait_s: float = 30.0):
    """Run `command` (a `facefuse serve --port 0 ...`), yield the WebUI's URL once
    /api/v1/health answers 200, and stop the server afterwards."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    try:
        line = proc.stdout.readline()  # "facefuse: WebUI http://127.0.0.1:PORT/  REST ..."
        assert "WebUI http://127.0.0.1:" in line, line + proc.stdout.read()
        url = line.split("WebUI ", 1)[1].split()[0]
        # read the rest of its output as it comes: a pipe nobody reads fills (64 KB of log
        # lines) and the server then blocks on its next write, mid-request
        tail: deque[str] = deque(maxlen=200)
        threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True).start()
        deadline = time.time() + wait_s
        while (health := httpx.get(url + "api/v1/health", timeout=10)).status_code != 200:
            assert time.time() < deadline, health.text
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_job(client, job_id: str, timeout: float = 120) -> dict:
    """The job's status once it is neither queued nor running (fails after `timeout` s)."""
    deadline = time.time() + timeout
    while (st := client.get(f"/api/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.time() < deadline, st
        time.sleep(0.1)
    return st
