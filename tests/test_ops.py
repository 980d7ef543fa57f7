"""What an operator relies on besides the faults (test_faults.py): a truncated clip said to be
truncated everywhere, job files out of the WebUI's reach, a bounded Gradio cache and
outputs/ retention, an unusable output.dir refused at start, the docs behind the key, and
an OpenAPI document and error answers true to the API."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import video_clips as vc  # noqa: E402
from facefuse.cli import main  # noqa: E402
from facefuse.config import Settings, load_config  # noqa: E402
from facefuse.errors import ConfigError  # noqa: E402

TestClient = pytest.importorskip("fastapi.testclient").TestClient
KEY = "k3y-for-tests"
JOB = "0123456789abcdef0123456789abcdef"


class NoPool:
    """A pool for the routes that never reach a worker (no models loaded)."""

    capacity, workers = 1, 1

    def status(self) -> dict:
        return {"workers": 1, "busy": 0, "queued": 0, "capacity": 1, "done": 0}

    def submit(self, fn, *args, bounded=True):
        raise AssertionError("nothing runs on a worker here")


def rest_app(tmp_path, api_key=None):
    from facefuse.server import create_app

    return create_app(Settings(output={"dir": str(tmp_path / "out")}), pool=NoPool(), api_key=api_key, webui=False)


# -- 3: a truncated clip ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def truncated(tmp_path_factory, target_path) -> Path:
    """Two thirds of a faststart MP4 (index first): its first frames decode, the rest is gone."""
    folder = tmp_path_factory.mktemp("trunc")
    whole = vc.write_clip(folder / "whole.mp4", vc.pan_frames(target_path, 40, (240, 160)), fps=20)
    data = vc.faststart(whole, folder / "fast.mp4").read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return cut


def test_a_truncated_clip_is_fused_as_far_as_it_goes_and_the_cli_and_rest_say_so(truncated, source_path, tmp_path,
                                                                                capsys):
    from facefuse.server import create_app
    from facefuse.service import FusionPool

    assert main(["video", str(source_path), str(truncated), "-o", str(tmp_path / "cli.mp4")]) == 0  # exit 0 ...
    out = capsys.readouterr().out
    assert "warning: " in out and "of 40 frames decoded (truncated?)" in out  # ... with the warning
    warning = out.split("warning: ", 1)[1].strip()

    settings = Settings(output={"dir": str(tmp_path / "out")}, server={"workers": 1})
    pool = FusionPool(settings)
    try:
        with TestClient(create_app(settings, pool=pool, webui=False)) as client:
            files = {"source": ("s.jpg", source_path.read_bytes()), "video": ("cut.mp4", truncated.read_bytes())}
            job = client.post("/api/v1/video", files=files).json()["id"]
            deadline = time.time() + 120
            while (st := client.get(f"/api/v1/jobs/{job}").json())["state"] in ("queued", "running"):
                assert time.time() < deadline
                time.sleep(0.1)
    finally:
        pool.shutdown()
    assert st["state"] == "done" and st["warnings"] == [warning]


def test_the_webui_says_a_clip_was_truncated(truncated, source_path, tmp_path):
    gr = pytest.importorskip("gradio")
    from facefuse.service import FusionPool
    from facefuse.webui import build_ui

    settings = Settings(output={"dir": str(tmp_path / "out")})
    pool = FusionPool(settings, workers=1)
    try:
        demo = build_ui(settings, pool)
        dep = next(d for d in demo.fns.values() if getattr(d.fn, "__name__", "") == "on_fuse"
                   and getattr(d.inputs[1], "elem_id", "") == "video_clip")
        values = [c.value for c in dep.inputs[2:]]
        _video, info, _download = dep.fn(str(source_path), str(truncated), *values, progress=gr.Progress())
    finally:
        pool.shutdown()
    assert info.startswith("**Done:**") and "of 40 frames decoded (truncated?)" in info and "Warning" in info


# -- 4 and 2: what the WebUI may serve, and how long it keeps things ---------------------------------
def test_the_webui_serves_results_but_not_job_files(tmp_path):
    pytest.importorskip("gradio")
    from facefuse.server import create_app

    out = tmp_path / "out"
    app = create_app(Settings(output={"dir": str(out)}), pool=NoPool(), webui=True)
    job = out / "jobs" / JOB
    job.mkdir(parents=True)
    for name in ("source", "input.mp4", "job.json"):
        (job / name).write_bytes(b"private")
    (out / "20260101-000000-000.jpg").write_bytes(b"a result")
    with TestClient(app) as client:
        for name in ("source", "input.mp4", "job.json"):
            assert client.get(f"/gradio_api/file={job / name}").status_code == 403
        assert client.get(f"/gradio_api/file={out / '20260101-000000-000.jpg'}").content == b"a result"


def test_the_webui_cache_is_bounded_by_ui_cache_minutes(tmp_path):
    pytest.importorskip("gradio")
    from facefuse.webui import build_ui

    settings = Settings(output={"dir": str(tmp_path / "out")}, server={"ui_cache_minutes": 10})
    assert build_ui(settings, NoPool()).delete_cache == (150, 600)  # every 2.5 min, what is older than 10 min


def test_results_older_than_keep_days_and_stale_temps_are_removed_and_nothing_else(tmp_path):
    pytest.importorskip("gradio")
    from facefuse.webui import ResultStore

    out = tmp_path / "out"
    out.mkdir()
    old = [out / "20200101-000000-000.jpg", out / "20200101-000000-000.json", out / "20200101-000000-001-1.mp4"]
    mine = [out / "notes.jpg", out / "20200101.json"]  # not of the WebUI's naming: never touched
    new = [out / "20260101-000000-000.png", out / "20260101-000000-000.json"]
    for p in old + mine + new:
        p.write_bytes(b"x")
    week_ago = time.time() - 7 * 86400
    for p in old + mine:
        os.utime(p, (week_ago, week_ago))
    (out / "jobs").mkdir()
    (out / f".20260101-000000-001.jpg.{_dead_pid()}.abcd1234.tmp").write_bytes(b"half")  # a save killed with -9
    ResultStore(out, keep_seconds=2 * 86400)
    assert sorted(p.name for p in out.iterdir()) == sorted([p.name for p in mine + new] + ["jobs"])
    ResultStore(out)  # keep_days 0: kept for ever
    assert len(list(out.iterdir())) == 5


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- 6: output.dir ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["/dev/null", "a file"])
def test_an_unusable_output_dir_stops_the_server_with_exit_2_naming_the_key(where, tmp_path, capsys):
    if where == "a file":
        where = str(tmp_path / "file")
        Path(where).write_text("not a folder")
    config = tmp_path / "config.yaml"
    config.write_text(f"output:\n  dir: {where}\nserver:\n  workers: 1\n")
    assert main(["serve", "--no-webui", "--port", "0", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facefuse: error: output.dir: ") and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_output_dir_is_refused(blank):
    with pytest.raises(ConfigError, match=r"output\.dir: must name a folder"):
        load_config(None, {"output": {"dir": blank}})


# -- 7: the docs and the key -------------------------------------------------------------------------------
def test_docs_and_schema_need_the_key_when_there_is_one(tmp_path):
    with TestClient(rest_app(tmp_path, api_key=KEY)) as client:
        for path in ("/docs", "/openapi.json"):
            r = client.get(path)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
            assert r.headers["WWW-Authenticate"].startswith("Basic")  # a browser asks for it
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200
            basic = base64.b64encode(f"anyone:{KEY}".encode()).decode()
            assert client.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200
            wrong = base64.b64encode(b"anyone:wrong").decode()
            assert client.get(path, headers={"Authorization": f"Basic {wrong}"}).status_code == 401
        assert client.get("/api/v1/health").status_code == 200  # the one open route
    with TestClient(rest_app(tmp_path)) as client:  # no key: nothing to ask
        assert client.get("/openapi.json").status_code == 200


# -- 8: the OpenAPI document and the error answers ------------------------------------------------------
def test_the_schema_lists_the_real_error_answers_with_the_error_body_and_examples(tmp_path):
    with TestClient(rest_app(tmp_path)) as client:
        spec = client.get("/openapi.json").json()
    expected = {("/api/v1/fuse", "post"): {"400", "413", "415", "422", "503", "507"},
                ("/api/v1/detect", "post"): {"400", "413", "415", "422", "503"},
                ("/api/v1/video", "post"): {"400", "413", "415", "503", "507"},
                ("/api/v1/jobs/{job_id}", "get"): {"404"},
                ("/api/v1/jobs/{job_id}/result", "get"): {"404", "409"},
                ("/api/v1/jobs/{job_id}", "delete"): {"404"}}
    for (path, method), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert statuses <= set(responses), (path, method, sorted(responses))
        for status in statuses:
            body = responses[status]["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            assert set(body["example"]) >= {"error", "message"}
    fields = spec["components"]["schemas"]
    fuse_form = next(v for k, v in fields.items() if k.startswith("Body_fuse"))["properties"]
    assert fuse_form["ratio"]["examples"] == [0.8] and fuse_form["format"]["examples"] == ["jpg"]


def _raw(app, method: str, path: str) -> tuple[int, dict, bytes]:
    """One request exactly as given (no client normalises `..` away)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [], "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    headers = {k.decode().lower(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("method, path, status, allow", [
    ("PUT", "/api/v1/fuse", 405, "POST"),
    ("GET", "/api/v1/detect", 405, "POST"),
    ("DELETE", "/api/v1/health", 405, "GET"),
    ("PATCH", f"/api/v1/jobs/{JOB}", 405, "GET, DELETE"),
    ("POST", f"/api/v1/jobs/{JOB}/result", 405, "GET"),
    ("TRACE", "/api/v1/fuse", 405, "POST"),
    ("TRACE", "/api/v1/nothing", 404, None),
    ("OPTIONS", "/api/v1/video", 405, "POST"),
    ("GET", "/api/v1/jobs/../x", 404, None),
    ("GET", "/api/v1/jobs/../../etc/passwd", 404, None),
    ("PUT", "/api/v1/jobs/../result", 404, None),
])
def test_wrong_methods_and_paths_get_the_error_body_and_405_an_allow_header(tmp_path, method, path, status, allow):
    import json

    status_got, headers, body = _raw(rest_app(tmp_path), method, path)
    assert status_got == status
    assert json.loads(body)["error"] == ("method_not_allowed" if status == 405 else "not_found")
    assert headers.get("allow") == allow
