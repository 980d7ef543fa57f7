"""Video jobs (video/jobs.py) and their REST routes (api_video.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from video_clips import pan_frames, streams, write_clip

from facefuse.video.jobs import Job, JobStore, fusion_runner


def _wait(store: JobStore, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 120.0) -> Job:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = store.get(job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job still {store.get(job_id).state}")


def _slow_runner(started: threading.Event):
    def run(job, folder, progress):
        started.set()
        for i in range(200):
            progress(i + 1, 200)
            time.sleep(0.01)
        (folder / job.result_name).write_bytes(b"video")
        return {"frames": 200}
    return run


def test_job_runs_reports_progress_and_keeps_its_result(tmp_path):
    store = JobStore(tmp_path, _slow_runner(threading.Event()))
    job = store.submit(b"photo", b"clip", params={"ratio": 0.5})
    done = _wait(store, job.id)
    assert (done.state, done.progress, done.frames_done, done.report) == ("done", 1.0, 200, {"frames": 200})
    assert store.result(job.id).read_bytes() == b"video"
    assert not (tmp_path / job.id / done.video_name).exists()  # inputs are dropped when finished
    store.close()


def test_cancel_stops_a_running_job_and_failures_are_kept(tmp_path):
    started = threading.Event()
    store = JobStore(tmp_path, _slow_runner(started))
    job = store.submit(b"photo", b"clip")
    assert started.wait(10)
    store.cancel(job.id)
    assert _wait(store, job.id).state == "cancelled" and store.result(job.id) is None
    store.close()

    def failing(job, folder, progress):
        from facefuse.errors import NoFaceError
        raise NoFaceError("target: no face found in any of the 6 frames", which="target")

    store = JobStore(tmp_path, failing)
    job = _wait(store, store.submit(b"photo", b"clip").id)
    assert (job.state, job.error_code, job.error) == ("failed", "no_face", "target: no face found in any of the 6 frames")
    store.close()


def test_a_restart_marks_unfinished_jobs_failed_and_old_jobs_are_cleaned_up(tmp_path):
    folder = tmp_path / ("a" * 32)
    folder.mkdir()
    (folder / "job.json").write_text(json.dumps({"id": "a" * 32, "state": "running"}))
    (folder / ".result.mp4.x.part").write_bytes(b"half")
    store = JobStore(tmp_path, _slow_runner(threading.Event()), keep_s=60)
    job = store.get("a" * 32)
    assert (job.state, job.error_code) == ("failed", "interrupted") and not (folder / ".result.mp4.x.part").exists()
    assert store.get("../etc") is None and store.cleanup(now=time.time() + 30) == 0
    assert store.cleanup(now=time.time() + 120) == 1 and not folder.exists()
    store.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory, fuser):
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from facefuse.api_video import add_video_routes

    app = FastAPI()

    @app.api_route("/api/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def catch_all(rest: str):  # as api.py has: the video routes must come before it
        return {"error": "not_found"}

    store = JobStore(tmp_path_factory.mktemp("jobs"), fusion_runner(lambda: fuser))
    add_video_routes(app, store, fuser.settings)
    with TestClient(app) as c:
        yield c
    store.close()


def test_rest_video_job_from_upload_to_result(client, data_dir, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", pan_frames(data_dir / "deepface_img2.jpg", 10, (160, 120)), audio=True)
    files = {"source": ("s.jpg", (data_dir / "insightface_t1.jpg").read_bytes()),
             "video": ("c.mp4", clip.read_bytes())}
    r = client.post("/api/v1/video", files=files, data={"ratio": "0.7", "quality": "60"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    t0 = time.monotonic()
    while (state := client.get(f"/api/v1/jobs/{job_id}").json())["state"] not in ("done", "failed"):
        assert time.monotonic() - t0 < 120
        time.sleep(0.1)
    assert state["state"] == "done" and state["report"]["frames"] == 10 and "per_frame" not in state["report"]
    result = client.get(f"/api/v1/jobs/{job_id}/result")
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(result.content)
    assert streams(tmp_path / "out.mp4")["frames"] == 10


def test_rest_bad_requests_are_4xx(client, data_dir):
    photo = (data_dir / "deepface_img2.jpg").read_bytes()
    r = client.post("/api/v1/video", files={"source": ("s.jpg", photo), "video": ("v.mp4", b"not a video")})
    assert r.status_code == 415 and r.json()["error"] == "not_a_video"
    r = client.post("/api/v1/video", files={"source": ("s.jpg", photo), "video": ("v.mp4", b"x")},
                    data={"ratio": "7"})
    assert r.status_code == 400 and r.json()["error"] == "bad_parameter"
    assert client.post("/api/v1/video", files={"source": ("s.jpg", photo)}).status_code == 422
    assert client.get("/api/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/api/v1/jobs/%2E%2E/result").status_code == 404  # ids are 32 hex digits, never a path
    assert client.delete("/api/v1/jobs/nope").status_code == 404


# -- WebUI Video tab handlers ------------------------------------------------------------
def test_video_tab_previews_fuses_and_saves_with_a_sidecar(fuser, data_dir, tmp_path):
    from facefuse.webui_video import follow, preview, start

    clip = write_clip(tmp_path / "c.mp4", pan_frames(data_dir / "deepface_img2.jpg", 8, (160, 120)))
    photo = str(data_dir / "insightface_t1.jpg")
    frame = preview(lambda: fuser, photo, str(clip), 0.1, 0.8)
    assert frame.shape == (120, 160, 3)
    store = JobStore(tmp_path / "jobs", fusion_runner(lambda: fuser))
    updates = list(follow(store, start(store, photo, str(clip), 0.8), tmp_path / "outputs"))
    share, status, saved = updates[-1]
    assert share == 1.0 and status.startswith("done: 8 frames") and saved.endswith(".mp4")
    sidecar = json.loads((tmp_path / "outputs" / (saved.rsplit("/", 1)[1][:-4] + ".json")).read_text())
    assert sidecar["params"] == {"ratio": 0.8} and sidecar["report"]["frames"] == 8
    assert streams(saved)["frames"] == 8
    store.close()


def test_video_tab_builds_in_a_blocks_app(fuser, tmp_path):
    gr = pytest.importorskip("gradio")
    from facefuse.webui_video import add_video_tab

    store = JobStore(tmp_path / "jobs", fusion_runner(lambda: fuser))
    with gr.Blocks() as demo:
        with gr.Tab("Video"):
            add_video_tab(store, fuser.settings, lambda: fuser)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"video-source", "video-clip", "video-at", "video-preview", "video-fuse", "video-result"} <= ids
    store.close()
