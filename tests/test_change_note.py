"""The note that tells the truth (issue 26, point 5): a face that fusion left nearly as it
was is said to be so, measured (the share of the face outline that changed by more than
CHANGED_LEVELS), wherever notes go: FusionResult.notes, the CLI's stderr and --report, the
REST header, the WebUI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from facefuse import change, mesh, pipeline
from facefuse.change import CHANGED_LEVELS, changed_share, face_patch
from facefuse.cli import main
from facefuse.config import Settings
from facefuse.io import read_image
from facefuse.masks import fill_poly

NOTE = "fusion changed only"


def test_the_share_counts_the_pixels_that_moved_more_than_the_limit(fuser, data_dir):
    image = read_image(data_dir / "deepface_img25.jpg")
    lms = fuser.detect(image).faces[0].landmarks
    patch = face_patch(image, lms)
    oval = np.zeros(image.shape[:2], np.float32)
    fill_poly(oval, lms[mesh.FACE_OVAL], 1.0)
    upper = (oval > 0.5) & (np.arange(image.shape[0])[:, None] < np.median(np.nonzero(oval > 0.5)[0]))
    for step, expected in ((CHANGED_LEVELS + 5, 0.5), (CHANGED_LEVELS - 5, 0.0)):
        after = image.copy()
        after[upper] = np.clip(after[upper].astype(int) + step, 0, 255).astype(np.uint8)
        assert changed_share(patch, after, lms) == pytest.approx(expected, abs=0.05)
    assert changed_share(patch, image, lms) == 0.0


def test_a_face_the_engine_keeps_gets_the_note(fuser, data_dir, monkeypatch):
    fuse = fuser.engine.fuse

    def keeps_the_target(source, roi, *args, **kwargs):  # as the engine got the target, not re-shaped
        roi_pixels = roi.astype(np.float32)
        return replace(fuse(source, roi, *args, **kwargs), image=roi_pixels, base=roi_pixels)

    monkeypatch.setattr(fuser.engine, "fuse", keeps_the_target)
    result = fuser.fuse_detailed(data_dir / "deepface_img2.jpg", data_dir / "deepface_img25.jpg")
    assert [n for n in result.notes if NOTE in n] == [n for n in result.notes if "0% of the target face" in n] != []


def test_a_fused_face_gets_no_such_note(fuser, data_dir):
    result = fuser.fuse_detailed(data_dir / "deepface_img2.jpg", data_dir / "deepface_img25.jpg")
    assert not [n for n in result.notes if NOTE in n]


def test_a_turned_target_changes_less_than_a_frontal_one(fuser, data_dir, monkeypatch):
    shares = []
    monkeypatch.setattr(pipeline, "little_change_note", lambda share, *a: shares.append(share) or [])
    for target in ("deepface_img25.jpg", "fr_kit_harington2.jpeg"):  # frontal, three-quarter
        fuser.fuse_detailed(data_dir / "deepface_img2.jpg", data_dir / target)
    assert shares[1] < shares[0]


@pytest.fixture()
def every_fusion_is_little(monkeypatch):
    monkeypatch.setattr(change, "LITTLE_CHANGE", 2.0)


def test_cli_prints_the_note_and_reports_it(every_fusion_is_little, data_dir, tmp_path, capsys):
    out, report = tmp_path / "o.jpg", tmp_path / "r.json"
    assert main(["fuse", str(data_dir / "deepface_img2.jpg"), str(data_dir / "deepface_img25.jpg"), str(out),
                 "--report", str(report)]) == 0
    assert f"note: {NOTE}" in capsys.readouterr().err
    assert any(NOTE in n for n in json.loads(report.read_text())["notes"])


def test_rest_and_webui_show_the_note(every_fusion_is_little, data_dir, tmp_path):
    from fastapi.testclient import TestClient

    from facefuse.server import create_app
    from facefuse.service import FusionPool
    from facefuse.webui import build_ui

    pool = FusionPool(Settings(), workers=1)
    source, target = data_dir / "deepface_img2.jpg", data_dir / "deepface_img25.jpg"
    try:
        with TestClient(create_app(Settings(), pool=pool, webui=False)) as client:
            r = client.post("/api/v1/fuse", files={"source": ("s.jpg", source.read_bytes()),
                                                   "target": ("t.jpg", target.read_bytes())})
        demo = build_ui(Settings(output={"dir": str(tmp_path)}), pool)
        fuse = next(f.fn for f in demo.fns.values() if f.api_name == "fuse")
        text = fuse(str(source), str(target), 0.8, "normal", 0.4, 0, 0, 0, "original", 0.6, 0.2, "0", "jpg")[3]
    finally:
        pool.shutdown()
    assert r.status_code == 200 and NOTE in r.headers["X-Facefuse-Notes"]
    assert f"Note: {NOTE}" in text
