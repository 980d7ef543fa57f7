"""What a new user tripped over (issue 14): one-line errors, silent surprises, REST
strictness, batch and bench messages. Each test fails on the behaviour it replaced."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from facefuse.cli import main
from facefuse.config import FusionParams
from facefuse.errors import ConfigError, OutputExistsError
from facefuse.io import read_image, write_image


# -- CLI ------------------------------------------------------------------------------------
def test_output_as_third_positional_argument(tmp_path, source_path, target_path):
    out = tmp_path / "o.jpg"
    assert main(["fuse", str(source_path), str(target_path), str(out), "--resolution", "512"]) == 0
    assert max(read_image(out).shape[:2]) == 512


def test_missing_output_is_one_line_saying_how(tmp_path, source_path, target_path, run_cli):
    proc = run_cli("fuse", source_path, target_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "OUT" in proc.stderr and "usage:" not in proc.stderr


def test_unknown_flag_is_one_line(tmp_path, source_path, target_path, run_cli):
    proc = run_cli("fuse", source_path, target_path, tmp_path / "o.jpg", "--ratoi", "0.5")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--ratoi" in proc.stderr


@pytest.mark.parametrize("values, words", [
    ({"ratio": 1.5}, "ratio: must be at most 1.0, got 1.5"),
    ({"resolution": 9000}, "resolution: must be between 64 and 8192, got 9000"),
    ({"mode": "sideways"}, "mode: must be one of normal, blend or overlay"),
    ({"face_index": 3, "all_faces": True}, "face_index 3 and all_faces"),
])
def test_parameter_messages_read_as_written_by_a_person(values, words):
    with pytest.raises(ConfigError) as err:
        FusionParams.build(**values)
    assert words in str(err.value)
    assert "Input should" not in str(err.value) and "Value error" not in str(err.value)


def test_face_index_with_all_faces_is_refused(tmp_path, source_path, target_path, capsys):
    rc = main(["fuse", str(source_path), str(target_path), str(tmp_path / "o.jpg"), "--face-index", "3", "--all-faces"])
    assert rc == 2 and "--all-faces: give one, not both" in capsys.readouterr().err and not (tmp_path / "o.jpg").exists()


def test_enlarging_says_so(tmp_path, source_path, target_path, run_cli):
    out, report = tmp_path / "o.jpg", tmp_path / "r.json"
    proc = run_cli("fuse", source_path, target_path, out, "--resolution", "4096", "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert "enlarged 3.4x" in proc.stderr  # the 1200x800 target made 4096 wide
    assert any("enlarged" in n for n in json.loads(report.read_text())["notes"])
    proc = run_cli("fuse", source_path, target_path, tmp_path / "small.jpg", "--resolution", "512")
    assert proc.returncode == 0 and "enlarged" not in proc.stderr


def test_existing_output_speaks_each_front_end_word(tmp_path, source_path, target_path, capsys):
    out = tmp_path / "o.png"
    write_image(out, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(OutputExistsError, match=r"overwrite=True"):
        write_image(out, np.zeros((8, 8, 3), np.uint8))
    assert main(["fuse", str(source_path), str(target_path), str(out)]) == 3
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err


def test_detect_lists_faces_before_refusing_an_existing_draw_file(tmp_path, target_path, run_cli):
    drawn = tmp_path / "faces.png"
    drawn.write_bytes(b"mine")
    proc = run_cli("detect", target_path, "--draw", drawn)
    assert proc.returncode == 3 and "1 face(s)" in proc.stdout and "already exists" in proc.stderr
    assert drawn.read_bytes() == b"mine"


def test_help_names_the_inputs_and_the_engines(run_cli):
    text = re.sub(r"-\s+", "-", " ".join(run_cli("fuse", "--help").stdout.split()))  # argparse wraps at hyphens
    assert "the photo with the face to bring in" in text
    assert "classical, onnx-damo, onnx-swap, onnx-unet" in text


def test_faces_print_short(fuser, target_path):
    face = fuser.detect(target_path).faces[0]
    assert len(repr(face)) < 120 and "478" in repr(face)
    assert len(repr(fuser.detect(target_path))) < 200


# -- REST -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rest(fuser):
    from fastapi.testclient import TestClient

    from facefuse.config import Settings
    from facefuse.server import create_app
    from facefuse.service import FusionPool

    pool = FusionPool(Settings(), workers=1)
    with TestClient(create_app(Settings(), pool=pool, webui=False)) as client:
        yield client
    pool.shutdown()


def _files(source_path, target_path):
    return {"source": ("s.jpg", source_path.read_bytes()), "target": ("t.jpg", target_path.read_bytes())}


def test_rest_refuses_unknown_fields(rest, source_path, target_path):
    r = rest.post("/api/v1/fuse", files=_files(source_path, target_path), data={"ratios": "0.3"})
    assert r.status_code == 400 and r.json()["error"] == "bad_parameter" and "ratios" in r.json()["message"]
    r = rest.post("/api/v1/detect", files={"image": ("t.jpg", target_path.read_bytes())}, data={"treshold": "0.5"})
    assert r.status_code == 400 and "treshold" in r.json()["message"]


def test_rest_says_when_it_enlarges(rest, source_path, target_path):
    r = rest.post("/api/v1/fuse", files=_files(source_path, target_path), data={"resolution": "2048"})
    assert r.status_code == 200 and "enlarged" in r.headers["X-Facefuse-Notes"]


def test_rest_only_server_points_to_the_docs(rest):
    r = rest.get("/")
    assert r.status_code == 200 and r.json()["docs"] == "/docs"


def test_server_prints_an_address_a_browser_can_open():
    from facefuse.server import browser_address

    assert browser_address("0.0.0.0", 8001) == "http://127.0.0.1:8001"
    assert browser_address("::", 8001) == "http://127.0.0.1:8001"
    assert browser_address("::1", 80) == "http://[::1]:80"


# -- batch ----------------------------------------------------------------------------------
def test_batch_leaves_no_lock_and_says_when_all_outputs_exist(tmp_path, source_path, target_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(target_path.read_bytes())
    out = tmp_path / "out"
    args = ["batch", "--source", str(source_path), "--targets", str(folder), "-o", str(out), "--resolution", "512",
            "--workers", "1"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "report.jsonl"]  # no .facefuse-batch.lock
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "all 1 outputs already exist" in text and "img/s" not in text


# -- bench ----------------------------------------------------------------------------------
def test_bench_quick_and_goals_only_on_request(monkeypatch, capsys):
    import facefuse.bench as bench_cmd

    seen = {}

    def fake_run_all(args, resolutions):
        seen.update(vars(args), resolutions=resolutions)
        return {"fake": True}

    monkeypatch.setattr(bench_cmd, "run_all", fake_run_all)
    monkeypatch.setattr("facefuse.bench.report.markdown", lambda res: "report")
    assert main(["bench", "--quick"]) == 0
    assert seen["resolutions"] == [1024, 2048] and seen["repeat"] == 2
    assert seen["no_rss"] and seen["no_cold"] and seen["no_scaling"] and not seen["goals"]
