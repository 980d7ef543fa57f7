"""The WebUI's Live tab: a source photo, the camera, and the fused stream beside it.

The frames do not go through Gradio's events (its streaming uploads each frame twice and
keeps every output in its cache): the page script `static/live.js` (served inline in the
page's head, from the package, no CDN) sends the camera's frames over the `/api/v1/live`
WebSocket (live_api.py) and shows the fused ones. Gradio only does what needs its login:
Start prepares the source on a pool worker and hands the script a one-time ticket for the
WebSocket, so the page never holds the API key. The controls are sent as they move.

Element ids: live_source, live_start (start / stop), live_output (the fused stream),
live_fps, live_snapshot, plus live_record (start / stop recording), live_source_faces and live_source_face (the numbered picker
of a group source, as on the Photo tab), live_camera, live_latency, live_message and
live_<control>.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable

import gradio as gr

from .errors import FaceFuseError
from .imaging import shrink_to_side
from .live_api import LiveHub
from .preview import draw_boxes
from .service import FusionPool

LIVE_CONTROLS = ("ratio", "mode", "smoothing", "brightness", "contrast", "saturation")
PREVIEW_SIDE = 640
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


def _numbered_faces_job(fuser, data: bytes, threshold: float, max_pixels: int):
    """(faces in the source, a preview with them numbered in fusion order)."""
    image = fuser.read(data, "source", name="source image", max_pixels=max_pixels)
    faces = fuser.detect(image, threshold).faces
    preview = shrink_to_side(image, PREVIEW_SIDE)
    k = preview.shape[1] / image.shape[1]
    return len(faces), draw_boxes(preview, [[v * k for v in f.box] for f in faces])


def _prepare_job(fuser, data: bytes, source_face_index: int, threshold: float, max_pixels: int):
    image = fuser.read(data, "source", name="source image", max_pixels=max_pixels)
    return fuser.prepare_source(image, source_face_index, threshold)


def build_live_tab(settings, pool: FusionPool, hub: LiveHub, control: Callable[..., Any],
                   image_input: Callable[..., Any], message: Callable[[Exception], str],
                   result_column_class: str = "") -> None:
    """The tab's widgets and events (the Photo tab's `control`, `image_input` and page
    `message` passed in, so the two tabs look and speak alike)."""
    defaults = settings.fusion_params()
    # two columns, as on the Photo and Video tabs: the source and the controls, and the stream
    # with its buttons in a column that stays in view (result_column_class)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            source = image_input(label="Source face", elem_id="live_source")
            source_faces = gr.Image(label="Faces in the source, numbered", interactive=False, format="jpeg",
                                    elem_id="live_source_faces", visible=False, height=200)
            source_face = gr.Dropdown([("#0", "0")], value="0", label="Source face", elem_id="live_source_face",
                                      info="which face of the source photo is brought in", visible=False)
            # one a row: the column is a third of the page, and two a row wrapped each help text
            controls = {name: control(name, getattr(defaults, name), prefix="live_") for name in LIVE_CONTROLS}
        with gr.Column(scale=2, elem_classes=result_column_class):
            start = gr.Button("Start camera", variant="primary", elem_id="live_start")
            gr.HTML(STREAM_HTML)
            with gr.Row():
                snapshot = gr.Button("Snapshot", elem_id="live_snapshot")
                record = gr.Button("Record", elem_id="live_record")
            status = gr.Markdown(elem_id="live_status")
    ticket = gr.Textbox(visible=False)

    def on_source(path):
        """A group source gets its faces numbered and a picker, as on the Photo tab."""
        hidden = gr.update(value=None, visible=False), gr.update(choices=[("#0", "0")], value="0", visible=False)
        if not path:
            return (*hidden, "")
        try:
            with open(path, "rb") as f:
                n, preview = pool.call(_numbered_faces_job, f.read(), defaults.threshold, settings.output.max_pixels)
        except (FaceFuseError, OSError) as exc:
            return (*hidden, f"⚠ {message(exc)}")
        if n < 2:
            return (*hidden, "" if n else "⚠ No face found in the source photo: try another one.")
        choices = [(f"#{i}" + (" (largest)" if i == 0 else ""), str(i)) for i in range(n)]
        return gr.update(value=preview, visible=True), gr.update(choices=choices, value="0", visible=True), ""

    def on_start(path, face, *values):
        """A ticket for the page script's WebSocket, with the prepared source; or a message."""
        if not path:
            return "", "⚠ Upload a source face first."
        try:
            overrides = dict(zip(controls, values, strict=True), source_face_index=int(face or 0))
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
    source.upload(on_source, [source], [source_faces, source_face, status], api_visibility="private")
    source.clear(on_source, [source], [source_faces, source_face, status], api_visibility="private")
    start.click(on_start, [source, source_face, *controls.values()], [ticket, status], api_visibility="private").then(
        None, [ticket], None, js="(t) => { window.facefuseLive.toggle(t); }")
    snapshot.click(None, None, None, js="() => { window.facefuseLive.snapshot(); }")
    record.click(None, None, None, js="() => { window.facefuseLive.record(); }")
    for widget in controls.values():
        widget.change(None, list(controls.values()), None, js=send_params)

