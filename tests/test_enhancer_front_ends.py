"""The face enhancer from every front-end: `--enhancer` / `--enhancer-blend` on the CLI,
the `enhancer_blend` form field over REST, the WebUI's control; a wrong model is one line and
exit code 5 from the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models as om  # noqa: E402
from facefuse.config import InferenceSettings, Settings  # noqa: E402
from facefuse.io import decode_image, read_image  # noqa: E402


@pytest.fixture(scope="module")
def dark(tmp_path_factory) -> Path:
    """An enhancer that darkens: output = 0.5 x input - 0.5 (in [-1, 1])."""
    return om.enhancer_affine(tmp_path_factory.mktemp("enh") / "dark.onnx", gain=0.5, shift=-0.5)


def _face_mean(path: Path, box) -> float:
    img = read_image(path).astype(float)
    x0, y0, x1, y1 = (int(v) for v in box)
    return float(img[y0:y1, x0:x1].mean())


def test_cli_enhancer_darkens_the_face_by_its_blend(tmp_path, dark, fuser, source_path, target_path, run_cli):
    box = fuser.detect(target_path).faces[0].box
    means = {}
    for blend in ("0", "1"):
        out = tmp_path / f"b{blend}.png"
        proc = run_cli("fuse", source_path, target_path, out, "--enhancer", dark, "--enhancer-blend", blend,
                    "--smoothing", "0")
        assert proc.returncode == 0, proc.stderr
        means[blend] = _face_mean(out, box)
    plain = tmp_path / "plain.png"
    assert run_cli("fuse", source_path, target_path, plain, "--smoothing", "0").returncode == 0
    assert np.array_equal(read_image(plain), read_image(tmp_path / "b0.png"))  # blend 0 changes nothing
    assert means["1"] < means["0"] - 15  # the face is darker where the enhancer was mixed in


def test_cli_wrong_enhancer_is_one_line_exit_5(tmp_path, source_path, target_path, run_cli):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    proc = run_cli("fuse", source_path, target_path, tmp_path / "o.jpg", "--enhancer", bad)
    assert proc.returncode == 5 and proc.stderr.strip().count("\n") == 0 and "bad.onnx" in proc.stderr
    assert not (tmp_path / "o.jpg").exists()


def test_rest_enhancer_blend_field(dark, source_path, target_path):
    from fastapi.testclient import TestClient

    from facefuse.server import create_app
    from facefuse.service import FusionPool

    settings = Settings(inference=InferenceSettings(enhancer=str(dark)))
    pool = FusionPool(settings, workers=1)
    files = {"source": ("s.jpg", source_path.read_bytes()), "target": ("t.jpg", target_path.read_bytes())}
    try:
        with TestClient(create_app(settings, pool=pool, webui=False)) as client:
            images = {}
            for blend in ("0", "1"):
                r = client.post("/api/v1/fuse", files=files,
                                data={"enhancer_blend": blend, "smoothing": "0", "format": "png"})
                assert r.status_code == 200, r.text
                assert "enhance;dur=" in r.headers["Server-Timing"]
                images[blend] = decode_image(r.content).rgb.astype(float)
            r = client.post("/api/v1/fuse", files=files, data={"enhancer_blend": "2"})
            assert r.status_code == 400 and "enhancer_blend" in r.json()["message"]
    finally:
        pool.shutdown()
    assert images["1"].mean() < images["0"].mean() - 1  # the face darkened, over the whole frame's mean


def test_webui_shows_the_enhancer_controls_only_with_an_enhancer(dark, tmp_path):
    from facefuse.service import FusionPool
    from facefuse.webui import build_ui

    def ids(settings):
        demo = build_ui(settings, pool)
        return {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}

    pool = FusionPool(Settings(), workers=1)
    try:
        with_enhancer = ids(Settings(output={"dir": str(tmp_path)}, inference={"enhancer": str(dark)}))
        without = ids(Settings(output={"dir": str(tmp_path)}))
    finally:
        pool.shutdown()
    assert {"enhancer_blend", "enhancer_weight"} <= with_enhancer
    assert not {"enhancer_blend", "enhancer_weight"} & without
