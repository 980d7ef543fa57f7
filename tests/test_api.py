"""REST API on a real uvicorn server (loopback, free port) with real photos: every endpoint,
every error status, the streaming upload limit, the bounded queue, the API key, and the
`serve` command's bind rules and config keys."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from PIL import Image

from facefuse.config import Settings, load_config
from facefuse.errors import ConfigError

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402

from facefuse.server import bind_socket, check_bind, create_app, is_loopback, resolve_api_key  # noqa: E402
from facefuse.service import FusionPool, QueueFull  # noqa: E402


def _run_uvicorn(app):
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    return server, thread, sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The whole app (REST + WebUI) served by uvicorn on a free loopback port."""
    out = tmp_path_factory.mktemp("outputs")
    settings = Settings(output={"dir": str(out)}, server={"workers": 2, "queue_size": 32})
    pool = FusionPool(settings)
    app = create_app(settings, pool=pool)
    server, thread, port = _run_uvicorn(app)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          limits=httpx.Limits(max_connections=32))
    yield SimpleNamespace(client=client, port=port, pool=pool, settings=settings, out=out)
    client.close()
    server.should_exit = True
    thread.join(10)
    pool.shutdown()


@pytest.fixture(scope="module")
def photos(source_path, target_path, group_path, noface_path):
    return SimpleNamespace(source=source_path.read_bytes(), target=target_path.read_bytes(),
                           group=group_path.read_bytes(), noface=noface_path.read_bytes())


def _fuse(client, source: bytes, target: bytes, **fields):
    files = {"source": ("source.jpg", source, "image/jpeg"), "target": ("target.jpg", target, "image/jpeg")}
    return client.post("/api/v1/fuse", files=files, data={k: str(v) for k, v in fields.items()})


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert body["message"] and "\n" not in body["message"] and "Traceback" not in body["message"]
    return body


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# -- endpoints -------------------------------------------------------------------------------
def test_health(live):
    r = live.client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["workers"] == 2 and body["capacity"] == 34
    assert body["engine"] == "classical"


def test_fuse_returns_jpeg_at_original_size_with_headers(live, photos):
    r = _fuse(live.client, photos.source, photos.target)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and img.size == (1200, 800)
    assert r.headers["x-facefuse-faces-used"] == "0"
    assert r.headers["x-facefuse-faces-found"] == "1"
    assert r.headers["x-facefuse-output-size"] == "1200x800"
    assert float(r.headers["x-facefuse-seconds"]) > 0
    assert "detect;dur=" in r.headers["server-timing"]
    # the face region changed, the rest is the target
    target = np.asarray(Image.open(io.BytesIO(photos.target)).convert("RGB"), np.float32)
    diff = np.abs(np.asarray(img.convert("RGB"), np.float32) - target).mean(axis=2)
    assert diff.mean() > 1.0 and np.median(diff) < 3.0


@pytest.mark.parametrize("fmt,media,pil", [("png", "image/png", "PNG"), ("webp", "image/webp", "WEBP")])
def test_fuse_formats_and_resolution(live, photos, fmt, media, pil):
    r = _fuse(live.client, photos.source, photos.target, format=fmt, resolution=512, mode="overlay",
              ratio=0.6, smoothing=0.2, brightness=0.1, contrast=-0.1, saturation=0.1, padding=0.3, threshold=0.5)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    img = Image.open(io.BytesIO(r.content))
    assert img.format == pil and img.size == (512, 341)


def test_fuse_group_all_faces_and_face_index(live, photos):
    r = _fuse(live.client, photos.source, photos.group, all_faces="true", resolution=512)
    assert r.status_code == 200, r.text
    found = int(r.headers["x-facefuse-faces-found"])
    assert found >= 4
    assert r.headers["x-facefuse-faces-used"] == ",".join(str(i) for i in range(found))
    r = _fuse(live.client, photos.source, photos.group, face_index=1, resolution=512)
    assert r.status_code == 200 and r.headers["x-facefuse-faces-used"] == "1"
    body = _error(_fuse(live.client, photos.source, photos.group, face_index=40), 422, "no_face")
    assert body["which"] == "target" and "40" in body["message"]


def test_detect(live, photos):
    r = live.client.post("/api/v1/detect", files={"image": ("g.jpg", photos.group, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (710, 473)
    faces = body["faces"]
    assert len(faces) >= 4 and [f["index"] for f in faces] == list(range(len(faces)))
    sizes = [f["size_px"] for f in faces]
    assert sizes == sorted(sizes, reverse=True)
    assert all(0 < f["score"] <= 1 and len(f["box"]) == 4 for f in faces)
    r = live.client.post("/api/v1/detect", files={"image": ("cat.png", photos.noface, "image/png")})
    assert r.status_code == 200 and r.json()["faces"] == []
    _error(live.client.post("/api/v1/detect", files={"image": ("x.jpg", photos.target)}, data={"threshold": "2"}),
           400, "bad_parameter")
    _error(live.client.post("/api/v1/detect", files={"image": ("x.txt", b"hello", "text/plain")}),
           415, "not_an_image")


def test_webui_and_docs_served_by_the_same_process(live):
    r = live.client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"] and "gradio" in r.text.lower()
    docs = live.client.get("/docs")
    assert docs.status_code == 200 and "/api-docs-static/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()  # works offline
    assert live.client.get("/api-docs-static/swagger-ui-bundle.js").status_code == 200
    spec = live.client.get("/openapi.json").json()
    assert {"/api/v1/fuse", "/api/v1/detect", "/api/v1/health"} <= set(spec["paths"])
    schema_ref = spec["paths"]["/api/v1/fuse"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    fields = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]["properties"]
    assert {"source", "target", "ratio", "mode", "smoothing", "brightness", "contrast", "saturation", "resolution",
            "face_index", "all_faces", "threshold", "padding", "format"} <= set(fields)


# -- errors -------------------------------------------------------------------------------------
def test_no_face_says_which_image(live, photos):
    body = _error(_fuse(live.client, photos.source, photos.noface), 422, "no_face")
    assert body["which"] == "target" and "target" in body["message"]
    body = _error(_fuse(live.client, photos.noface, photos.target), 422, "no_face")
    assert body["which"] == "source" and "source" in body["message"]


def test_bad_images(live, photos):
    body = _error(_fuse(live.client, b"%PDF-1.4 not an image", photos.target), 415, "not_an_image")
    assert body["message"].startswith("source image")
    body = _error(_fuse(live.client, photos.source, _png_claiming(20000, 20000)), 422, "too_many_pixels")
    assert body["message"].startswith("target image") and "400.0 MP" in body["message"]
    _error(_fuse(live.client, photos.source, photos.target[: len(photos.target) // 2]), 422, "damaged_image")
    _error(_fuse(live.client, photos.source, b""), 400, "empty_file")


@pytest.mark.parametrize("fields,name", [
    ({"ratio": 3}, "ratio"), ({"ratio": "abc"}, "ratio"), ({"mode": "swirl"}, "mode"),
    ({"resolution": 99999}, "resolution"), ({"format": "gif"}, "format"), ({"quality": 0}, "quality"),
    ({"face_index": -1}, "face_index"), ({"threshold": 1.5}, "threshold"), ({"all_faces": "maybe"}, "all_faces"),
])
def test_bad_parameters_are_400_naming_the_field(live, photos, fields, name):
    body = _error(_fuse(live.client, photos.source, photos.target, **fields), 400, "bad_parameter")
    assert body["message"].startswith(name)


def test_missing_field_unknown_path_wrong_method(live, photos):
    r = live.client.post("/api/v1/fuse", files={"source": ("s.jpg", photos.source)})
    assert "target" in _error(r, 400, "missing_field")["message"]
    _error(live.client.post("/api/v1/fuse", json={"source": "x"}), 415, "not_multipart")  # not "target: missing"
    _error(live.client.get("/api/v1/nothing"), 404, "not_found")
    _error(live.client.get("/api/v1/fuse"), 405, "method_not_allowed")


def _raw_request(port: int, head: bytes, body_chunks=(), timeout: float = 15) -> bytes:
    """Send a request by hand (to control Content-Length / chunking); return the reply's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending: what we test
        reply = b""
        while True:  # the 413 comes with Connection: close; read it whole
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            reply += data
        return reply


def test_oversized_upload_refused_from_content_length_without_reading_the_body(live):
    head = (b"POST /api/v1/fuse HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Content-Length: 10000000000\r\n\r\n")
    reply = _raw_request(live.port, head)  # no body is ever sent: a buffering server would wait
    assert reply.startswith(b"HTTP/1.1 413")
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "too_large" and "25 MB" in body["message"]


def test_oversized_chunked_upload_refused_while_streaming(live):
    head = (b"POST /api/v1/fuse HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    part = b'--B\r\nContent-Disposition: form-data; name="source"; filename="s.jpg"\r\n\r\n'
    block = b"\xff" * (1 << 20)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(block), block)] * 27
    # the body is never finished (no last chunk): only a server that counts as it reads can answer
    reply = _raw_request(live.port, head, chunks)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


@pytest.mark.slow
def test_sixteen_concurrent_requests_all_answered(live, photos):
    done_before = live.pool.done

    def one(i):
        return _fuse(live.client, photos.source, photos.target, resolution=512, ratio=0.5 + i / 40)

    with ThreadPoolExecutor(16) as ex:
        responses = list(ex.map(one, range(16)))
    assert [r.status_code for r in responses] == [200] * 16
    assert all(Image.open(io.BytesIO(r.content)).size == (512, 341) for r in responses)
    assert live.pool.done - done_before == 16


def test_full_queue_gets_503_with_retry_after_and_the_loop_stays_free(live, photos):
    gate = threading.Event()
    blockers = []
    try:
        with pytest.raises(QueueFull):
            for _ in range(live.pool.capacity + 1):
                blockers.append(live.pool.submit(lambda fuser: gate.wait(30)))
        assert len(blockers) == live.pool.capacity
        r = _fuse(live.client, photos.source, photos.target)
        body = _error(r, 503, "busy")
        assert int(r.headers["retry-after"]) >= 1 and "retry" in body["message"]
        health = live.client.get("/api/v1/health", timeout=5)  # answered while every worker is busy
        assert health.status_code == 200 and health.json()["queued"] == live.pool.queue_size
    finally:
        gate.set()
        for f in blockers:
            f.result(timeout=30)
    assert _fuse(live.client, photos.source, photos.target, resolution=512).status_code == 200


# -- API key --------------------------------------------------------------------------------------
def test_api_key_checked_on_every_rest_call_but_health(live, photos):
    app = create_app(live.settings, pool=live.pool, api_key="s3cret", webui=False)
    with TestClient(app) as client:
        assert client.get("/api/v1/health").status_code == 200  # a health probe needs no key
        _error(client.post("/api/v1/detect", files={"image": ("t.jpg", photos.target)}), 401, "unauthorized")
        _error(client.post("/api/v1/detect", files={"image": ("t.jpg", photos.target)},
                           headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        _error(client.post("/api/v1/fuse", files={"source": ("s.jpg", photos.source), "target": ("t.jpg", photos.target)}),
               401, "unauthorized")
        assert client.post("/api/v1/detect", files={"image": ("t.jpg", photos.target)},
                           headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = client.post("/api/v1/detect", files={"image": ("t.jpg", photos.target)}, headers={"X-API-Key": "s3cret"})
        assert r.status_code == 200 and len(r.json()["faces"]) == 1


def test_webui_asks_for_the_key_when_there_is_one(live):
    app = create_app(live.settings, pool=live.pool, api_key="s3cret")
    with TestClient(app) as client:
        assert client.get("/config").status_code == 401
        assert client.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert client.post("/login", data={"username": "me", "password": "s3cret"}).status_code == 200
        assert client.get("/config").status_code == 200


# -- serve: bind rules and config keys -------------------------------------------------------------
def test_bind_rules():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.10")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(ConfigError, match="server.api_key"):
        check_bind("0.0.0.0", None)


def test_api_key_precedence(monkeypatch):
    settings = Settings(server={"api_key": "from-config"})
    monkeypatch.delenv("FACEFUSE_API_KEY", raising=False)
    assert resolve_api_key(Settings()) is None
    assert resolve_api_key(settings) == "from-config"
    monkeypatch.setenv("FACEFUSE_API_KEY", "from-env")
    assert resolve_api_key(settings) == "from-env"
    assert resolve_api_key(settings, "from-flag") == "from-flag"
    monkeypatch.setenv("FACEFUSE_API_KEY", "  ")
    assert resolve_api_key(Settings()) is None


def test_serve_refuses_public_bind_without_key_and_taken_port(monkeypatch, capsys):
    from facefuse.cli import main

    monkeypatch.delenv("FACEFUSE_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facefuse: error: server.api_key") and "\n" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
        err = capsys.readouterr().err.strip()
        assert "server.port: port" in err and "is in use" in err and "\n" not in err


def test_server_config_keys(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("server:\n  host: 0.0.0.0\n  port: 8000\n  max_upload_mb: 5\n  api_key: k\n"
                   "  workers: 3\n  queue_size: 4\n")
    s = load_config(cfg)
    assert (s.server.host, s.server.port, s.server.max_upload_mb, s.server.api_key, s.server.workers,
            s.server.queue_size) == ("0.0.0.0", 8000, 5, "k", 3, 4)
    d = load_config(tmp_path / "config.yaml", {"server": {"port": 9000}})
    assert d.server.port == 9000 and d.server.workers == 3
    defaults = Settings().server
    assert (defaults.host, defaults.port, defaults.max_upload_mb, defaults.api_key) == ("127.0.0.1", 7860, 25, None)
    for bad, key in [({"port": 70000}, "server.port"), ({"max_upload_mb": 0}, "server.max_upload_mb"),
                     ({"queue_size": 0}, "server.queue_size"), ({"workers": -1}, "server.workers"),
                     ({"hots": "x"}, "server.hots")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(cfg, {"server": bad})


def test_small_upload_limit_applies_to_rest(live, photos):
    settings = live.settings.model_copy(update={"server": live.settings.server.model_copy(update={"max_upload_mb": 0.05})})
    app = create_app(settings, pool=live.pool, webui=False)
    with TestClient(app) as client:
        body = _error(_fuse(client, photos.source, photos.target), 413, "too_large")
        assert "server.max_upload_mb" in body["message"]


def test_pool_jobs_see_the_callers_context(live):
    """Gradio finds a request's progress bar through context variables: jobs must see them."""
    import contextvars

    var = contextvars.ContextVar("request", default=None)
    var.set("event-42")
    assert live.pool.call(lambda fuser: (var.get(), type(fuser).__name__)) == ("event-42", "Fuser")


def test_a_bug_is_a_json_500_not_a_traceback(live, photos, monkeypatch):
    import facefuse.api as api

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    app = create_app(live.settings, pool=live.pool, webui=False)
    monkeypatch.setattr(api, "detect_upload", broken)  # looked up by the route at call time
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/api/v1/detect", files={"image": ("t.jpg", photos.target)})
    body = _error(r, 500, "internal_error")
    assert "RuntimeError" in body["message"] and "boom" not in body["message"]


def test_a_large_jpeg_target_is_decoded_at_the_scale_the_output_needs(live, photos, target_path):
    """As `facefuse fuse` does: a 4352-px JPEG fused at 512 is decoded at 1/2 (still >= the
    1280 px detection looks at), not at full size; the result is the same size either way."""
    from facefuse.service import fuse_upload as fuse_uploads

    large = (target_path.parent / "large_target.jpg").read_bytes()
    fused = live.pool.call(fuse_uploads, photos.source, large, live.settings.fusion_params(resolution=512))
    assert fused.target.shape[:2] == (1452, 2176)
    assert fused.size == (512, 342) and fused.result.faces
    full = live.pool.call(fuse_uploads, photos.source, large, live.settings.fusion_params())
    assert full.target.shape[:2] == (2903, 4352) and full.size == (4352, 2903)


def test_fuse_face_mapping_fields(live, photos, data_dir, fuser):
    """face_N files map target face N to its own source, as the CLI's --map does."""
    other = (data_dir / "deepface_img2.jpg").read_bytes()
    files = {"target": ("group.jpg", photos.group, "image/jpeg"), "face_1": ("a.jpg", other, "image/jpeg"),
             "face_2": ("b.jpg", photos.source, "image/jpeg")}
    r = live.client.post("/api/v1/fuse", files=files, data={"format": "png"})
    assert r.status_code == 200, r.text
    assert r.headers["x-facefuse-faces-used"] == "1,2"
    # the same mapping from the CLI's core call gives the same picture
    expected = fuser.fuse_detailed(None, fuser.read(photos.group), fuser.params(),
                                   sources={1: other, 2: photos.source}).image
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    assert np.abs(got - expected.astype(int)).mean() < 1.0
    # with a source as well, only the mapped faces are fused
    files["source"] = ("s.jpg", photos.source, "image/jpeg")
    r = live.client.post("/api/v1/fuse", files=files)
    assert r.status_code == 200 and r.headers["x-facefuse-faces-used"] == "1,2"


@pytest.mark.parametrize("files, data, status, code", [
    ({}, {}, 400, "bad_parameter"),  # neither a source nor a mapping
    ({"face_x": "SRC"}, {}, 400, "bad_parameter"),  # not face_<index>: an unknown field as before
    ({"face_01": "SRC"}, {}, 400, "bad_parameter"),  # indices as /detect writes them
    ({}, {"face_1": "not a file"}, 400, "bad_parameter"),
    ({"face_40": "SRC"}, {}, 422, "no_face"),  # a face the target does not have
    ({"face_0": "CAT"}, {}, 422, "no_face"),  # a mapped photo without a face
])
def test_fuse_face_mapping_errors(live, photos, files, data, status, code):
    content = {"SRC": photos.source, "CAT": photos.noface}
    sent = {"target": ("t.jpg", photos.target, "image/jpeg"),
            **{k: (f"{k}.jpg", content[v], "image/jpeg") for k, v in files.items()}}
    body = _error(live.client.post("/api/v1/fuse", files=sent, data=data), status, code)
    if "face_0" in files:
        assert "face_0" in body["message"]
