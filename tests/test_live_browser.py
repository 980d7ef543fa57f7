"""The Live tab in headless Debian chromium with a fake camera: a Y4M clip made here from a
bundled photo plays as the webcam, the page script sends its frames over /api/v1/live, and the
fused stream, the fps label, the snapshot and the no-face message are checked.

Set FACEFUSE_SCREENSHOT_LIVE=docs/live.png to also write the README's screenshot (1366x768)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from servers import SERVE, serving

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium")
CAMERA = (640, 480)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="the web extra is not installed"),
]


def camera_frame(photo: Path) -> np.ndarray:
    """The photo fitted into a 640x480 camera frame (grey borders), RGB."""
    im = Image.open(photo).convert("RGB")
    im.thumbnail(CAMERA)
    frame = Image.new("RGB", CAMERA, (128, 128, 128))
    frame.paste(im, ((CAMERA[0] - im.width) // 2, (CAMERA[1] - im.height) // 2))
    return np.asarray(frame)


def write_y4m(path: Path, rgb: np.ndarray, frames: int = 10) -> None:
    """A still clip in chromium's fake-camera format: YUV4MPEG2, 4:2:0, the frame repeated."""
    h, w = rgb.shape[:2]
    y, cb, cr = Image.fromarray(rgb).convert("YCbCr").split()
    planes = y.tobytes() + cb.resize((w // 2, h // 2)).tobytes() + cr.resize((w // 2, h // 2)).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    cfg = tmp / "config.yaml"
    cfg.write_text("output:\n  dir: outputs\nserver:\n  workers: 1\n  live_sessions: 1\n")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", GRADIO_TEMP_DIR=str(tmp / "gradio"))
    env.pop("FACEFUSE_API_KEY", None)
    with serving(SERVE + ["--port", "0", "--config", str(cfg)], tmp, env) as url:
        yield url, tmp / "outputs", tmp


def _live_page(p, url: str, clip: Path, outside: list[str]):
    browser = p.chromium.launch(executable_path=CHROMIUM,
                                args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={clip}"])
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(60_000)
    page.on("request", lambda r: None if r.url.startswith((url, "ws://127.0.0.1", "data:", "blob:"))
            else outside.append(r.url))
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.wait_for_selector("#live_start")
    return browser, page


def _shown_image(page) -> np.ndarray:
    data = page.evaluate("""async () => {
        const r = await fetch(document.getElementById('live_output').src);
        return Array.from(new Uint8Array(await r.arrayBuffer())); }""")
    return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB")).astype(np.int16)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _start(page, source: Path, before_start=None) -> None:
    page.locator("#live_source input[type=file]").set_input_files(str(source))
    page.wait_for_selector("#live_source img")
    if before_start is not None:
        before_start()
    page.click("#live_start")
    page.wait_for_function("() => (document.getElementById('live_output').src || '').startsWith('blob:')")


def test_the_live_tab_fuses_the_camera_and_saves_a_snapshot(server, tmp_path, target_path, source_path, fuser):
    url, outputs, _ = server
    frame = camera_frame(target_path)
    clip = tmp_path / "camera.y4m"
    write_y4m(clip, frame)
    face = fuser.detect(frame).faces[0]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser, page = _live_page(p, url, clip, outside)
        try:
            _start(page, source_path)
            page.wait_for_function("() => parseFloat(document.getElementById('live_fps').textContent) > 0")
            cached = _files(server[2] / "gradio")  # the source photo's upload
            page.wait_for_timeout(1500)  # a few frames on: the tracker has settled
            assert _files(server[2] / "gradio") == cached  # live frames leave nothing in Gradio's cache
            assert float(page.text_content("#live_fps")) > 0
            assert page.text_content("#live_latency").strip().isdigit()
            shown = _shown_image(page)
            assert shown.shape == frame.shape
            diff = np.abs(shown - frame).mean(axis=2)
            w = x1 - x0
            assert diff[y0:y1, x0:x1].mean() > 6, diff[y0:y1, x0:x1].mean()  # the source's face now
            assert diff[:, :max(1, x0 - w)].mean() < 6  # beside it: camera and JPEG noise only
            before = page.evaluate("document.getElementById('live_output').src")
            page.wait_for_function(f"() => document.getElementById('live_output').src !== {json.dumps(before)}")
            if os.environ.get("FACEFUSE_SCREENSHOT_LIVE"):
                page.screenshot(path=os.environ["FACEFUSE_SCREENSHOT_LIVE"])
            page.click("#live_snapshot")
            page.wait_for_function("() => document.getElementById('live_message').textContent.includes('Snapshot saved')")
            name = page.text_content("#live_message").split("saved as ", 1)[1].split(" ")[0]
            saved = outputs / name
            meta = json.loads(saved.with_suffix(".json").read_text())
            assert meta["live"] is True and meta["faces_fused"] == 1 and meta["output_size"] == list(CAMERA)
            assert Image.open(saved).size == CAMERA
            page.click("#live_record")
            page.wait_for_function("() => document.getElementById('live_record').textContent.includes('Stop')")
            page.wait_for_timeout(1000)
            page.click("#live_record")
            page.wait_for_function("() => document.getElementById('live_message').textContent.includes('Recording saved')")
            video = outputs / page.text_content("#live_message").split("saved as ", 1)[1].split(" ")[0]
            assert video.suffix == ".mp4" and video.stat().st_size > 0
            assert json.loads(video.with_suffix(".json").read_text())["frames"] >= 1
            page.click("#live_start")  # stop
            page.wait_for_function("() => document.getElementById('live_start').textContent.includes('Start')")
        finally:
            browser.close()
    assert outside == []  # nothing fetched from anywhere else (no CDN)


def test_with_no_face_in_view_the_page_says_so(server, tmp_path, group_path, noface_path):
    """Also the source-face picker: a group photo as the source gets its faces numbered."""
    url, _, _ = server
    clip = tmp_path / "cat.y4m"
    frame = camera_frame(noface_path)
    write_y4m(clip, frame)
    with sync_api.sync_playwright() as p:
        browser, page = _live_page(p, url, clip, [])
        try:
            _start(page, group_path, before_start=lambda: page.wait_for_selector("#live_source_faces img"))
            assert page.locator("#live_source_face").is_visible()
            page.wait_for_function("() => document.getElementById('live_message').textContent.includes('No face in view')")
            shown = _shown_image(page)
            assert np.abs(shown - frame).mean() < 6  # unchanged but for the camera's YUV and two JPEGs
        finally:
            browser.close()
