"""End to end in a real browser: `facefuse serve` in a subprocess, headless Debian chromium
driven by Playwright, at 1366x768 (the most common laptop screen: Fuse, the result and
Download must be in view without scrolling). Upload a source and a target, press Fuse,
check the result image; then a face-less target and a too-large file, and check the page
says so. The Video tab the same way: a short clip made from a photo (video_clips.py), the
numbered faces at Start, one fused frame, the fused clip (whole, and from Start to End).

Set FACEFUSE_SCREENSHOT=docs/webui.png to also write the README's screenshot."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

from servers import SERVE, serving
from video_clips import decoded, pan_frames, streams, write_clip

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="the web extra is not installed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`facefuse serve --port 0` (any free port) as a user would start it, with its own config."""
    tmp = tmp_path_factory.mktemp("serve")
    cfg = tmp / "config.yaml"
    cfg.write_text("output:\n  dir: outputs\nserver:\n  workers: 1\n")  # cwd is tmp; the default upload limit
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("FACEFUSE_API_KEY", None)
    with serving(SERVE + ["--port", "0", "--config", str(cfg)], tmp, env) as url:
        yield url, tmp / "outputs", tmp


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, server, width: int, height: int):
    """The WebUI in a new page of `width` x `height`; (page, the addresses it fetched outside the server)."""
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(60_000)
    outside: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith((server[0], "data:", "blob:")) else outside.append(r.url))
    pg.goto(server[0])
    pg.wait_for_selector("#fuse")
    return pg, outside


@pytest.fixture(scope="module")
def page(browser, server):
    pg, outside = _open(browser, server, 1366, 768)
    yield pg
    pg.close()
    assert not outside, f"the page fetched from outside the server: {outside[:5]}"  # works offline


def _upload(page, elem_id: str, path) -> None:
    page.set_input_files(f"#{elem_id} input[type=file]", str(path))


def _wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function("([s, t]) => [...document.querySelectorAll(s)].some(e => e.innerText.includes(t))",
                           arg=[selector, text])


def _in_view(page, selector: str) -> bool:
    """The whole element is inside the viewport."""
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect(); "
                                           "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight "
                                           "&& r.left >= 0 && r.right <= window.innerWidth; }")


def test_fuse_in_the_browser(page, server, source_path, target_path, tmp_path):
    _, outputs, _ = server
    assert not page.is_visible("#face")  # no ticked "#0" before a target
    page.click("#fuse")
    _wait_text(page, "#info", "⚠ Upload a source image first")
    _upload(page, "source", source_path)
    _upload(page, "target", target_path)
    page.wait_for_selector("#faces img")  # numbered preview of the target's faces
    _wait_text(page, "#target_info", "1200x800 · 1 face(s)")
    page.wait_for_function("() => !document.querySelector('#info').innerText.includes('⚠')")  # not stale
    assert page.is_visible("#face")
    assert _in_view(page, "#fuse") and _in_view(page, "#target")  # was below the fold, at y=1477
    page.click("#fuse")
    _wait_text(page, "#info", "Done in")
    page.wait_for_function("() => { const i = document.querySelector('#result img'); "
                           "return i && i.complete && i.naturalWidth > 0; }")
    page.wait_for_timeout(500)
    assert page.evaluate("window.scrollY") == 0  # nobody scrolled
    for seen in ("#result img", "#info", "#download"):  # the result's top was at y=756 of 768, Download at 1254
        assert _in_view(page, seen), seen
    page.mouse.wheel(0, 400)  # the controls scroll; the result column stays
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") == 400 and _in_view(page, "#result img") and _in_view(page, "#fuse")
    page.mouse.wheel(0, -2000)
    page.wait_for_timeout(300)
    size = page.eval_on_selector("#result img", "i => [i.naturalWidth, i.naturalHeight]")
    assert size == [1200, 800]
    assert "1200 × 800" in page.inner_text("#info") and "fused face #0 (1 of 1 found)" in page.inner_text("#info")
    assert page.locator("#compare img").count() == 2  # before / after
    box, width, height, nat_w, nat_h = page.eval_on_selector(
        "#compare", "e => { const i = e.querySelector('img'), r = i.getBoundingClientRect(); "
                    "return [e.querySelector('.slider-wrap').getBoundingClientRect().width, r.width, r.height, "
                    "i.naturalWidth, i.naturalHeight]; }")
    # the handle runs across the pictures only: the box is as wide as they are shown (it was the
    # column's width, with a portrait close-up in its middle)
    assert abs(width / height - nat_w / nat_h) < 0.03 and abs(box - width) <= 2, (box, width, height, nat_w, nat_h)
    page.wait_for_selector("#gallery img")
    thumb = page.eval_on_selector("#gallery img", "i => [i.naturalWidth, i.getBoundingClientRect().width]")
    assert thumb[0] == 256 and thumb[1] <= 256 + 1  # a thumbnail is never shown larger than it is
    assert page.locator("button[aria-label*='hare'], button[title*='hare']").count() == 0  # no Share buttons
    saved = sorted(p.name for p in outputs.iterdir() if p.is_file())  # (jobs/ holds video jobs)
    assert len(saved) == 2 and saved[0].endswith(".jpg") and saved[1].endswith(".json")
    assert Image.open(outputs / saved[0]).size == (1200, 800)
    with page.expect_download() as dl:
        page.click("#download")
    assert Image.open(dl.value.path()).size == (1200, 800)
    shot = tmp_path / "webui.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FACEFUSE_SCREENSHOT"):
        _save_small(shot, os.environ["FACEFUSE_SCREENSHOT"])


def test_fuse_is_in_view_on_a_full_hd_screen(browser, server, source_path, target_path):
    page, _ = _open(browser, server, 1920, 1080)
    try:
        _upload(page, "source", source_path)
        _upload(page, "target", target_path)
        page.wait_for_selector("#faces img")
        _wait_text(page, "#target_info", "1 face(s)")
        assert _in_view(page, "#fuse") and _in_view(page, "#result")  # Fuse was below the fold
    finally:
        page.close()


def test_on_a_phone_the_result_is_scrolled_into_view(browser, server, source_path, target_path):
    """A narrow window stacks the result below the controls: after Fuse it is scrolled into
    view (webui.SHOW_RESULT), as it is not where it already is (test_fuse_in_the_browser)."""
    page, _ = _open(browser, server, 412, 915)
    try:
        _upload(page, "source", source_path)
        _upload(page, "target", target_path)
        _wait_text(page, "#target_info", "1 face(s)")
        # scrolled down until Fuse shows at the window's foot, as a thumb would
        page.eval_on_selector("#fuse", "e => window.scrollBy(0, e.getBoundingClientRect().bottom - innerHeight + 8)")
        below = page.eval_on_selector("#result", "e => e.getBoundingClientRect().top") > page.viewport_size["height"]
        assert below and _in_view(page, "#fuse")  # the result stacked under Fuse, out of view
        page.click("#fuse")
        _wait_text(page, "#info", "Done in")
        page.wait_for_function("() => { const i = document.querySelector('#result img'); "
                               "return i && i.complete && i.naturalWidth > 0; }")
        page.wait_for_function("() => { const r = document.querySelector('#result').getBoundingClientRect(); "
                               "return r.top >= 0 && r.bottom <= window.innerHeight + 1; }")  # (sub-pixel)
    finally:
        page.close()


def test_clicking_a_face_of_a_group_photo_picks_it(page, group_path):
    _upload(page, "target", group_path)
    _wait_text(page, "#target_info", "click the faces")
    page.wait_for_function("() => { const i = document.querySelector('#faces img'); "
                           "return i && i.complete && i.naturalWidth === 710; }")  # the group photo's preview
    badges = page.eval_on_selector_all("#faces label", "ls => ls.filter(l => l.getBoundingClientRect().width > 4 "
                                                       "&& getComputedStyle(l).visibility !== 'hidden').length")
    assert badges == 0  # no title badge over the top row's numbers (faces #2 and #3 showed none)
    checked = "() => [...document.querySelectorAll('#face input[type=checkbox]')].filter(c => c.checked).length"
    page.wait_for_function(f"() => ({checked})() === 1")
    page.locator("#faces img").scroll_into_view_if_needed()
    x, y, w, h, nat_w, nat_h = page.eval_on_selector(
        "#faces img", "i => { const r = i.getBoundingClientRect(); "
                      "return [r.x, r.y, r.width, r.height, i.naturalWidth, i.naturalHeight]; }")
    scale = min(w / nat_w, h / nat_h)  # object-fit: contain, centred
    left, top = x + (w - nat_w * scale) / 2, y + (h - nat_h * scale) / 2
    # click the middle of face 1, where `detect` puts it (the preview is the photo's own size)
    faces = httpx.post(page.url + "api/v1/detect", files={"image": ("g.jpg", group_path.read_bytes())}).json()
    assert faces["width"] == nat_w
    x0, y0, x1, y1 = faces["faces"][1]["box"]
    page.mouse.click(left + (x0 + x1) / 2 * scale, top + (y0 + y1) / 2 * scale)
    page.wait_for_function(f"() => ({checked})() === 2")  # face 1 picked beside face 0


def test_no_face_and_too_large_messages(page, server, noface_path):
    _, outputs, tmp = server
    before = set(outputs.iterdir())
    _upload(page, "target", noface_path)
    _wait_text(page, "#target_info", "No face found in the target image")
    page.click("#fuse")
    _wait_text(page, "#info", "No face found in the target image")
    page.wait_for_timeout(500)
    body = page.inner_text("body")
    assert body.count("No face found in the target image") == 2  # the upload's line and the fusion's, once each
    assert page.locator(".toast-body").count() == 0  # no toast repeating it
    assert page.locator(".error").count() == 0  # no red error badge on the outputs
    big = tmp / "huge.png"  # 26 MB, over the default 25 MB limit (the browser checks the size before sending)
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 26 * 1024 * 1024, np.uint8).tobytes())
    _upload(page, "source", big)
    _wait_text(page, ".toast-body", "exceed the maximum allowed size")  # Gradio's own check, in the browser
    body = page.inner_text("body")
    assert "Traceback" not in body and "Exception" not in body
    assert set(outputs.iterdir()) == before  # nothing saved for failures


CLIP_FPS = 10


def _open_clip(page, path, facts: str) -> None:
    """Upload a clip to the Video tab (pressing Clear on one already there, as a person must)
    and wait for its facts line."""
    if page.locator("#video_clip button[aria-label=Clear]").count():
        page.click("#video_clip button[aria-label=Clear]")
        page.wait_for_function("() => document.querySelector('#video_clip_info').innerText.trim() === ''")
    _upload(page, "video_clip", path)
    _wait_text(page, "#video_clip_info", facts)


def _video_tab(page, source_path) -> None:
    page.get_by_role("tab", name="Video").click()
    _upload(page, "video_source", source_path)
    page.wait_for_selector("#video_source img")  # uploaded


def test_video_tab_in_the_browser(page, server, source_path, target_path, tmp_path):
    _, outputs, _ = server
    clip = write_clip(tmp_path / "pan.mp4", pan_frames(target_path, 15, (288, 192)), fps=CLIP_FPS)
    before = set(outputs.iterdir())
    _video_tab(page, source_path)
    _open_clip(page, clip, "288x192 · 10 fps · 1.5 s")
    assert page.get_attribute("#video_preview_at input[type=range]", "max") == "1.4"  # the scrubber spans the clip
    page.wait_for_selector("#video_faces img")  # the faces of the frame at Start, numbered (was a text field)
    _wait_text(page, "#video_faces_info", "1 face(s) in the frame at 0 s")
    assert page.is_visible("#video_face") and page.is_visible("#video_start") and page.is_visible("#video_end")
    page.locator("#video_inputs_column button", has_text="Advanced").click()
    page.wait_for_selector("#video_threshold", state="visible")  # the threshold the no-face hint speaks of
    assert _in_view(page, "#video_fuse") and _in_view(page, "#video_result")
    page.fill("#video_preview_at input[type=number]", "0.5")
    page.press("#video_preview_at input[type=number]", "Enter")
    page.click("#video_preview_button")
    _wait_text(page, "#video_info", "Frame at 0.5 s, fused")
    shown = Image.open(io.BytesIO(httpx.get(page.get_attribute("#video_preview img", "src")).content))
    fused = np.asarray(shown.convert("RGB"), dtype=float)
    frame = decoded(clip)[int(0.5 * CLIP_FPS)]
    Image.fromarray(frame).save(tmp_path / "frame.png")
    faces = httpx.post(page.url + "api/v1/detect", files={"image": ("f.png", (tmp_path / "frame.png").read_bytes())})
    x0, y0, x1, y1 = (round(v) for v in faces.json()["faces"][0]["box"])
    diff = np.abs(fused - frame).mean(axis=2)
    face = np.zeros(diff.shape, bool)
    face[y0:y1, x0:x1] = True
    assert diff[~face].mean() < 5 and diff[face].mean() > 3 * diff[~face].mean()  # that frame, its face changed

    page.click("#video_fuse")
    _wait_text(page, "#video_info", "Done: 15 frames")
    page.wait_for_function("() => { const v = document.querySelector('#video_result video'); "
                           "return v && v.readyState >= 1 && v.videoWidth === 288; }")  # the browser plays it
    reply = httpx.get(page.get_attribute("#video_result video", "src"))
    assert reply.status_code == 200
    (tmp_path / "result.mp4").write_bytes(reply.content)
    facts = streams(tmp_path / "result.mp4")
    assert facts["frames"] == 15 and facts["size"] == (288, 192)
    new = sorted(p.name for p in set(outputs.iterdir()) - before)
    assert len(new) == 2 and new[0].endswith(".json") and new[1] == new[0].replace(".json", ".mp4")
    assert (outputs / new[1]).read_bytes() == reply.content
    sidecar = json.loads((outputs / new[0]).read_text())
    assert sidecar["video"] == "pan.mp4" and sidecar["report"]["frames"] == 15
    with page.expect_download() as dl:
        page.click("#video_download")
    assert dl.value.path().read_bytes() == reply.content
    page.fill("#video_start input", "0.5")
    page.fill("#video_end input", "1")
    page.press("#video_end input", "Tab")
    page.click("#video_fuse")
    _wait_text(page, "#video_info", "Done: 5 frames")  # from Start to End only (the whole clip was always fused)
    assert _in_view(page, "#video_download")
    page.fill("#video_start input", "0")
    page.fill("#video_end input", "0")
    page.press("#video_end input", "Tab")


def test_video_without_a_face(page, server, source_path, noface_path, tmp_path):
    _, outputs, _ = server
    clip = write_clip(tmp_path / "cat.mp4", pan_frames(noface_path, 10, (256, 192)), fps=CLIP_FPS)
    before = set(outputs.iterdir())
    toasts = set(page.locator(".toast-body").all_inner_texts())  # (an earlier test's may still be up)
    _video_tab(page, source_path)
    _open_clip(page, clip, "256x192 · 10 fps · 1.0 s")
    page.click("#video_preview_button")
    _wait_text(page, "#video_info", "no face to fuse in the frame at 0 s")
    assert page.locator("#video_preview img").count() == 0
    page.click("#video_fuse")
    _wait_text(page, "#video_info", "The video: no face found in any of the 10 frames")  # names the clip, not an image
    message = page.inner_text("#video_info").strip()
    assert message.startswith("⚠") and message.endswith("No result.") and "\n" not in message  # one line
    assert page.locator("#video_result video").count() == 0 and not page.is_visible("#video_download")
    assert set(page.locator(".toast-body").all_inner_texts()) <= toasts  # no new toast
    assert page.locator("[id^=video_] .error").count() == 0  # no red error badge on the Video tab's outputs
    body = page.inner_text("body")
    assert "Traceback" not in body and "Exception" not in body
    assert set(outputs.iterdir()) == before  # nothing saved, the claimed name released


def test_a_bad_clip_is_one_line_without_a_toast(page, server, source_path, tmp_path):
    bad = tmp_path / "notvideo.mp4"
    bad.write_text("hello")
    toasts = set(page.locator(".toast-body").all_inner_texts())
    _video_tab(page, source_path)
    _open_clip(page, bad, "⚠ Video: not a video")
    page.wait_for_timeout(1000)  # the time a "Video not playable" toast took to come
    message = page.inner_text("#video_clip_info").strip()
    assert "\n" not in message and "/tmp" not in message and "gradio" not in message, message  # no temp path
    assert set(page.locator(".toast-body").all_inner_texts()) <= toasts  # no red toast
    assert not page.is_visible("#video_faces")


def _save_small(png, dest) -> None:
    """The README's copy: the whole page after a fusion, shrunk, as an optimised PNG."""
    img = Image.open(png).convert("RGB")
    img = img.resize((img.width * 11 // 20, img.height * 11 // 20), Image.LANCZOS)
    img.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
