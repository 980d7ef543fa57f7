"""The Gradio WebUI: pick a source face and a target, set the controls, press Fuse.

`build_ui(settings, pool)` returns the Blocks app; `server.create_app` mounts it at / beside
the REST API, and both share one `service.FusionPool`, so the models are loaded once at start-up
and every image operation runs on a worker thread. Each result is saved under
`output.dir` with a timestamped name and a JSON sidecar of its parameters.

Element ids (for tests and scripts): source target fuse result ratio mode smoothing
brightness contrast saturation resolution threshold padding face, plus format, faces
(numbered preview of the target's faces), compare (before/after), download, info, gallery.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import typing
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from .config import RESOLUTION_CHOICES, FusionParams, Settings
from .errors import ConfigError, FaceFuseError, NoFaceError, OutputExistsError
from .imaging import resize_frame, shrink_to_side
from .io import FORMATS, encode_image, write_bytes_atomic
from .service import FusionPool, fuse_upload

log = logging.getLogger("facefuse.webui")

PREVIEW_SIDE = 1280  # before/after and face previews are shrunk to this; the file is full size
THUMB_SIDE = 256
GALLERY_MAX = 60
FORMAT_CHOICES = [("JPEG", "jpg"), ("PNG", "png"), ("WebP", "webp")]


def _image_input(**kwargs) -> gr.Image:
    """A gr.Image that hands over the uploaded file untouched: facefuse decodes it itself
    (EXIF, pixel limit, one clear message for anything unreadable) instead of Gradio's PIL
    step failing with its own message. (Patched on the instance: a gr.Image subclass would
    make Gradio write a .pyi file next to this module.)"""
    component = gr.Image(type="filepath", sources=["upload", "clipboard"], height=320, **kwargs)
    component.preprocess = lambda payload: None if payload is None else payload.path
    return component


class ResultStore:
    """Results of this server: full-size files + JSON sidecars in `out_dir`, thumbnails in a temp dir."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir).resolve()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"output.dir: cannot create {self.dir} ({exc.strerror or exc})") from exc
        self._thumbs = Path(tempfile.mkdtemp(prefix="facefuse-thumbs-"))
        # removed when the store goes away or the process exits (Gradio serves copies from its cache)
        weakref.finalize(self, shutil.rmtree, self._thumbs, ignore_errors=True)
        self._items: list[tuple[str, str]] = []  # (thumbnail path, caption), oldest first
        self._lock = threading.Lock()

    def save(self, fused, ext: str, meta: dict) -> Path:
        """Write the image and its sidecar atomically under a new timestamped name."""
        now = datetime.now()
        stem = now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"
        report = fused.result.report()
        for attempt in range(100):
            name = stem if attempt == 0 else f"{stem}-{attempt}"
            path = self.dir / f"{name}.{ext}"
            sidecar = {"created": now.isoformat(timespec="milliseconds"), "image": path.name, **meta,
                       **report, "timings_s": {k: round(v, 4) for k, v in fused.timings.items()}}
            # both names are claimed without overwriting: the sidecar first (a result in another
            # format may already have this stem), then the image
            try:
                write_bytes_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())
            except OutputExistsError:
                continue
            try:
                write_bytes_atomic(path, fused.data)
                break
            except OutputExistsError:
                path.with_suffix(".json").unlink(missing_ok=True)
                continue
        else:  # pragma: no cover - a hundred results in the same millisecond
            raise OutputExistsError(self.dir, "could not find a free file name")
        thumb = self._thumbs / f"{path.stem}.jpg"
        thumb.write_bytes(encode_image(shrink_to_side(fused.result.image, THUMB_SIDE), "JPEG", quality=85))
        w, h = fused.size
        with self._lock:
            self._items.append((str(thumb), f"{path.name} · {w}x{h}"))
        return path

    def gallery(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(reversed(self._items[-GALLERY_MAX:]))


# -- messages -------------------------------------------------------------------------
def page_message(exc: FaceFuseError) -> str:
    """One line for the page, saying which image and what to try."""
    if isinstance(exc, NoFaceError):
        which = exc.which or "uploaded"
        if exc.requested is None:
            return (f"No face found in the {which} image. Try another photo, "
                    f"or lower the detection threshold under Advanced.")
        return f"The {which} image: {exc.detail}."
    text = str(exc)
    return text[:1].upper() + text[1:]


def _fail(exc: FaceFuseError) -> gr.Error:
    return gr.Error(page_message(exc), print_exception=False)


def _read_upload(path: str | None, which: str) -> bytes:
    if not path:
        raise gr.Error(f"Upload a {which} image first.", print_exception=False)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise gr.Error(f"The {which} upload could not be read ({exc.strerror or exc}); upload it again.",
                       print_exception=False) from exc


def _face_choices(n: int) -> list[tuple[str, str]]:
    choices = [("0 (largest)", "0")] + [(str(i), str(i)) for i in range(1, n)]
    if n > 1:
        choices.append((f"all {n} faces", "all"))
    return choices


def _face_choice(value: Any) -> dict:
    """The face control's value ("all", or a face number) as FusionParams fields."""
    text = str(value if value is not None else "0").strip().lower()
    if text.startswith("all"):
        return {"all_faces": True, "face_index": 0}
    number = text.split(" ")[0]
    if not number.isdigit():
        raise gr.Error(f"Target face: expected a face number or 'all', got {value!r}.", print_exception=False)
    return {"all_faces": False, "face_index": int(number)}


# -- jobs that run on a pool worker ----------------------------------------------------------
def _faces_job(fuser, data: bytes, which: str, threshold: float, draw: bool, max_pixels: int):
    from .preview import draw_faces

    rgb = fuser.read(data, name=f"{which} image", max_pixels=max_pixels)
    faces = fuser.detect(rgb, threshold).faces
    preview = draw_faces(rgb, faces, max_side=PREVIEW_SIDE) if draw else None
    return len(faces), preview, rgb.shape[1], rgb.shape[0]


def _fuse_job(fuser, src: bytes, tgt: bytes, params, fmt: str, quality: int, progress, max_pixels: int):
    fused = fuse_upload(fuser, src, tgt, params, fmt, quality, progress, max_pixels)
    w, h = fused.size
    before = shrink_to_side(resize_frame(fused.target, (w, h)), PREVIEW_SIDE)
    after = shrink_to_side(fused.result.image, PREVIEW_SIDE)
    return fused, before, after


# -- the controls: one per FusionParams field ------------------------------------------------
PICKED_ELSEWHERE = ("face_index", "all_faces", "source_face_index")  # the face pickers set these
ADVANCED = ("threshold", "padding")  # under Advanced; every other field is a main control
SLIDER_STEP = 0.05
SLIDER_FLOOR = {"threshold": 0.05}  # a 0 threshold takes every blob for a face


def _bounds(info) -> tuple[float | None, float | None]:
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    return lo, hi


def control(name: str, value: Any) -> gr.components.Component:
    """The widget of FusionParams field `name`, with its title, help text and range: a
    choice of words is a radio, a bounded number a slider, a flag a checkbox, the output
    resolution a dropdown of the usual sizes."""
    info = FusionParams.model_fields[name]
    common = dict(label=info.title, info=info.description, elem_id=name)
    if name == "resolution":
        choices = list(RESOLUTION_CHOICES) + ([str(value)] if str(value) not in RESOLUTION_CHOICES else [])
        return gr.Dropdown(choices, value=str(value), label=info.title, elem_id=name)
    if typing.get_origin(info.annotation) is typing.Literal:
        return gr.Radio(list(typing.get_args(info.annotation)), value=value, **common)
    if info.annotation is bool:
        return gr.Checkbox(value=value, **common)
    lo, hi = _bounds(info)
    if info.annotation is float and lo is not None and hi is not None:
        return gr.Slider(max(lo, SLIDER_FLOOR.get(name, lo)), hi, value=value, step=SLIDER_STEP, **common)
    return gr.Number(value=value, precision=0 if info.annotation is int else None, **common)


def fuse_signature(controls: dict) -> inspect.Signature:
    """The fuse handler's parameters under the CLI's and REST's names, so Gradio's API page
    and `gradio_client` show `source, target, ratio, mode, ...` (not internal names)."""
    names = ["source", "target", *controls, "face", "format"]
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    return inspect.Signature(params)


# -- the page -------------------------------------------------------------------------------
def build_ui(settings: Settings, pool: FusionPool, store: ResultStore | None = None) -> gr.Blocks:
    store = store or ResultStore(settings.output.dir)
    out = settings.output
    defaults = settings.fusion_params()  # config.yaml's values
    max_mb = settings.server.max_upload_mb

    with gr.Blocks(title="facefuse", analytics_enabled=False) as demo:
        gr.Markdown(
            "## facefuse\nPut the face of the **source** photo into the **target** photo. "
            f"Everything runs on this machine. Uploads up to {max_mb:g} MB and "
            f"{out.max_pixels / 1e6:.0f} MP; results are saved in `{out.dir}`."
        )
        with gr.Row(equal_height=False):
            with gr.Column():
                source = _image_input(label="Source face", elem_id="source")
                source_info = gr.Markdown(elem_id="source_info")
            with gr.Column():
                target = _image_input(label="Target image", elem_id="target")
                target_info = gr.Markdown(elem_id="target_info")
                faces = gr.Image(label="Faces in the target, numbered", interactive=False,
                                 format="jpeg", elem_id="faces", visible=False, height=320)
            with gr.Column():
                result = gr.Image(label="Result (full resolution)", interactive=False, type="filepath",
                                  elem_id="result", height=320)
                info = gr.Markdown(elem_id="info")
                download = gr.DownloadButton("Download full resolution", elem_id="download", visible=False)
        controls: dict[str, gr.components.Component] = {}
        main = [n for n in FusionParams.model_fields if n not in ADVANCED and n not in PICKED_ELSEWHERE]
        for row in range(0, len(main), 3):
            with gr.Row():
                for name in main[row:row + 3]:
                    controls[name] = control(name, getattr(defaults, name))
                if row + 3 >= len(main):
                    fmt = gr.Radio(FORMAT_CHOICES, value="jpg", label="File format", elem_id="format")
        with gr.Accordion("Advanced", open=False) as advanced:
            with gr.Row():
                for name in ADVANCED:
                    controls[name] = control(name, getattr(defaults, name))
                face = gr.Dropdown(_face_choices(1), value="0", label="Target face", elem_id="face",
                                   info="numbers as on the preview; 0 = largest", allow_custom_value=True)
        threshold = controls["threshold"]
        fuse_btn = gr.Button("Fuse", variant="primary", elem_id="fuse")
        compare = gr.ImageSlider(label="Before / after", type="numpy", format="jpeg", elem_id="compare",
                                 interactive=False, max_height=560)
        gallery = gr.Gallery(label="Results made by this server (newest first)", columns=8, rows=1, height=220,
                             object_fit="cover", elem_id="gallery", allow_preview=True)

        # -- handlers ---------------------------------------------------------------------
        def on_source(path, thr):
            if not path:
                return ""
            try:
                n, _, w, h = pool.call(_faces_job, _read_upload(path, "source"), "source", thr, False,
                                       out.max_pixels)
            except FaceFuseError as exc:
                gr.Warning(page_message(exc))
                return f"⚠ {page_message(exc)}"
            if n == 0:
                msg = page_message(NoFaceError("source"))
                gr.Warning(msg)
                return f"⚠ {msg}"
            return f"{w}x{h} · {n} face(s); the largest is used"

        def on_target(path, thr, current):
            hidden = gr.update(value=None, visible=False)
            if not path:
                return hidden, gr.update(choices=_face_choices(1), value="0"), "", gr.update()
            try:
                n, preview, w, h = pool.call(_faces_job, _read_upload(path, "target"), "target", thr, True,
                                             out.max_pixels)
            except FaceFuseError as exc:
                gr.Warning(page_message(exc))
                return hidden, gr.update(choices=_face_choices(1), value="0"), f"⚠ {page_message(exc)}", gr.update()
            choices = _face_choices(max(n, 1))
            value = current if current in [v for _, v in choices] else "0"
            if n == 0:
                msg = page_message(NoFaceError("target"))
                gr.Warning(msg)
                return hidden, gr.update(choices=choices, value="0"), f"⚠ {msg}", gr.update()
            text = f"{w}x{h} · {n} face(s)" + (" — choose which under Advanced → Target face" if n > 1 else "")
            return (gr.update(value=preview, visible=True), gr.update(choices=choices, value=value), text,
                    gr.update(open=True) if n > 1 else gr.update())

        def on_fuse(*args):  # (source, target, *controls, face, format[, progress]): see fuse_signature
            n = len(controls) + 4
            src_path, tgt_path, *values, face_v, fmt_v = args[:n]
            progress = args[n] if len(args) > n else gr.Progress()
            src, tgt = _read_upload(src_path, "source"), _read_upload(tgt_path, "target")
            overrides: dict[str, Any] = dict(zip(controls, values), **_face_choice(face_v))
            ext = fmt_v if fmt_v in FORMATS else "jpg"
            t0 = time.perf_counter()
            try:
                params = settings.fusion_params(**overrides)
                progress(0.0, desc="waiting for a worker")
                fused, before, after = pool.call(_fuse_job, src, tgt, params, FORMATS[ext].pil, out.quality,
                                                 lambda frac, what: progress(frac, desc=what), out.max_pixels)
                path = store.save(fused, ext, {
                    "source": Path(src_path).name, "target": Path(tgt_path).name, "format": ext,
                    "quality": out.quality, "engine": settings.inference.engine})
            except FaceFuseError as exc:
                raise _fail(exc) from None
            except Exception as exc:  # a bug: log it in full, show one line
                log.exception("fusion failed")
                raise gr.Error(f"Internal error ({type(exc).__name__}); see the server log.",
                               print_exception=False) from None
            seconds = time.perf_counter() - t0
            w, h = fused.size
            used = ", ".join(f"#{f.index}" for f in fused.result.faces)
            text = (f"**Done in {seconds:.2f} s** (fusion {fused.seconds:.2f} s) · **{w} × {h}** px · "
                    f"{len(fused.data) / 1e6:.2f} MB {ext.upper()} · fused face {used} "
                    f"({len(fused.result.faces)} of {fused.result.target_faces_found} found) · "
                    f"saved as `{Path(out.dir) / path.name}`")
            return (str(path), (before, after), gr.update(value=str(path), visible=True,
                                                          label=f"Download {path.name} ({w}×{h})"),
                    text, store.gallery())

        target_io = ([target, threshold, face], [faces, face, target_info, advanced])
        source.upload(on_source, [source, threshold], [source_info], api_name="source_faces")
        source.clear(lambda: "", None, [source_info], api_visibility="private")
        target.upload(on_target, *target_io, api_name="target_faces")
        target.clear(on_target, *target_io, api_visibility="private")
        threshold.release(on_target, *target_io, api_visibility="private")
        on_fuse.__signature__ = fuse_signature(controls)
        fuse_btn.click(on_fuse, [source, target, *controls.values(), face, fmt],
                       [result, compare, download, info, gallery], api_name="fuse")
        demo.load(store.gallery, None, [gallery], api_name="gallery")

    demo.queue(max_size=settings.server.queue_size, default_concurrency_limit=pool.workers)
    return demo
