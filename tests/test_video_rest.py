"""Video over REST: POST /api/v1/video -> 202 and a job; follow it, fetch the clip, cancel;
limits (size, duration), bad input, unknown ids, and no 5xx on malformed requests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import video_clips as vc  # noqa: E402
from facefuse.config import Settings  # noqa: E402
from servers import wait_for_job  # noqa: E402

TestClient = pytest.importorskip("fastapi.testclient").TestClient


@pytest.fixture(scope="module")
def clip(tmp_path_factory, target_path) -> Path:
    """A second of a panning crop of a real portrait, with a tone."""
    path = tmp_path_factory.mktemp("clips") / "pan.mp4"
    return vc.write_clip(path, vc.pan_frames(target_path, 20, (240, 160)), fps=20, audio=True)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from facefuse.server import create_app
    from facefuse.service import FusionPool

    settings = Settings(output={"dir": str(tmp_path_factory.mktemp("out"))},
                        server={"workers": 1, "max_video_mb": 2, "max_video_seconds": 30})
    pool = FusionPool(settings)
    with TestClient(create_app(settings, pool=pool, webui=False)) as c:
        yield c
    pool.shutdown()


def _post(client, source_path, clip, **data):
    files = {"source": ("s.jpg", source_path.read_bytes()), "video": (clip.name, clip.read_bytes())}
    return client.post("/api/v1/video", files=files, data=data)


def test_video_job_from_upload_to_result(client, source_path, clip, tmp_path):
    r = _post(client, source_path, clip, ratio="0.9", resolution="320")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "queued" and job["status"].endswith(job["id"])
    st = wait_for_job(client, job["id"])
    assert st["state"] == "done" and st["progress"] == 1.0, st
    res = client.get(job["result"])
    assert res.status_code == 200 and res.headers["content-type"] == "video/mp4"
    out = tmp_path / "fused.mp4"
    out.write_bytes(res.content)
    got, want = vc.streams(out), vc.streams(clip)
    assert got["frames"] == want["frames"] and got["size"][0] == 320 and got["audio_s"]
    assert client.delete(f"/api/v1/jobs/{job['id']}").json()["state"] == "removed"
    assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404


def test_cancel_a_running_job(client, source_path, clip):
    job = _post(client, source_path, clip).json()
    client.delete(f"/api/v1/jobs/{job['id']}")
    st = wait_for_job(client, job["id"])
    assert st["state"] == "cancelled"
    assert client.get(job["result"]).status_code == 410  # gone: no result will come


@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4"])
def test_bad_clips_are_refused_at_upload(client, source_path, tmp_path, name):
    bad = tmp_path / name
    bad.write_text("not a video")
    r = _post(client, source_path, bad)
    assert r.status_code == 415 and r.json()["error"] == "not_a_video", r.text
    assert "\n" not in r.json()["message"]


def test_a_clip_over_the_duration_limit_is_refused_at_upload(client, source_path, tmp_path, target_path):
    """server.max_video_seconds (30 here) is checked from the header before a job is made."""
    long = vc.write_clip(tmp_path / "long.mp4", vc.pan_frames(target_path, 32, (64, 48)), fps=1)
    r = _post(client, source_path, long)
    assert r.status_code == 413 and r.json()["error"] == "too_long", r.text
    assert "30 s" in r.json()["message"]


def test_limits_and_malformed_requests(client, source_path, clip, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    r = _post(client, source_path, big)
    assert r.status_code == 413 and "server.max_video_mb" in r.json()["message"]
    assert _post(client, source_path, clip, ratoi="1").status_code == 400
    assert _post(client, source_path, clip, codec="h265").status_code == 400
    assert client.post("/api/v1/video", data={"ratio": "1"}).status_code == 400  # no files
    for bad_id in ("../../etc/passwd", "x" * 32, "0" * 31):
        assert client.get(f"/api/v1/jobs/{bad_id}").status_code == 404
        assert client.delete(f"/api/v1/jobs/{bad_id}").status_code in (404, 405)
