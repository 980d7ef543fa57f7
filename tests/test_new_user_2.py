"""What a new user tripped over, round 2 (issue 28): CLI and video messages and exit codes,
file modes, REST video jobs and requests, gradio_client calls. Each test fails on the
behaviour it replaced. (The WebUI in a browser: test_browser.py.)"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from facefuse.cli import main
from facefuse.io import write_bytes_atomic
from video_clips import pan_frames, write_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory, target_path) -> Path:
    """1 s at 10 fps of a real face (one face per frame)."""
    return write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", pan_frames(target_path, 10, (288, 192)), fps=10)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# -- 7: a face index the clip does not have ---------------------------------------------------
def test_video_face_index_not_in_the_clip_says_what_was_asked_and_found(tmp_path, source_path, face_clip, capsys):
    code = main(["video", str(source_path), str(face_clip), "-o", str(tmp_path / "v.mp4"), "--face-index", "7"])
    err = _error_line(capsys)
    assert code == 4 and "face 7 asked; at most 1 face(s) in these 10 frames" in err, err
    assert not (tmp_path / "v.mp4").exists()


# -- 8: a still photo is not a video ------------------------------------------------------------
def test_a_still_photo_as_the_video_is_bad_input_pointing_to_fuse(tmp_path, source_path, target_path, capsys):
    code = main(["video", str(source_path), str(target_path), "-o", str(tmp_path / "v.mp4")])
    err = _error_line(capsys)
    assert code == 3 and "a still image, not a video" in err and "facefuse fuse" in err
    assert not (tmp_path / "v.mp4").exists()


# -- 9: values out of range exit 2 ----------------------------------------------------------------
@pytest.mark.parametrize("flags, words", [
    (["--quality", "0"], "--quality: must be 1-100, got 0"),
    (["--quality", "101"], "--quality: must be 1-100, got 101"),
    (["--start", "0.8", "--end", "0.3"], "--end (0.3 s) must be after --start (0.8 s)"),
    (["--start", "5"], "--start: 5 s is past the end of the clip, which is 1.0 s long"),
    (["--face-index", "0", "--all-faces"], "--face-index and --all-faces: give one, not both"),
])
def test_video_values_out_of_range_exit_2(tmp_path, source_path, face_clip, capsys, flags, words):
    code = main(["video", str(source_path), str(face_clip), "-o", str(tmp_path / "v.mp4"), *flags])
    err = _error_line(capsys)
    assert code == 2 and words in err, err
    assert not (tmp_path / "v.mp4").exists()


def test_preview_past_the_end_names_the_clip_length(tmp_path, source_path, face_clip, capsys):
    code = main(["video", str(source_path), str(face_clip), "-o", str(tmp_path / "f.png"), "--preview-at", "99"])
    err = _error_line(capsys)
    assert code == 2 and "--preview-at: 99 s is past the end of the clip, which is 1.0 s long" in err, err


def test_fuse_face_index_with_all_faces_exits_2(tmp_path, source_path, target_path, capsys):
    code = main(["fuse", str(source_path), str(target_path), str(tmp_path / "o.jpg"), "--face-index", "0",
                 "--all-faces"])
    assert code == 2 and "give one, not both" in _error_line(capsys)


# -- 10: messages -----------------------------------------------------------------------------------
def test_mistyped_flag_points_to_the_command_help_with_the_nearest_flag(tmp_path, source_path, target_path, capsys):
    code = main(["fuse", str(source_path), str(target_path), str(tmp_path / "o.jpg"), "--raito", "0.5"])
    err = _error_line(capsys)
    assert code == 2 and "did you mean --ratio?" in err and "`facefuse fuse --help`" in err, err
    main(["video", "a.jpg", "b.mp4", "-o", "c.mp4", "--strat", "1"])
    assert "did you mean --start?" in _error_line(capsys)


def test_truncated_jpeg_message_has_no_byte_count(tmp_path, source_path, target_path, capsys):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(target_path.read_bytes()[:20_000])
    code = main(["fuse", str(source_path), str(cut), str(tmp_path / "o.jpg")])
    err = _error_line(capsys)
    assert code == 3 and "truncated" in err and "bytes not processed" not in err, err


# -- 11: outputs follow the umask ---------------------------------------------------------------------
@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_video_and_image_outputs_follow_the_umask(tmp_path, source_path, face_clip, umask_022):
    assert main(["video", str(source_path), str(face_clip), "-o", str(tmp_path / "v.mp4")]) == 0
    assert stat.S_IMODE((tmp_path / "v.mp4").stat().st_mode) == 0o644  # was 0o600 (mkstemp's)
    os.umask(0o027)
    write_bytes_atomic(tmp_path / "b.bin", b"x")
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o640  # was always 0o644


# -- 12: what the README says bench --quick takes -----------------------------------------------------
def test_readme_and_help_give_bench_quick_the_time_it_takes():
    from facefuse.bench import add_parser
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    quick = next(a for a in sub.choices["bench"]._actions if "--quick" in a.option_strings)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "half a minute" not in quick.help and "few seconds" in quick.help
    assert "bench --quick" in readme and "~30 s" not in readme and "--quick` takes about half a minute" not in readme


# -- 13, 14: REST video jobs and requests -------------------------------------------------------------
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    TestClient = pytest.importorskip("fastapi.testclient").TestClient
    from facefuse.config import Settings
    from facefuse.server import create_app
    from facefuse.service import FusionPool

    settings = Settings(output={"dir": str(tmp_path_factory.mktemp("out"))}, server={"workers": 1})
    pool = FusionPool(settings)
    with TestClient(create_app(settings, pool=pool, webui=False)) as c:
        yield c
    pool.shutdown()


def _video(client, source: Path, clip: Path, **data):
    files = {"source": ("s.jpg", source.read_bytes()), "video": ("clip.mp4", clip.read_bytes())}
    return client.post("/api/v1/video", files=files, data=data)


@pytest.mark.parametrize("data, words", [
    ({"start": "0.8", "end": "0.3"}, "end (0.3 s) must be after start (0.8 s)"),
    ({"start": "-1"}, "start: must be >= 0 seconds"),
    ({"start": "5"}, "start: 5 s is past the end of the clip, which is 1.0 s long"),
])
def test_video_job_with_a_bad_range_is_a_400_naming_the_fields(client, source_path, face_clip, data, words):
    r = _video(client, source_path, face_clip, **data)
    assert r.status_code == 400 and r.json()["error"] == "bad_parameter", r.text  # was 202, then a failed job
    assert words in r.json()["message"] and "--" not in r.json()["message"]


def test_a_failed_job_shows_no_server_path_and_its_result_is_gone(client, tmp_path, face_clip):
    garbage = tmp_path / "s.jpg"
    garbage.write_bytes(b"not a photo")
    r = _video(client, garbage, face_clip)
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.time() + 120
    while (state := client.get(job["status"]).json())["state"] in ("queued", "running"):
        assert time.time() < deadline
        time.sleep(0.1)
    assert state["state"] == "failed" and state["error"].startswith("source: not an image"), state
    assert job["id"] not in state["error"] and "/" not in state["error"], state["error"]  # was the job's folder
    res = client.get(job["result"])
    assert res.status_code == 410 and res.json()["error"] == "job_failed", res.text  # was 409 "comes when done"
    assert state["error"] in res.json()["message"]


def test_text_where_a_file_goes_says_so(client, target_path):
    r = client.post("/api/v1/fuse", data={"source": "hello"}, files={"target": ("t.jpg", target_path.read_bytes())})
    assert r.status_code == 400 and "Expected UploadFile" not in r.text, r.text
    assert r.json()["message"].startswith("source: expected a file, got text")


def test_a_json_body_is_told_multipart_is_expected(client):
    r = client.post("/api/v1/fuse", json={"source": "a.jpg", "target": "b.jpg"})
    assert r.status_code == 415 and "multipart/form-data expected" in r.json()["message"], r.text  # was "target: missing"


def test_a_field_given_twice_is_refused(client, source_path, target_path):
    files = [("source", ("s.jpg", source_path.read_bytes())), ("target", ("t.jpg", target_path.read_bytes())),
             ("ratio", (None, "0.3")), ("ratio", (None, "0.9"))]
    r = client.post("/api/v1/fuse", files=files)
    assert r.status_code == 400 and r.json()["message"].startswith("ratio: given more than once"), r.text


def test_unknown_field_message_names_the_face_n_fields(client, source_path, target_path):
    r = client.post("/api/v1/fuse", data={"ratios": "0.3"},
                    files={"source": ("s.jpg", source_path.read_bytes()), "target": ("t.jpg", target_path.read_bytes())})
    assert r.status_code == 400 and "ratios: unknown field" in r.json()["message"]
    assert "face_N" in r.json()["message"], r.text
