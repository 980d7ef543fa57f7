"""The WebUI's Live tab: a source photo, the camera, and the fused stream beside it.

The frames do not go through Gradio's events (its streaming uploads each frame twice and
keeps every output in its cache): the page script `static/live.js` (served inline in the
page's head, from the package, no CDN) sends the camera's frames over the `/api/v1/live`
WebSocket (live_api.py) and shows the fused ones. Gradio only does what needs its login:
Start prepares the source on a pool worker and hands the script a one-time ticket for the
WebSocket, so the page never holds the API key. The controls are sent as they move.

Element ids: live_source, live_start (start / stop), live_output (the fused stream),
live_fps, live_snapshot, plus live_camera, live_latency, live_message and live_<control>.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable

import gradio as gr

from .errors import FaceFuseError
from .live_api import LiveHub
from .service import FusionPool

LIVE_CONTROLS = ("ratio", "mode", "smoothing", "brightness", "contrast", "saturation")
STREAM_HTML = """
<div id="live_stage" style="display:flex;gap:12px;flex-wrap:wrap">
  <figure style="margin:0;flex:1;min-width:280px"><video id="live_camera" autoplay muted playsinline
    style="width:100%;max-height:360px;background:#111;border-radius:6px"></video>
    <figcaption>camera</figcaption></figure>
  <figure style="margin:0;flex:1;min-width:280px"><img id="live_output" alt="the fused stream appears here"
    style="width:100%;max-height:360px;object-fit:contain;background:#111;border-radius:6px">
    <figcaption>fused</figcaption></figure>
</div>
<p style="margin:6px 0"><b><span id="live_fps">–</span></b> fps · latency <b><span id="live_latency">–</span></b> ms
 · <span id="live_message">Upload a source face, then press Start camera.</span></p>
"""


def page_head() -> str:
    """The Live tab's script, for the page's head (read from the installed package)."""
    script = resources.files("facefuse").joinpath("static/live.js").read_text(encoding="utf-8")
    return f"<script>{script}</script>"


def _prepare_job(fuser, data: bytes, source_face_index: int, threshold: float, max_pixels: int):
    image = fuser.read(data, "source", name="source image", max_pixels=max_pixels)
    return fuser.prepare_source(image, source_face_index, threshold)


def build_live_tab(settings, pool: FusionPool, hub: LiveHub, control: Callable[..., Any],
                   image_input: Callable[..., Any], message: Callable[[Exception], str]) -> None:
    """The tab's widgets and events (the Photo tab's `control`, `image_input` and page
    `message` passed in, so the two tabs look and speak alike)."""
    defaults = settings.fusion_params()
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            source = image_input(label="Source face", elem_id="live_source")
            start = gr.Button("Start camera", variant="primary", elem_id="live_start")
            snapshot = gr.Button("Snapshot", elem_id="live_snapshot")
            status = gr.Markdown(elem_id="live_status")
        with gr.Column(scale=2):
            gr.HTML(STREAM_HTML)
    with gr.Row():
        controls = {name: control(name, getattr(defaults, name), prefix="live_") for name in LIVE_CONTROLS}
    ticket = gr.Textbox(visible=False)

    def on_start(path, *values):
        """A ticket for the page script's WebSocket, with the prepared source; or a message."""
        if not path:
            return "", "⚠ Upload a source face first."
        try:
            overrides = dict(zip(controls, values))
            params = settings.fusion_params(**overrides)
            with open(path, "rb") as f:
                data = f.read()
            prepared = pool.call(_prepare_job, data, params.source_face_index, params.threshold,
                                 settings.output.max_pixels)
        except (FaceFuseError, OSError) as exc:
            return "", f"⚠ {message(exc)}"
        return hub.issue_ticket(prepared, overrides), ""

    names = ", ".join(controls)
    send_params = f"({names}) => {{ window.facefuseLive && window.facefuseLive.params({{{names}}}); }}"
    start.click(on_start, [source, *controls.values()], [ticket, status], api_visibility="private").then(
        None, [ticket], None, js="(t) => { window.facefuseLive.toggle(t); }")
    snapshot.click(None, None, None, js="() => { window.facefuseLive.snapshot(); }")
    for widget in controls.values():
        widget.change(None, list(controls.values()), None, js=send_params)

