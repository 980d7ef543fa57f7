"""WebUI logic without a browser: the page's controls and defaults, and its event handlers
called as Gradio calls them, on real photos (results on disk, sidecars, gallery, messages).
The same page in a real browser: test_browser.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from facefuse.config import Settings  # noqa: E402
from facefuse.errors import NoFaceError  # noqa: E402
from facefuse.service import FusionPool  # noqa: E402
from facefuse.webui import ResultStore, build_ui, page_message  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")  # gr.Warning outside a page

ELEM_IDS = {"source", "target", "fuse", "result", "ratio", "mode", "smoothing", "brightness", "contrast",
            "saturation", "resolution", "threshold", "padding", "face"}


@pytest.fixture(scope="module")
def pool():
    p = FusionPool(Settings(), workers=1)
    yield p
    p.shutdown()


@pytest.fixture()
def ui(pool, tmp_path):
    settings = Settings(output={"dir": str(tmp_path / "out"), "default_resolution": 1024},
                        fusion={"ratio": 0.55, "mode": "blend", "smoothing": 0.1},
                        face_detection={"threshold": 0.5, "padding_ratio": 0.3})
    store = ResultStore(settings.output.dir)
    demo = build_ui(settings, pool, store)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    return demo, by_id, fns, store, tmp_path / "out"


def _fuse(fns, source, target, face="0", fmt="jpg", resolution="original", ratio=0.8):
    return fns["fuse"](str(source), str(target), ratio, "normal", 0.4, 0.0, 0.0, 0.0, resolution, 0.6, 0.2, face, fmt)


def test_page_has_every_control_with_config_defaults(ui):
    _, by_id, fns, _, out = ui
    assert ELEM_IDS <= set(by_id)
    assert {"fuse", "target_faces", "source_faces", "gallery"} <= set(fns)
    assert by_id["ratio"].value == 0.55 and by_id["mode"].value == "blend" and by_id["smoothing"].value == 0.1
    assert by_id["resolution"].value == "1024" and by_id["threshold"].value == 0.5 and by_id["padding"].value == 0.3
    assert [c[1] for c in by_id["resolution"].choices] == ["original", "512", "1024", "2048", "4096"]
    assert out.is_dir()


def test_fuse_saves_file_sidecar_and_gallery(ui, source_path, target_path, group_path):
    _, _, fns, _, out = ui
    path, (before, after), download, text, gallery = _fuse(fns, source_path, target_path, fmt="png", resolution="512")
    assert re.fullmatch(r"\d{8}-\d{6}-\d{3}\.png", path.rsplit("/", 1)[1])
    assert path.startswith(str(out))
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (512, 341)
    # before / after: a close-up of the fused face (its region grown by a third), labelled
    assert before.shape == after.shape and before.shape[0] < 341 and before.shape[1] < 512
    assert np.abs(before.astype(int) - after).mean() > 0.5
    assert download["value"] == path and download["visible"] is True
    assert "512 × 341" in text and "fused face #0 (1 of 1 found)" in text and "Done in" in text
    sidecar = json.loads(open(path[:-4] + ".json").read())
    assert sidecar["image"] == path.rsplit("/", 1)[1] and sidecar["source"] == "source.jpg"
    assert sidecar["params"]["ratio"] == 0.8 and sidecar["params"]["resolution"] == 512
    assert sidecar["output_size"] == [512, 341] and sidecar["format"] == "png"
    assert len(gallery) == 1

    path2, *_, text2, gallery2 = _fuse(fns, source_path, group_path, face="all", fmt="webp")
    assert Image.open(path2).format == "WEBP" and Image.open(path2).size == (710, 473)
    m = re.search(r"fused face #0, #1, #2, #3(, #\d)* \((\d+) of (\d+) found\)", text2)
    assert m and m.group(2) == m.group(3)  # all faces: every face found was fused
    assert [caption.split(" ")[0] for _, caption in gallery2] == [path2.rsplit("/", 1)[1], path.rsplit("/", 1)[1]]
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".json", ".png", ".webp"]  # no temp files
    assert fns["gallery"]() == gallery2


def test_target_preview_numbers_the_faces_and_a_click_picks_one(ui, group_path, noface_path):
    _, _, fns, _, _ = ui
    preview, face, text, boxes, base = fns["target_faces"](str(group_path), 0.6, ["0"])
    n = int(re.search(r"(\d+) face\(s\)", text).group(1))
    assert n >= 4 and preview["visible"] is True and preview["value"].shape == (473, 710, 3)
    assert [v for _, v in face["choices"]] == [str(i) for i in range(n)] and face["value"] == ["0"]
    assert len(boxes) == n and "click the faces" in text
    pick = fns["on_pick"]
    x0, y0, x1, y1 = boxes[2]
    click = gr.SelectData(None, {"index": [(x0 + x1) / 2, (y0 + y1) / 2], "value": None})
    picked, drawn = pick(["0"], boxes, base, click)
    assert picked == ["0", "2"]  # a click on face 2 adds it
    cx = int((x0 + x1) / 2)  # on face 2's box edge: now green (picked)
    assert drawn[int(y0) + 1, cx][1] > 200 and drawn[int(y0) + 1, cx][0] < 60
    picked, _ = pick(picked, boxes, base, click)
    assert picked == ["0"]  # a second click removes it
    miss = gr.SelectData(None, {"index": [1, 1], "value": None})
    assert pick(["0"], boxes, base, miss)[0]["__type__"] == "update"  # a click beside the faces changes nothing
    preview, face, text, _, _ = fns["target_faces"](str(noface_path), 0.6, ["0"])
    assert preview["visible"] is False and "No face found in the target image" in text


def test_several_target_faces_are_fused(ui, source_path, group_path):
    _, _, fns, _, _ = ui
    *_, text, _ = _fuse(fns, source_path, group_path, face=["1", "3"])
    assert "fused face #1, #3 (2 of" in text


def test_messages_say_which_image_and_why(ui, source_path, target_path, noface_path, tmp_path):
    """One failure is one line in the page, and the result area says it is empty (no error
    badge on every output, no toast)."""
    _, _, fns, _, out = ui
    cases = [
        ((source_path, noface_path), "No face found in the target image"),
        ((noface_path, target_path), "No face found in the source image"),
        ((source_path, target_path, "7"), "The target image: face 7 requested, only 1 found"),
        ((source_path, target_path, "seven"), "face_index: must be a face number"),
        ((source_path, target_path, []), "Pick at least one target face"),
    ]
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not a picture")
    cases.append(((text_file, target_path), "Source image: not an image"))
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(target_path.read_bytes()[:5000])
    cases.append(((source_path, truncated), "Target image: damaged or truncated"))
    for args, expected in cases:
        result, compare, download, text, gallery = _fuse(fns, *args)
        assert expected in text and text.startswith("⚠") and "No result" in text and "Traceback" not in text
        assert result is None and compare is None and download["visible"] is False
        assert gallery == {"__type__": "update"}  # the gallery is left as it was
    result, *_, text, _ = fns["fuse"](None, str(target_path), 0.8, "normal", 0.4, 0, 0, 0, "original", 0.6, 0.2,
                                      "0", "jpg")
    assert result is None and "Upload a source image first" in text
    assert "No face found in the source image" in fns["source_faces"](str(noface_path), 0.6)[0]
    assert not list(out.iterdir())  # nothing saved for failures


def test_pixel_limit_message(pool, tmp_path, source_path, target_path):
    settings = Settings(output={"dir": str(tmp_path / "o"), "max_pixels": 1_000_000})
    demo = build_ui(settings, pool)
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    big = tmp_path / "big.jpg"
    shutil.copy(target_path.parent / "large_target.jpg", big)
    *_, text, _ = _fuse(fns, source_path, big)
    assert "Target image: 4352x2903 = 12.6 MP is over the limit of 1 MP" in text
    preview, _, text, _, _ = fns["target_faces"](str(big), 0.6, ["0"])
    assert "over the limit" in text and preview["visible"] is False


@pytest.mark.slow
def test_gallery_shows_earlier_results_after_a_restart(pool, tmp_path, source_path, target_path):
    settings = Settings(output={"dir": str(tmp_path / "o")})
    fns = {f.api_name: f.fn for f in build_ui(settings, pool).fns.values() if f.api_name}
    first = _fuse(fns, source_path, target_path, resolution="512")[0]
    second = _fuse(fns, source_path, target_path, resolution="1024")[0]
    restarted = {f.api_name: f.fn for f in build_ui(settings, pool).fns.values() if f.api_name}  # a new store
    shown = restarted["gallery"]()
    assert [c.split(" · ")[0] for _, c in shown] == [Path(second).name, Path(first).name]
    assert Image.open(shown[0][0]).size == (256, 171)  # a thumbnail, at its size


def test_page_message():
    assert page_message(NoFaceError("source")).startswith(
        "No face found in the source image.")
    assert page_message(NoFaceError("target", requested=2, found=1)) == (
        "The target image: face 2 requested, only 1 found.")


def test_result_names_never_collide(tmp_path, pool, source_path, target_path):
    from facefuse.service import fuse_upload as fuse_uploads

    store = ResultStore(tmp_path / "r")
    fused = pool.call(fuse_uploads, source_path.read_bytes(), target_path.read_bytes(),
                      pool.settings.fusion_params(resolution=512))
    paths = [store.save(fused, "jpg", {"n": i}) for i in range(5)]
    assert len(set(paths)) == 5
    assert [json.loads(p.with_suffix(".json").read_text())["n"] for p in paths] == list(range(5))
    assert len(store.gallery()) == 5 and store.gallery()[0][1].startswith(paths[-1].name)


def test_results_in_two_formats_in_the_same_millisecond_keep_their_sidecars(tmp_path, pool, source_path,
                                                                           target_path, monkeypatch):
    import datetime as dt

    import facefuse.webui as webui
    from facefuse.service import fuse_upload as fuse_uploads

    fixed = dt.datetime(2024, 5, 6, 7, 8, 9, 123000)
    monkeypatch.setattr(webui, "datetime", type("Frozen", (), {"now": staticmethod(lambda: fixed)}))
    store = ResultStore(tmp_path / "r")
    fused = pool.call(fuse_uploads, source_path.read_bytes(), target_path.read_bytes(),
                      pool.settings.fusion_params(resolution=256))
    png = store.save(fused, "png", {"n": 0})
    jpg = store.save(fused, "jpg", {"n": 1})  # "<stem>.jpg" is free but "<stem>.json" is png's
    assert png.name == "20240506-070809-123.png" and jpg.name == "20240506-070809-123-1.jpg"
    assert json.loads(png.with_suffix(".json").read_text())["image"] == png.name
    assert json.loads(jpg.with_suffix(".json").read_text())["image"] == jpg.name
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "20240506-070809-123-1.jpg", "20240506-070809-123-1.json", "20240506-070809-123.json",
        "20240506-070809-123.png"]


def test_thumbnail_folder_is_removed_with_the_store(tmp_path):
    import gc

    store = ResultStore(tmp_path / "r")
    thumbs = store._thumbs
    assert thumbs.is_dir()
    del store
    gc.collect()
    assert not thumbs.exists()


def test_video_tab_previews_a_frame_and_fuses_the_clip(pool, tmp_path, source_path, target_path):
    """The Video tab: a clip's facts after upload, one fused frame at a chosen time, the
    whole clip fused and saved in output.dir with a sidecar (same frames, audio kept)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import video_clips as vc

    clip = vc.write_clip(tmp_path / "pan.mp4", vc.pan_frames(target_path, 12, (240, 160)), fps=12, audio=True)
    out = tmp_path / "o"
    fns = {f.api_name: f.fn for f in build_ui(Settings(output={"dir": str(out)}), pool).fns.values() if f.api_name}
    text, slider, faces, face, boxes, base, faces_text = fns["on_clip"](str(clip), None, 0.6, ["0"])
    assert "240x160" in text and "audio" in text and slider["maximum"] > 0.5
    assert faces["visible"] and face["visible"] and len(boxes) == 1 and "1 face(s) in the frame at 0 s" in faces_text
    values = (0.9, "normal", 0.4, "original", 0.6, 0.2)  # ratio, mode, smoothing, resolution, threshold, padding
    frame, note = fns["on_preview"](str(source_path), str(clip), 0.5, ["0"], *values)
    assert frame.shape == (160, 240, 3) and "0.5 s" in note
    path, text, download = fns["on_fuse"](str(source_path), str(clip), None, None, ["0"], *values)
    assert path and "Done" in text and download["visible"] is True
    assert vc.streams(Path(path))["frames"] == 12 and vc.streams(Path(path))["audio_s"]
    sidecar = json.loads(Path(path).with_suffix(".json").read_text())
    assert sidecar["video"] == "pan.mp4" and sidecar["report"]["frames"] == 12
    path, text, _ = fns["on_fuse"](str(source_path), str(clip), 0.5, 0.75, ["0"], *values)  # Start and End
    assert "Done:** 3 frames" in text and vc.streams(Path(path))["frames"] == 3
    _, text, download = fns["on_fuse"](str(source_path), None, None, None, ["0"], *values)
    assert "Upload a source face and a clip first" in text and download["visible"] is False
