"""Live fusion: the `/api/v1/live` WebSocket through Starlette's test client (frames in, fused
frames out, parameters mid-stream, limits, the API key, busy), and `LiveSession`, the Python
API a script with its own camera uses."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from facefuse.config import Settings

fastapi = pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from facefuse import live_api  # noqa: E402
from facefuse.api import create_rest_app  # noqa: E402
from facefuse.service import FusionPool  # noqa: E402

KEY = "live-test-key"


def _jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def camera_frame(target_path) -> np.ndarray:
    """The target portrait as a 640-wide camera frame."""
    im = Image.open(target_path).convert("RGB")
    return np.asarray(im.resize((640, round(640 * im.height / im.width))))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs")
    settings = Settings(output={"dir": str(out)}, server={"workers": 1, "live_sessions": 2, "live_idle_seconds": 5})
    pool = FusionPool(settings)
    app = create_rest_app(settings, pool, api_key=KEY)
    yield app
    pool.shutdown()


@pytest.fixture()
def client(app):
    with TestClient(app) as c:
        yield c


def _open(client, source: bytes | None, key: str | None = KEY, **params):
    query = "&".join(f"{k}={v}" for k, v in {**({"key": key} if key else {}), **params}.items())
    ws = client.websocket_connect(f"{live_api.LIVE_PATH}?{query}")
    return ws


def _start(ws, source: bytes) -> dict:
    ws.send_bytes(source)
    ready = json.loads(ws.receive_text())
    assert ready["type"] == "ready", ready
    return ready


def _fused(ws, frame: bytes, n: int = 1) -> list[tuple[dict, np.ndarray]]:
    """Send `n` frames, two in flight at most, as a camera page does; (info, image) of each."""
    got, sent = [], 0
    while len(got) < n:
        while sent < n and sent - len(got) < 2:
            ws.send_bytes(frame)
            sent += 1
        info = json.loads(ws.receive_text())
        assert info["type"] == "frame", info
        got.append((info, _rgb(ws.receive_bytes())))
    return got


def _face_and_rest(camera_frame, fuser):
    """Masks of the face's box and of what lies well outside it."""
    face = fuser.detect(camera_frame).faces[0]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    inner = np.zeros(camera_frame.shape[:2], bool)
    inner[y0:y1, x0:x1] = True
    w, h = x1 - x0, y1 - y0
    outer = np.ones(camera_frame.shape[:2], bool)
    outer[max(0, y0 - h):y1 + h, max(0, x0 - w):x1 + w] = False
    return inner, outer


def test_frames_in_fused_frames_out_the_face_changes_and_the_background_does_not(client, source_path, camera_frame,
                                                                                fuser):
    inner, outer = _face_and_rest(camera_frame, fuser)
    sent = _jpeg(camera_frame)
    with _open(client, None) as ws:
        _start(ws, source_path.read_bytes())
        frames = _fused(ws, sent, 4)
    base = _rgb(sent)
    for info, image in frames:
        assert image.shape == base.shape
        assert info["faces"] == 1 and info["fused"] == 1
        diff = np.abs(image - base).mean(axis=2)
        assert diff[inner].mean() > 6, diff[inner].mean()  # the face is the source's now
        assert diff[outer].mean() < 2.5, diff[outer].mean()  # only the JPEG round trip elsewhere
    assert [info["index"] for info, _ in frames] == [0, 1, 2, 3]  # in the order sent


def test_parameters_changed_mid_stream_take_effect_and_bad_ones_are_answered(client, source_path, camera_frame,
                                                                            fuser):
    inner, _ = _face_and_rest(camera_frame, fuser)
    sent = _jpeg(camera_frame)
    base = _rgb(sent)
    with _open(client, None, ratio=1.0) as ws:
        _start(ws, source_path.read_bytes())
        strong = _fused(ws, sent, 2)[-1][1]
        ws.send_text(json.dumps({"type": "params", "ratio": 0.0}))
        weak = _fused(ws, sent, 3)[-1][1]
        ws.send_text(json.dumps({"type": "params", "ratio": 7}))
        error = json.loads(ws.receive_text())
        assert error["type"] == "error" and "ratio" in error["message"]
        ws.send_text(json.dumps({"type": "params", "resolution": 320}))
        small = _fused(ws, sent, 2)[-1][1]  # resolution applies to live frames too
    def moved(image):
        return np.abs(image - base).mean(axis=2)[inner].mean()
    assert moved(weak) < moved(strong) / 2, (moved(weak), moved(strong))
    assert max(small.shape[:2]) == 320


def test_no_face_in_view_frames_come_back_unchanged(client, source_path, noface_path):
    cat = np.asarray(Image.open(noface_path).convert("RGB"))
    sent = _jpeg(cat)
    with _open(client, None) as ws:
        _start(ws, source_path.read_bytes())
        frames = _fused(ws, sent, 3)
    as_sent_back = _rgb(live_api.encode_frame(live_api.decode_frame(sent)))  # the frame, re-encoded alone
    for info, image in frames:
        assert info["faces"] == 0 and info["fused"] == 0
        assert np.abs(image - as_sent_back).max() <= 1


def test_a_snapshot_lands_in_the_output_folder_with_a_sidecar(app, client, source_path, camera_frame):
    out = app.state.settings.output.dir
    with _open(client, None) as ws:
        _start(ws, source_path.read_bytes())
        ws.send_text(json.dumps({"type": "snapshot"}))
        assert json.loads(ws.receive_text())["type"] == "error"  # nothing fused yet
        _, image = _fused(ws, _jpeg(camera_frame), 2)[-1]
        ws.send_text(json.dumps({"type": "snapshot"}))
        saved = json.loads(ws.receive_text())
    assert saved["type"] == "saved"
    path = __import__("pathlib").Path(out) / saved["name"]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["image"] == path.name and meta["live"] is True and meta["faces_fused"] == 1
    assert meta["output_size"] == [image.shape[1], image.shape[0]]
    assert np.abs(_rgb(path.read_bytes()) - image).mean() < 0.01  # the frame last sent, as sent


def test_a_frame_over_the_limit_closes_with_a_clear_reason(client, source_path, camera_frame, monkeypatch):
    monkeypatch.setattr(live_api, "MAX_FRAME_PIXELS", 320 * 240)
    with _open(client, None) as ws:
        _start(ws, source_path.read_bytes())
        ws.send_bytes(_jpeg(camera_frame))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == live_api.CLOSE_TOO_BIG
    assert "640x" in closed.value.reason and "over the live limit" in closed.value.reason


def test_not_an_image_and_a_faceless_source_are_named(client, noface_path):
    with _open(client, None) as ws:
        ws.send_bytes(noface_path.read_bytes())
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == live_api.CLOSE_NO_FACE and "source" in closed.value.reason
    with _open(client, None, ratio="lots") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == live_api.CLOSE_BAD and "ratio" in closed.value.reason


@pytest.mark.parametrize("key", [None, "wrong"])
def test_without_the_key_the_websocket_is_refused(client, key):
    for path in (live_api.LIVE_PATH, "/anything-else"):  # no WebSocket route escapes the guard
        query = f"?key={key}" if key else ""
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(path + query) as ws:
                ws.receive_text()
        assert refused.value.code == 1008


def test_the_key_in_a_header_and_a_webui_ticket_are_accepted_once(app, client, source_path, camera_frame, fuser):
    with client.websocket_connect(live_api.LIVE_PATH, headers={"X-API-Key": KEY}) as ws:
        _start(ws, source_path.read_bytes())
    ticket = app.state.live.issue_ticket(fuser.prepare_source(str(source_path)), {"ratio": 0.9})
    with client.websocket_connect(f"{live_api.LIVE_PATH}?ticket={ticket}") as ws:
        ready = json.loads(ws.receive_text())  # the ticket carries the source: no photo sent
        assert ready["type"] == "ready" and ready["params"]["ratio"] == 0.9
        assert _fused(ws, _jpeg(camera_frame), 1)[0][0]["fused"] == 1
    with pytest.raises(WebSocketDisconnect) as refused:  # used up
        with client.websocket_connect(f"{live_api.LIVE_PATH}?ticket={ticket}") as ws:
            ws.receive_text()
    assert refused.value.code == 1008


def test_a_session_over_the_limit_is_told_busy(client):
    with _open(client, None), _open(client, None):  # two sessions open: server.live_sessions is 2
        with _open(client, None) as third:
            with pytest.raises(WebSocketDisconnect) as closed:
                third.receive_text()
        assert closed.value.code == live_api.CLOSE_BUSY and "busy" in closed.value.reason
    with _open(client, None) as again:  # the two ended: room again (it is then idle-closed)
        again.send_text(json.dumps({"type": "snapshot"}))
        with pytest.raises(WebSocketDisconnect) as closed:
            again.receive_text()
        assert closed.value.code == live_api.CLOSE_BAD  # the first message must be the photo, not busy


def test_a_silent_session_is_closed_after_the_idle_time(app, client, source_path, monkeypatch):
    monkeypatch.setattr(app.state.live, "idle_seconds", 0.5)
    with _open(client, None) as ws:
        _start(ws, source_path.read_bytes())
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == live_api.CLOSE_IDLE and "live_idle_seconds" in closed.value.reason


def test_live_session_push_fuses_a_scripts_own_frames_in_order(fuser, source_path, camera_frame):
    from facefuse.video.live import LiveSession

    inner, outer = _face_and_rest(camera_frame, fuser)
    out = []
    with LiveSession(fuser, str(source_path), ratio=0.8) as live:
        for k in range(5):
            frame = live.push(camera_frame, t=k / 30)
            if frame is not None:
                out.append(frame)
        out += live.flush()
    assert [f.index for f in out] == [0, 1, 2, 3, 4]
    for f in out:
        diff = np.abs(f.image.astype(np.int16) - camera_frame).mean(axis=2)
        assert f.fused == 1 and diff[inner].mean() > 6 and diff[outer].max() == 0


def test_frames_fused_on_worker_processes_are_the_frames_fused_on_threads(fuser, source_path, data_dir,
                                                                         camera_frame):
    """The server fuses live frames on worker processes (video/live.FusingProcesses): the
    same frames as in this process, light carried from frame to frame, two sessions (two
    sources) through the same processes."""
    from facefuse.video.live import FusingProcesses, LiveSession

    moved = np.roll(camera_frame, (3, -4), axis=(0, 1))  # the head moves a little
    frames = [camera_frame, moved, camera_frame]
    processes = FusingProcesses(fuser.settings, 1)
    try:
        for source in (source_path, data_dir / "deepface_img2.jpg"):
            here = LiveSession(fuser, str(source), ratio=0.8, search_beside=False)
            there = LiveSession(fuser, here.source, here.params, search_beside=False, processes=processes)
            for k, frame in enumerate(frames):
                a, b = here.fuse(here.plan(frame, k / 30)), there.fuse(there.plan(frame, k / 30))
                assert a.fused == b.fused == 1
                assert np.array_equal(a.image, b.image), (source.name, k)
            assert there.tracker.timings["engine"] > 0  # the workers' stage times come back
    finally:
        processes.shutdown()


def test_when_a_fusing_process_dies_the_next_session_gets_new_ones(fuser, source_path, camera_frame):
    """A worker killed (out of memory, by hand) breaks its pool: the session that was using
    it ends with the error, and the next session is handed new processes that work."""
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from facefuse.video import live

    settings = fuser.settings.model_copy(update={"server": fuser.settings.server.model_copy(
        update={"live_processes": 1})})
    first = live.shared_fusing_processes(settings)
    try:
        os.kill(first._pool.submit(os.getpid).result(), signal.SIGKILL)
        session = live.LiveSession(fuser, str(source_path), ratio=0.8, search_beside=False, processes=first)
        with pytest.raises(BrokenProcessPool):
            session.fuse(session.plan(camera_frame, 0.0))
        again = live.shared_fusing_processes(settings)
        assert again is not first and first.broken
        session = live.LiveSession(fuser, session.source, session.params, search_beside=False, processes=again)
        assert session.fuse(session.plan(camera_frame, 0.0)).fused == 1
    finally:
        live.stop_fusing_processes()


def test_the_server_socket_says_tcp_so_asyncio_sends_replies_without_delay():
    """A reply's last segment must not wait for the client's delayed ACK (Nagle): asyncio
    sets TCP_NODELAY only on sockets whose protocol is TCP, which bind_socket's must say
    (a live frame's JPEG came 25-35 ms late on loopback without it)."""
    import asyncio
    import socket

    from facefuse.server import bind_socket

    async def accepted_nodelay() -> int:
        sock = bind_socket("127.0.0.1", 0)
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_client(reader, writer):
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_client, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


def test_the_routine_search_runs_beside_the_stream_and_a_new_face_brings_one_in_line(fuser, source_path,
                                                                                   camera_frame):
    """While the face is followed, the every-`detect_every` search runs on the searcher's own
    detector, not in the frame's planning; when it finds a face the tracker does not follow
    (a second one comes into view, without a cut), the next frame searches in line."""
    from facefuse.video.live import LiveSession

    def planned(live, frame, k):
        plan = live.plan(frame, k / 25)
        if live._search is not None:
            live._search.result()  # let the searcher finish (its timing is not under test)
        return plan.plan.full_detection

    with LiveSession(fuser, str(source_path), detect_every=3) as live:
        assert [planned(live, camera_frame, k) for k in range(10)] == [True] + [False] * 9  # only the first in line
        assert live.searches_beside >= 2 and live.searches_forced == 0
        two = camera_frame.copy()
        two[-200:, :320] = np.asarray(Image.open(source_path).convert("RGB").resize((320, 200)))  # bottom left
        assert any(planned(live, two, k) for k in range(10, 20))
        assert live.searches_forced >= 1


def test_the_key_and_tickets_are_blanked_in_uvicorns_log_lines(app):
    """uvicorn logs a WebSocket's path with its query at INFO; the key must not reach a log."""
    import logging

    logger = logging.getLogger("uvicorn.error")
    record = logger.makeRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", f"/api/v1/live?ratio=0.5&key={KEY}&ticket=abc-_1"), None)
    for f in logger.filters:
        f.filter(record)
    line = record.getMessage()
    assert KEY not in line and "abc-_1" not in line
    assert "ratio=0.5&key=***&ticket=***" in line


def test_record_writes_the_fused_stream_as_a_video_with_a_sidecar(app, client, source_path, camera_frame):
    from pathlib import Path

    from facefuse.video.io import VideoReader

    out = Path(app.state.settings.output.dir)
    sent = _jpeg(camera_frame)
    with _open(client, None) as ws:
        _start(ws, source_path.read_bytes())
        ws.send_text(json.dumps({"type": "record", "on": True}))
        assert json.loads(ws.receive_text())["type"] == "error"  # nothing fused yet
        _fused(ws, sent, 2)
        ws.send_text(json.dumps({"type": "record", "on": True}))
        recording = json.loads(ws.receive_text())
        assert recording["type"] == "recording"
        assert not (out / recording["name"]).exists()  # a temp file beside it until it is finished
        last = _fused(ws, sent, 4)[-1][1]
        ws.send_text(json.dumps({"type": "record", "on": False}))
        saved = json.loads(ws.receive_text())
    assert saved == {"type": "saved", "name": recording["name"], "dir": str(out), "frames": 4}
    video = out / saved["name"]
    frames = [f.rgb for f in VideoReader(video)]
    assert len(frames) == 4 and frames[0].shape == camera_frame.shape
    assert np.abs(frames[-1].astype(np.int16) - last).mean() < 4  # the fused frames (H.264 against JPEG)
    meta = json.loads(video.with_suffix(".json").read_text())
    assert meta["frames"] == 4 and meta["live"] is True and meta["output_size"] == [640, camera_frame.shape[0]]
    assert not list(out.glob(".*.part"))


def test_a_live_session_does_the_engines_one_time_set_up_before_its_first_frame(fuser, source_path, monkeypatch):
    """The engine's first fusion in a process built its tables on the way (OpenCV's float Lab
    tables alone: 110-160 ms), which a live stream's first frame waited for; the session does
    it when it opens. The classical engine's warm-up makes the mesh's tables."""
    from facefuse import pose
    from facefuse.engines.classical import warp
    from facefuse.video.live import LiveSession

    pose.frontal_facing.cache_clear()
    warp.nearby_triangles.cache_clear()
    calls = []
    real = type(fuser.engine).warm_up
    monkeypatch.setattr(type(fuser.engine), "warm_up", lambda self: (calls.append(self), real(self)))
    LiveSession(fuser, str(source_path), search_beside=False).close()
    assert calls == [fuser.engine]
    assert pose.frontal_facing.cache_info().currsize == 1 and warp.nearby_triangles.cache_info().currsize == 1
