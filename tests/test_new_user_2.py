"""What a new user tripped over, round 2 (issue 28): CLI and video messages and exit codes,
file modes, REST video jobs and requests, gradio_client calls. Each test fails on the
behaviour it replaced. (The WebUI in a browser: test_browser.py.)"""

from __future__ import annotations

import os
import re
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
    import argparse

    from facefuse.bench import add_parser

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


# -- 2, 3, 4: the WebUI's handlers (the page itself: test_browser.py) ---------------------------------
@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    gr = pytest.importorskip("gradio")  # noqa: F841
    from facefuse.config import Settings
    from facefuse.service import FusionPool
    from facefuse.webui import build_ui

    settings = Settings(output={"dir": str(tmp_path_factory.mktemp("webui"))}, server={"workers": 1})
    pool = FusionPool(settings, workers=1)
    demo = build_ui(settings, pool)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    yield demo, by_id, fns, settings
    pool.shutdown()


def test_video_tab_has_the_photo_tabs_controls(ui):
    _, by_id, _, _ = ui
    assert {"video_start", "video_end", "video_faces", "video_face", "video_threshold", "video_padding"} <= set(by_id)
    assert "video_face_index" not in by_id  # no text field for the faces
    assert by_id["video_faces"].visible is False and by_id["video_face"].visible is False  # until a clip has faces


def test_a_bad_clip_is_one_line_without_the_upload_path(ui, tmp_path, source_path):
    _, _, fns, _ = ui
    bad = tmp_path / "gradio-temp" / "notvideo.mp4"
    bad.parent.mkdir()
    bad.write_text("not a video")
    text, _, faces, face, *_ = fns["on_clip"](str(bad), None, 0.6, ["0"])
    assert text.startswith("⚠ Video: not a video") and str(bad.parent) not in text, text  # was "Video <path>: ..."
    assert faces["visible"] is False and face["visible"] is False
    values = (0.8, "normal", 0.4, "original", 0.6, 0.2)
    _, text, _ = fns["on_fuse"](str(source_path), str(bad), None, None, ["0"], *values)
    assert text.startswith("⚠ Video: not a video") and str(bad.parent) not in text and text.endswith("No result.")
    _, text = fns["on_preview"](str(source_path), str(bad), 0.0, ["0"], *values)
    assert "not a video" in text and str(bad.parent) not in text, text


def test_video_start_and_end_are_checked_in_the_fields_names(ui, source_path, face_clip):
    from facefuse.webui import PageError, clip_range

    _, _, fns, _ = ui
    assert clip_range(None, None) == (None, None) and clip_range(0, 0) == (None, None)
    assert clip_range("0.2", 0.6, 1.0) == (0.2, 0.6)
    for start, end, words in ((0.6, 0.2, "End (0.2 s) must be after Start (0.6 s)"),
                              (-1, None, "Start: seconds from the clip's beginning"),
                              (3, None, "Start (3 s) is past the end of the clip, which is 1.0 s long")):
        with pytest.raises(PageError, match=re.escape(words)):
            clip_range(start, end, 1.0)
    values = (0.8, "normal", 0.4, "original", 0.6, 0.2)
    _, text, _ = fns["on_fuse"](str(source_path), str(face_clip), 0.6, 0.2, ["0"], *values)
    assert text == "⚠ End (0.2 s) must be after Start (0.6 s). No result."


def test_the_face_ticks_show_only_for_a_target_with_faces(ui, tmp_path, target_path):
    _, by_id, fns, _ = ui
    assert by_id["face"].visible is False  # no ticked "#0" before a target is uploaded
    unreadable = tmp_path / "t.jpg"
    unreadable.write_bytes(b"not a photo")
    _, face, text, _, _ = fns["target_faces"](str(unreadable), 0.6, ["0"])
    assert face["visible"] is False and text.startswith("⚠")
    _, face, _, _, _ = fns["target_faces"](str(target_path), 0.6, ["0"])
    assert face["visible"] is True and face["value"] == ["0"]


def test_a_new_upload_clears_a_warning_but_keeps_a_result(ui):
    from facefuse.webui import NO_RESULT

    _, _, fns, _ = ui
    assert fns["without_warning"]("⚠ Upload a source image first. No result.") == NO_RESULT
    assert fns["without_warning"]("**Done in 0.5 s** ...") == {"__type__": "update"}


def test_face_labels_stay_inside_the_picture_for_a_face_cut_by_its_edge():
    import numpy as np

    from facefuse.preview import PICKED, draw_boxes

    image = np.full((200, 300, 3), 128, np.uint8)
    drawn = draw_boxes(image, [[-40.0, -30.0, 60.0, 90.0], [250.0, 120.0, 330.0, 230.0]])
    for x0, x1, y0, y1 in ((0, 60, 0, 60), (200, 300, 100, 200)):  # around each face's top-left corner
        label = drawn[y0:y1, x0:x1]
        assert (label == PICKED).all(axis=2).sum() > 100  # the label's green plate
        assert (label < 40).all(axis=2).sum() > 20  # and its black digit, in the picture (was off the left edge)


# -- 6: gradio_client calls /fuse alone ----------------------------------------------------------------
@pytest.mark.slow
def test_gradio_client_calls_fuse_alone(ui, source_path, group_path, capfd, caplog):
    import logging

    client_lib = pytest.importorskip("gradio_client")
    demo, _, _, _ = ui
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    caplog.set_level(logging.INFO, logger="facefuse.webui")
    try:
        client = client_lib.Client(demo.local_url, verbose=False)
        photos = dict(source=client_lib.handle_file(str(source_path)), target=client_lib.handle_file(str(group_path)))
        # no /target_faces call first: numbers as ints or strings, the format in any case
        for faces, fmt, used in (([1], "PNG", "#1"), (["0", "2"], "WebP", "#0, #2"), ("1", "jpeg", "#1")):
            path, _, _, info, _ = client.predict(**photos, face_index=faces, format=fmt, source_face_index="0",
                                                 api_name="/fuse")
            assert f"fused face {used} (" in info, info
            assert path.endswith({"PNG": ".png", "WebP": ".webp", "jpeg": ".jpg"}[fmt])
        capfd.readouterr()
        caplog.clear()
        path, _, _, info, _ = client.predict(**photos, face_index=[99], api_name="/fuse")
        assert path is None and "face 99 requested, only" in info  # checked against the image's faces, in the call
        _, _, _, info, _ = client.predict(**photos, format="gif", api_name="/fuse")
        assert "format: must be jpg, png, webp, got 'gif'" in info
        err = capfd.readouterr().err
        assert "Traceback" not in err, err
        refused = [r.getMessage() for r in caplog.records if r.name == "facefuse.webui"]
        assert len(refused) == 2 and all("\n" not in m and m.startswith("fuse refused: ") for m in refused), refused
    finally:
        demo.close()


# -- 5: the port ----------------------------------------------------------------------------------------
def test_a_taken_port_is_one_line_naming_a_free_one(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--no-webui", "--port", str(port)])
    err = _error_line(capsys)
    assert code == 2 and f"port {port} on 127.0.0.1 is in use" in err, err
    suggested = int(re.search(r"\./run\.sh --port (\d+)", err).group(1))  # was "cannot listen on ... (in use)"
    assert suggested > port


def test_run_sh_passes_port_to_the_webui(tmp_path):
    """`./run.sh --port N` starts the WebUI on N (it went to the CLI, which has no --port)."""
    import shutil
    import subprocess

    for name in ("run.sh", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for tool in ("python", "facefuse"):  # an installed venv whose facefuse says how it was called
        (venv_bin / tool).write_text('#!/bin/sh\necho "$0 $*"\n')
        (venv_bin / tool).chmod(0o755)
    stamp = tmp_path / ".venv" / ".facefuse-installed"
    stamp.write_text("web,onnx,ray\n")
    later = (tmp_path / "run.sh").stat().st_mtime + 10
    os.utime(stamp, (later, later))
    proc = subprocess.run(["bash", "run.sh", "--port", "8123"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("facefuse start --port 8123"), proc.stdout + proc.stderr
