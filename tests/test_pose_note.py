"""The pose note (issue 13) reaches the person in every front-end: a `note:` line on the
CLI's stderr and in --report, the X-Facefuse-Notes header over REST, a line under the result
and the sidecar in the WebUI. The limit is lowered below the three-quarter source's yaw so
a real turned photo triggers it."""

from __future__ import annotations

import json

import pytest

from facefuse import pose
from facefuse.cli import main
from facefuse.config import Settings


@pytest.fixture()
def low_limit(monkeypatch):
    monkeypatch.setattr(pose, "SOURCE_WELL", 10.0)


def test_cli_prints_the_note_and_reports_it(low_limit, data_dir, tmp_path, capsys):
    out, report = tmp_path / "o.jpg", tmp_path / "r.json"
    assert main(["fuse", str(data_dir / "ghost_murakami.jpg"), str(data_dir / "fr_kit_harington2.jpeg"), str(out),
                 "--report", str(report)]) == 0
    err = capsys.readouterr().err
    assert "note: the source face is turned" in err and "more frontal source photo" in err
    assert any("source face is turned" in n for n in json.loads(report.read_text())["notes"])


def test_rest_sends_the_note_as_a_header(low_limit, data_dir):
    from fastapi.testclient import TestClient

    from facefuse.server import create_app
    from facefuse.service import FusionPool

    pool = FusionPool(Settings(), workers=1)
    files = {"source": ("s.jpg", (data_dir / "ghost_murakami.jpg").read_bytes()),
             "target": ("t.jpg", (data_dir / "fr_kit_harington2.jpeg").read_bytes())}
    try:
        with TestClient(create_app(Settings(), pool=pool, webui=False)) as client:
            r = client.post("/api/v1/fuse", files=files)
    finally:
        pool.shutdown()
    assert r.status_code == 200 and "source face is turned" in r.headers["X-Facefuse-Notes"]


def test_webui_shows_the_note_under_the_result(low_limit, data_dir, tmp_path):
    from facefuse.service import FusionPool
    from facefuse.webui import build_ui

    pool = FusionPool(Settings(), workers=1)
    try:
        demo = build_ui(Settings(output={"dir": str(tmp_path)}), pool)
        fuse = next(f.fn for f in demo.fns.values() if f.api_name == "fuse")
        path, _, _, text, _ = fuse(str(data_dir / "ghost_murakami.jpg"), str(data_dir / "fr_kit_harington2.jpeg"),
                                   0.8, "normal", 0.4, 0, 0, 0, "original", 0.6, 0.2, "0", "jpg")
    finally:
        pool.shutdown()
    assert "Note: the source face is turned" in text
    sidecar = json.loads(open(path[: path.rindex(".")] + ".json").read())
    assert any("source face is turned" in n for n in sidecar["notes"])
