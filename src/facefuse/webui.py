"""The Gradio WebUI: pick a source face and a target, set the controls, press Fuse.

`build_ui(settings, pool)` returns the Blocks app; `server.create_app` mounts it at / beside
the REST API, and both share one `service.FusionPool`, so the models are loaded once at start-up
and every image operation runs on a worker thread. Each result is saved under
`output.dir` with a timestamped name and a JSON sidecar of its parameters.

Element ids (for tests and scripts): source target fuse result ratio mode smoothing
brightness contrast saturation resolution threshold padding face (the target faces picked),
plus source_face, source_faces (numbered preview of a group source), format, faces (numbered
preview of the target's faces: click one to pick it), compare (before/after close-up of the
fused faces), download, info, gallery; the Video tab's video_source video_clip video_start
video_end video_faces video_face video_threshold video_fuse video_result video_info
video_download video_preview. Each tab has two columns: inputs and controls, and the result
column (RESULT_COLUMN) that stays in view.

Failures are one line in the page (`info` for a fusion, `source_info` / `target_info` for an
upload), never an error badge on every output nor a stack of toasts.
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
from PIL import Image

from .config import RESOLUTION_CHOICES, FusionParams, Settings
from .errors import ConfigError, FaceFuseError, NoFaceError, OutputExistsError
from .imaging import resize_frame, shrink_to_side
from .io import FORMAT_NAMES, FORMATS, encode_image, remove_stale_temps, write_bytes_atomic
from .jobs import video_limits
from .preview import box_at, draw_boxes, label_corner, zoom_box
from .retention import expire_results
from .service import FusionPool, fuse_upload

log = logging.getLogger("facefuse.webui")

PREVIEW_SIDE = 1280  # before/after and face previews are shrunk to this; the file is full size
THUMB_SIDE = 256
GALLERY_MAX = 60
FORMAT_CHOICES = [("JPEG", "jpg"), ("PNG", "png"), ("WebP", "webp")]
BUTTONS = ["download", "fullscreen"]  # no "share": it only works on Hugging Face Spaces
NO_RESULT = "No result yet: upload a source face and a target image, then press **Fuse**."
RESULT_COLUMN = "facefuse-result"  # server.UI_CSS keeps it in view (sticky) while the controls scroll
# after a fusion, the result is scrolled into view only where it is out of view (a narrow
# window stacks it below the controls). Gradio's scroll_to_output scrolls to it whether or not
# it is in view: at 1366x768, where the result column is sticky and in view, a busy machine saw
# the controls jump by 148 px
SHOW_RESULT = ("() => { const r = document.getElementById('result'); if (!r) return; const b = r.getBoundingClientRect(); "
               "if (b.top < 0 || b.bottom > window.innerHeight) r.scrollIntoView({block: 'nearest'}); }")


def _image_input(height: int = 240, **kwargs) -> gr.Image:
    """A gr.Image that hands over the uploaded file untouched: facefuse decodes it itself
    (EXIF, pixel limit, one clear message for anything unreadable) instead of Gradio's PIL
    step failing with its own message. (Patched on the instance: a gr.Image subclass would
    make Gradio write a .pyi file next to this module.)"""
    component = gr.Image(type="filepath", sources=["upload", "clipboard"], height=height, buttons=["fullscreen"],
                         **kwargs)
    component.preprocess = lambda payload: None if payload is None else payload.path
    return component


def _as_sent(component: gr.components.Component) -> gr.components.Component:
    """A face picker or format choice that hands over what a script sent (`face_index=[0]`,
    `"1"`, `format="PNG"`) instead of Gradio refusing anything outside the choices this
    session's page last showed: the fusion checks face numbers against the image's faces
    and the format by name, in the call, with one clear line."""
    component.preprocess = lambda payload: payload
    return component


class ResultStore:
    """Results in `out_dir`: full-size files with JSON sidecars (what this server made, and
    what earlier runs left there: the gallery survives a restart), thumbnails in a temp dir.
    Results older than `keep_seconds` (output.keep_days; 0 = never) are removed."""

    def __init__(self, out_dir: str | os.PathLike, keep_seconds: float = 0):
        self.dir = Path(out_dir).resolve()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"output.dir: cannot create {self.dir} ({exc.strerror or exc})") from exc
        self._thumbs = Path(tempfile.mkdtemp(prefix="facefuse-thumbs-"))
        # removed when the store goes away or the process exits (Gradio serves copies from its cache)
        weakref.finalize(self, shutil.rmtree, self._thumbs, ignore_errors=True)
        self._lock = threading.Lock()
        self.keep_seconds, self._next_expiry = keep_seconds, 0.0
        remove_stale_temps(self.dir)  # what a save killed with -9 left (each result has a new name)
        self._expire()
        self._items: list[tuple[Path, str]] = self._earlier_results()  # (image, caption), newest first

    def _earlier_results(self) -> list[tuple[Path, str]]:
        items = []
        for sidecar in sorted(self.dir.glob("*.json"), reverse=True):  # names are timestamps
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
                image = self.dir / Path(str(meta["image"])).name
                w, h = meta["output_size"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours
            if image.is_file() and image.suffix.lstrip(".") in FORMATS:  # photos (videos have no thumbnail)
                items.append((image, f"{image.name} · {w}x{h}"))
            if len(items) >= GALLERY_MAX:
                break
        return items

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
        self._thumb(path).write_bytes(encode_image(shrink_to_side(fused.result.image, THUMB_SIDE), "JPEG", quality=85))
        w, h = fused.size
        with self._lock:
            self._items.insert(0, (path, f"{path.name} · {w}x{h}"))
            dropped = self._items[GALLERY_MAX:]
            del self._items[GALLERY_MAX:]
        for image, _caption in dropped:  # thumbnails stay as many as the gallery shows
            self._thumb(image).unlink(missing_ok=True)
        self._expire()
        return path

    def _expire(self) -> None:
        """Remove results older than keep_seconds: at start, then at most once a minute."""
        now = time.monotonic()
        if self.keep_seconds and now >= self._next_expiry:
            self._next_expiry = now + 60
            for path in expire_results(self.dir, self.keep_seconds):
                self._thumb(path).unlink(missing_ok=True)

    def claim(self, ext: str, meta: dict) -> Path:
        """A new timestamped result name, taken by writing its sidecar (`meta`) first; the
        caller writes the result itself (a video writer renames its temp file into place)
        and then `finish`es the sidecar, or `release`s the name on failure."""
        now = datetime.now()
        stem = now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"
        for attempt in range(100):
            path = self.dir / f"{stem if attempt == 0 else f'{stem}-{attempt}'}.{ext}"
            if path.exists():
                continue
            try:
                write_bytes_atomic(path.with_suffix(".json"), json.dumps(
                    {"created": now.isoformat(timespec="milliseconds"), "image": path.name, **meta}, indent=2).encode())
                return path
            except OutputExistsError:
                continue
        raise OutputExistsError(self.dir, "could not find a free file name")  # pragma: no cover

    def finish(self, path: Path, meta: dict) -> None:
        sidecar = path.with_suffix(".json")
        old = json.loads(sidecar.read_text(encoding="utf-8"))
        write_bytes_atomic(sidecar, json.dumps({**old, **meta}, indent=2, default=str).encode(), overwrite=True)

    def release(self, path: Path) -> None:
        path.with_suffix(".json").unlink(missing_ok=True)

    def _thumb(self, image: Path) -> Path:
        return self._thumbs / f"{image.stem}-{image.suffix.lstrip('.')}.jpg"

    def gallery(self) -> list[tuple[str, str]]:
        """(thumbnail, caption), newest first; thumbnails of earlier results made on first use."""
        with self._lock:
            items = list(self._items)
        shown = []
        for image, caption in items:
            thumb = self._thumb(image)
            if not thumb.exists():
                try:
                    with Image.open(image) as im:
                        im.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
                        im = im.convert("RGB")
                        im.thumbnail((THUMB_SIDE, THUMB_SIDE))
                        im.save(thumb, "JPEG", quality=85)
                except (OSError, ValueError):
                    continue  # removed or damaged since
            shown.append((str(thumb), caption))
        return shown


# -- messages -------------------------------------------------------------------------
class PageError(Exception):
    """A problem to show as one line in the page."""


def page_message(exc: FaceFuseError) -> str:
    """One line for the page, saying which image and what to try."""
    if isinstance(exc, NoFaceError):
        which = exc.which or "uploaded"
        if exc.requested is None and exc.custom_detail is None:
            return (f"No face found in the {which} image. Try another photo, "
                    f"or lower the detection threshold under Advanced.")
        named = exc.name if exc.name not in (which, "image") else f"{which} image"  # "the video", "the target image"
        return f"The {named}: {exc.detail}."
    text = str(exc)
    if "_" in text.split(":", 1)[0]:  # starts with a parameter's name: keep it as written
        return text
    return text[:1].upper() + text[1:]


def _read_upload(path: str | None, which: str) -> bytes:
    if not path:
        raise PageError(f"Upload a {which} image first.")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PageError(f"The {which} upload could not be read ({exc.strerror or exc}); upload it again.") from exc


def _face_choices(n: int) -> list[tuple[str, str]]:
    return [(f"#{i}" + (" (largest)" if i == 0 and n > 1 else ""), str(i)) for i in range(max(n, 1))]


def _face_choice(value: Any) -> dict:
    """The target-face control's value (face numbers ticked; or "all", "0", "0,2") as
    FusionParams fields."""
    if isinstance(value, (list, tuple)):
        picked = [str(v) for v in value]
        if not picked:
            raise PageError("Pick at least one target face (click it on the numbered preview).")
        return {"all_faces": False, "face_index": ",".join(picked)}
    text = str(value if value is not None else "0").strip().lower()
    if text.startswith("all"):
        return {"all_faces": True, "face_index": 0}
    return {"all_faces": False, "face_index": text.split(" ")[0]}


# -- jobs that run on a pool worker ----------------------------------------------------------
def _faces_job(fuser, data: bytes, which: str, threshold: float, max_pixels: int):
    """(faces found, preview base image, face boxes in its pixels, width, height)."""
    rgb = fuser.read(data, name=f"{which} image", max_pixels=max_pixels)
    faces = fuser.detect(rgb, threshold).faces
    base = shrink_to_side(rgb, PREVIEW_SIDE)
    s = base.shape[1] / rgb.shape[1]
    boxes = [[float(v) * s for v in f.box] for f in faces]
    return len(faces), base, boxes, rgb.shape[1], rgb.shape[0]


def _fuse_job(fuser, src: bytes, tgt: bytes, params, fmt: str, quality: int, progress, max_pixels: int):
    fused = fuse_upload(fuser, src, tgt, params, fmt, quality, progress, max_pixels)
    w, h = fused.size
    x0, y0, x1, y1 = zoom_box([[f.roi.x0, f.roi.y0, f.roi.x1, f.roi.y1] for f in fused.result.faces], w, h)
    # the target's same region, resized alone (not the whole frame to the output's size)
    sy, sx = fused.target.shape[0] / h, fused.target.shape[1] / w
    region = fused.target[int(y0 * sy):max(int(y0 * sy) + 1, round(y1 * sy)),
                          int(x0 * sx):max(int(x0 * sx) + 1, round(x1 * sx))]
    before = resize_frame(region, (x1 - x0, y1 - y0))
    after = fused.result.image[y0:y1, x0:x1]
    close = (x1 - x0, y1 - y0) != (w, h)
    labels = ("before (close-up)", "after (close-up)") if close else ("before", "after")
    return (fused, label_corner(shrink_to_side(before, PREVIEW_SIDE), labels[0]),
            label_corner(shrink_to_side(after, PREVIEW_SIDE), labels[1]))


def on_pick(picked, boxes, base, evt: gr.SelectData):
    """A click on a numbered face preview toggles the face under it."""
    hit = box_at(boxes, *evt.index) if boxes and evt.index is not None else None
    if hit is None or base is None:
        return gr.update(), gr.update()
    chosen = {int(v) for v in (picked or [])} ^ {hit}
    chosen = chosen or {hit}  # the last picked face stays picked
    return [str(i) for i in sorted(chosen)], draw_boxes(base, boxes, chosen)


def on_ticks(picked, boxes, base):
    """The preview redrawn after a face number was ticked or unticked."""
    if base is None:
        return gr.update()
    return draw_boxes(base, boxes, [int(v) for v in (picked or [])])


def clears_warning(empty: str):
    """The handler of a new upload for a result line: a warning about the inputs before is
    stale, `empty` ("No result yet ...") replaces it; a result stays."""

    def without_warning(text: str):
        return empty if str(text or "").startswith("⚠") else gr.update()

    return without_warning


def _format_of(value: Any) -> str:
    """A file format as the page or a script names it ("jpg", "PNG", "WebP", "jpeg")."""
    ext = str(value if value is not None else "jpg").strip().lower()
    if ext not in FORMATS:
        raise PageError(f"format: must be {', '.join(FORMAT_NAMES)}, got {value!r}")
    return FORMATS[ext].ext


# -- the controls: one per FusionParams field ------------------------------------------------
PICKED_ELSEWHERE = ("face_index", "all_faces", "source_face_index")  # the face pickers set these
ADVANCED = ("threshold", "padding")  # under Advanced; every other field is a main control
WITH_ENHANCER = ("enhancer_blend", "enhancer_weight")  # under Advanced, when the server has an enhancer
SLIDER_STEP = 0.05
SLIDER_FLOOR = {"threshold": 0.05}  # a 0 threshold takes every blob for a face


def _bounds(info) -> tuple[float | None, float | None]:
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    return lo, hi


def control(name: str, value: Any, prefix: str = "") -> gr.components.Component:
    """The widget of FusionParams field `name`, with its title, help text and range: a
    choice of words is a radio, a bounded number a slider, a flag a checkbox, the output
    resolution a dropdown of the usual sizes. Its element id is `prefix` + `name`."""
    info = FusionParams.model_fields[name]
    common = dict(label=info.title, info=info.description, elem_id=prefix + name)
    if name == "resolution":
        choices = list(RESOLUTION_CHOICES) + ([str(value)] if str(value) not in RESOLUTION_CHOICES else [])
        return gr.Dropdown(choices, value=str(value), label=info.title, elem_id=prefix + name)
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
    names = ["source", "target", *controls, "face_index", "format", "source_face_index"]
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    return inspect.Signature(params)


def _named(fn, *names: str):
    """`fn` as Gradio's API shows it: parameters `names` (its own may be shorter internal ones)."""
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                          for n in names])
    return fn


# -- the page -------------------------------------------------------------------------------
def build_ui(settings: Settings, pool: FusionPool, store: ResultStore | None = None, live=None) -> gr.Blocks:
    """`live`: the server's live_api.LiveHub; with one, a Live tab (its script: webui_live.page_head)."""
    store = store or ResultStore(settings.output.dir, settings.output.keep_days * 86400)
    out = settings.output
    defaults = settings.fusion_params()  # config.yaml's values
    max_mb = settings.server.max_upload_mb

    cache_s = int(settings.server.ui_cache_minutes * 60)  # uploads hold faces: kept no longer than this
    with gr.Blocks(title="facefuse", analytics_enabled=False, delete_cache=(max(60, cache_s // 4), cache_s)) as demo:
        gr.Markdown(
            "## facefuse\nPut the face of the **source** photo into the **target** photo or video. "
            f"Everything runs on this machine. Photos up to {max_mb:g} MB and "
            f"{out.max_pixels / 1e6:.0f} MP; results are saved in `{out.dir}`."
        )
        with gr.Tabs():
            with gr.Tab("Photo", id="photo"):
                target_boxes = gr.State([])  # face boxes in the preview's pixels
                target_base = gr.State(None)  # the preview without boxes
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, elem_id="inputs_column"):  # inputs and controls
                        with gr.Row(equal_height=False):
                            with gr.Column(min_width=220):
                                source = _image_input(label="Source face", elem_id="source")
                                source_info = gr.Markdown(elem_id="source_info")
                                source_faces = gr.Image(label="Faces in the source, numbered", show_label=False,
                                                        interactive=False, format="jpeg", elem_id="source_faces",
                                                        visible=False, height=220, buttons=["fullscreen"])
                                source_face = _as_sent(gr.Dropdown(
                                    _face_choices(1), value="0", label="Source face", elem_id="source_face",
                                    info="which face of the source photo is brought in", visible=False))
                            with gr.Column(min_width=220):
                                target = _image_input(label="Target image", elem_id="target")
                                target_info = gr.Markdown(elem_id="target_info")
                                faces = gr.Image(label="Faces in the target: click one to pick or unpick it",
                                                 show_label=False, interactive=False, format="jpeg", elem_id="faces",
                                                 visible=False, height=300, buttons=["fullscreen"])
                                face = _as_sent(gr.CheckboxGroup(
                                    _face_choices(1), value=["0"], label="Target faces to fuse", elem_id="face",
                                    info="click a face on the preview, or tick its number", visible=False))
                        controls: dict[str, gr.components.Component] = {}
                        advanced = ADVANCED + (WITH_ENHANCER if settings.inference.enhancer else ())
                        main = [n for n in FusionParams.model_fields
                                if n not in (*ADVANCED, *WITH_ENHANCER, *PICKED_ELSEWHERE)]
                        for row in range(0, len(main), 2):
                            with gr.Row():
                                for name in main[row:row + 2]:
                                    controls[name] = control(name, getattr(defaults, name))
                                if row + 2 >= len(main):
                                    fmt = _as_sent(gr.Radio(FORMAT_CHOICES, value="jpg", label="File format",
                                                            elem_id="format"))
                        with gr.Accordion("Advanced", open=False):
                            with gr.Row():
                                for name in advanced:
                                    controls[name] = control(name, getattr(defaults, name))
                        threshold = controls["threshold"]
                    with gr.Column(scale=1, elem_id="result_column", elem_classes=RESULT_COLUMN):
                        fuse_btn = gr.Button("Fuse", variant="primary", elem_id="fuse")
                        result = gr.Image(label="Result (full resolution)", interactive=False, type="filepath",
                                          elem_id="result", height=360, buttons=BUTTONS)
                        info = gr.Markdown(NO_RESULT, elem_id="info")
                        download = gr.DownloadButton("Download full resolution", elem_id="download", visible=False)
                        compare = gr.ImageSlider(label="Before / after: drag the line", type="numpy", format="jpeg",
                                                 elem_id="compare", interactive=False, max_height=360,
                                                 buttons=["fullscreen"])
                gallery = gr.Gallery(label=f"Results in {out.dir} (newest first)", columns=8,
                                     height="auto", object_fit="scale-down", fit_columns=False, elem_id="gallery",
                                     allow_preview=True, buttons=["download"])

                # -- handlers ---------------------------------------------------------------------
                def faces_of(path, which, thr):
                    """(count, base, boxes, info line) of an uploaded image; a problem is the info line."""
                    try:
                        n, base, boxes, w, h = pool.call(_faces_job, _read_upload(path, which), which, thr, out.max_pixels)
                    except (FaceFuseError, PageError) as exc:
                        return 0, None, [], f"⚠ {_message(exc)}"
                    if n == 0:
                        return 0, None, [], f"⚠ {page_message(NoFaceError(which))}"
                    return n, base, boxes, f"{w}x{h} · {n} face(s)"

                def on_source(path, thr):
                    hidden = (gr.update(value=None, visible=False), gr.update(choices=_face_choices(1), value="0", visible=False))
                    if not path:
                        return ("", *hidden)
                    n, base, boxes, text = faces_of(path, "source", thr)
                    if n < 2:
                        return ((text + "; this face is used") if n else text, *hidden)
                    return (text + " — choose which under *Source face*",
                            gr.update(value=draw_boxes(base, boxes), visible=True),
                            gr.update(choices=_face_choices(n), value="0", visible=True))

                def on_target(path, thr, current):
                    """The numbered preview and the face ticks, shown only for a target with faces."""
                    hidden = gr.update(choices=_face_choices(1), value=["0"], visible=False)
                    if not path:
                        return gr.update(value=None, visible=False), hidden, "", [], None
                    n, base, boxes, text = faces_of(path, "target", thr)
                    choices = _face_choices(n)
                    keep = [str(v) for v in (current or []) if str(v) in {c[1] for c in choices}] or ["0"]
                    if n == 0:
                        return gr.update(value=None, visible=False), hidden, text, [], None
                    if n > 1:
                        text += " — click the faces to fuse on the preview (green = picked)"
                    return (gr.update(value=draw_boxes(base, boxes, [int(v) for v in keep]), visible=True),
                            gr.update(choices=choices, value=keep, visible=True), text, boxes, base)

                def on_fuse(*args):
                    """(source, target, *controls, face_index, format[, source_face_index][, progress]):
                    see fuse_signature. Returns result, compare, download, info, gallery."""
                    n = len(controls) + 4
                    src_path, tgt_path, *values, face_v, fmt_v = args[:n]
                    rest = list(args[n:])
                    progress = rest.pop() if rest and isinstance(rest[-1], gr.Progress) else gr.Progress()
                    source_face_v = rest[0] if rest else "0"
                    ext = "jpg"
                    t0 = time.perf_counter()
                    try:
                        ext = _format_of(fmt_v)
                        src, tgt = _read_upload(src_path, "source"), _read_upload(tgt_path, "target")
                        overrides: dict[str, Any] = dict(zip(controls, values, strict=True), **_face_choice(face_v),
                                                         source_face_index=source_face_v or 0)
                        params = settings.fusion_params(**overrides)
                        progress(0.0, desc="waiting for a worker")
                        fused, before, after = pool.call(_fuse_job, src, tgt, params, FORMATS[ext].pil, out.quality,
                                                         lambda frac, what: progress(frac, desc=what), out.max_pixels)
                        path = store.save(fused, ext, {
                            "source": Path(src_path).name, "target": Path(tgt_path).name, "format": ext,
                            "quality": out.quality, "engine": settings.inference.engine})
                    except (FaceFuseError, PageError) as exc:
                        log.info("fuse refused: %s", _message(exc))  # a bad call is one line in the log
                        return _failed(_message(exc))
                    except Exception as exc:  # a bug: log it in full, show one line
                        log.exception("fusion failed")
                        return _failed(f"Internal error ({type(exc).__name__}); see the server log.")
                    seconds = time.perf_counter() - t0
                    w, h = fused.size
                    used = ", ".join(f"#{f.index}" for f in fused.result.faces)
                    text = (f"**Done in {seconds:.2f} s** (fusion {fused.seconds:.2f} s) · **{w} × {h}** px · "
                            f"{len(fused.data) / 1e6:.2f} MB {ext.upper()} · fused face {used} "
                            f"({len(fused.result.faces)} of {fused.result.target_faces_found} found) · "
                            f"saved as `{Path(out.dir) / path.name}`")
                    text += "".join(f"\n\nNote: {note}." for note in fused.result.notes)
                    return (str(path), (before, after), gr.update(value=str(path), visible=True,
                                                                  label=f"Download {path.name} ({w}×{h})"),
                            text, store.gallery())

                def _failed(message: str):
                    """One message, and a result area that says it is empty (nothing else marked as failed)."""
                    end = "" if message.endswith(".") else "."
                    return None, None, gr.update(value=None, visible=False), f"⚠ {message}{end} No result.", gr.update()

                source_io = ([source, threshold], [source_info, source_faces, source_face])
                target_io = ([target, threshold, face], [faces, face, target_info, target_boxes, target_base])
                source.upload(_named(on_source, "source", "threshold"), *source_io, api_name="source_faces")
                source.clear(on_source, *source_io, api_visibility="private")
                target.upload(_named(on_target, "target", "threshold", "face_index"), *target_io, api_name="target_faces")
                target.clear(on_target, *target_io, api_visibility="private")
                threshold.release(on_target, *target_io, api_visibility="private")
                faces.select(on_pick, [face, target_boxes, target_base], [face, faces], api_visibility="private")
                face.input(on_ticks, [face, target_boxes, target_base], [faces], api_visibility="private")
                for image in (source, target):  # a warning about the images before is stale now
                    image.upload(clears_warning(NO_RESULT), [info], [info], api_visibility="private")
                on_fuse.__signature__ = fuse_signature(controls)
                fuse_btn.click(on_fuse, [source, target, *controls.values(), face, fmt, source_face],
                               [result, compare, download, info, gallery], api_name="fuse").then(
                    None, None, None, js=SHOW_RESULT, api_visibility="private")
                demo.load(store.gallery, None, [gallery], api_name="gallery")
            with gr.Tab("Video", id="video"):
                build_video_tab(settings, pool, store, defaults)
            if live is not None:
                from .webui_live import build_live_tab

                with gr.Tab("Live", id="live"):
                    build_live_tab(settings, pool, live, control, _image_input, _message, RESULT_COLUMN)

    demo.queue(max_size=settings.server.queue_size, default_concurrency_limit=pool.workers)
    return demo


def _message(exc: Exception) -> str:
    return page_message(exc) if isinstance(exc, FaceFuseError) else str(exc)


# -- the Video tab ---------------------------------------------------------------------------
VIDEO_CONTROLS = ("ratio", "mode", "smoothing", "resolution")  # the target faces are picked on the preview
NO_VIDEO_RESULT = "No video result yet: upload a source face and a clip, then press **Fuse video**."


def _clip_job(fuser, path: str, limits):
    from .video.io import probe

    return probe(path, limits, name="video")


def _clip_faces_job(fuser, path: str, at: float, threshold: float, limits):
    """(faces found, preview base image, face boxes in its pixels) of the clip's frame at
    `at` seconds: the faces numbered as the fusion numbers them from there."""
    from .video.io import VideoReader

    frames = iter(VideoReader(path, start=at or None, limits=limits, name="video"))
    try:
        rgb = next(frames).rgb
    finally:
        frames.close()
    faces = fuser.detect(rgb, threshold).faces
    base = shrink_to_side(rgb, PREVIEW_SIDE)
    s = base.shape[1] / rgb.shape[1]
    return len(faces), base, [[float(v) * s for v in f.box] for f in faces]


def _preview_job(fuser, source: str, clip: str, at: float, params, limits):
    from .video.fuse import preview_frame

    return preview_frame(fuser, source, clip, at, fusion_params=params, limits=limits)


def _video_job(fuser, source: str, clip: str, out: Path, params, limits, start, end, progress):
    return fuser.fuse_video(source, clip, out, progress=progress, fusion_params=params, limits=limits,
                            start=start, end=end)


def clip_range(start: Any, end: Any, duration: float | None = None) -> tuple[float | None, float | None]:
    """The Video tab's Start and End (blank or 0: the clip's beginning, its end) as
    fuse_video's `start` and `end`, checked in the fields' names before any work."""
    start = None if start in (None, "") else float(start)
    end = None if end in (None, "", 0) else float(end)
    for name, value in (("Start", start), ("End", end)):
        if value is not None and value < 0:
            raise PageError(f"{name}: seconds from the clip's beginning, 0 or more; got {value:g}.")
    if end is not None and end <= (start or 0.0):
        raise PageError(f"End ({end:g} s) must be after Start ({start or 0:g} s).")
    if start and duration and start >= duration:
        raise PageError(f"Start ({start:g} s) is past the end of the clip, which is {duration:.1f} s long.")
    return start or None, end


def _clip_message(exc: Exception, *paths: str | None) -> str:
    """A message about an upload without its path in Gradio's temp folder."""
    text = _message(exc)
    for path in filter(None, paths):
        text = text.replace(f" {path}", "").replace(str(path), Path(path).name)
    return text


def build_video_tab(settings: Settings, pool: FusionPool, store: ResultStore, defaults) -> None:
    """The Photo tab's layout for a clip: source and clip, Start and End, the numbered faces
    of the frame at Start (click to pick), the controls and Advanced on the left; Fuse
    video, the clip (play, download) and one fused frame on the right, in view. Saved in
    output.dir with a JSON sidecar."""
    limits = video_limits(settings)
    boxes = gr.State([])  # face boxes in the preview's pixels
    base = gr.State(None)  # the preview without boxes
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, elem_id="video_inputs_column"):
            with gr.Row(equal_height=False):
                with gr.Column(min_width=220):
                    source = _image_input(label="Source face", elem_id="video_source")
                    source_info = gr.Markdown(elem_id="video_source_info")
                with gr.Column(min_width=220):
                    # a file field, not gr.Video: the browser does not try to play the upload
                    # (a red "Video not playable" toast for a bad file or an unusual codec)
                    clip = gr.File(label="Target clip", elem_id="video_clip", height=120)
                    clip_info = gr.Markdown(elem_id="video_clip_info")
            with gr.Row():
                start = gr.Number(None, label="Start (seconds)", info="0 or blank: the clip's beginning",
                                  elem_id="video_start")
                end = gr.Number(None, label="End (seconds)", info="0 or blank: the clip's end",
                                elem_id="video_end")
            faces = gr.Image(label="Faces at Start: click one to pick or unpick it", show_label=False,
                             interactive=False, format="jpeg", elem_id="video_faces", visible=False, height=300,
                             buttons=["fullscreen"])
            faces_info = gr.Markdown(elem_id="video_faces_info")
            face = _as_sent(gr.CheckboxGroup(_face_choices(1), value=["0"], label="Target faces to fuse",
                                             elem_id="video_face", visible=False,
                                             info="numbered in the frame at Start; click a face on the preview, "
                                                  "or tick its number"))
            controls: dict[str, gr.components.Component] = {}
            for row in range(0, len(VIDEO_CONTROLS), 2):
                with gr.Row():
                    for name in VIDEO_CONTROLS[row:row + 2]:
                        controls[name] = control(name, getattr(defaults, name), prefix="video_")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    for name in ADVANCED:
                        controls[name] = control(name, getattr(defaults, name), prefix="video_")
            threshold = controls["threshold"]
            with gr.Row(equal_height=True):
                at = gr.Slider(0, 1, value=0, step=0.1, label="Preview at (seconds)", elem_id="video_preview_at")
                preview_btn = gr.Button("Preview this frame", elem_id="video_preview_button")
        with gr.Column(scale=1, elem_id="video_result_column", elem_classes=RESULT_COLUMN):
            fuse_btn = gr.Button("Fuse video", variant="primary", elem_id="video_fuse")
            result = gr.Video(label="Fused clip", interactive=False, elem_id="video_result", height=320)
            info = gr.Markdown(NO_VIDEO_RESULT, elem_id="video_info")
            download = gr.DownloadButton("Download the clip", elem_id="video_download", visible=False)
            preview = gr.Image(label="Fused frame", interactive=False, elem_id="video_preview", height=300,
                               buttons=["fullscreen"])

    def params_of(face_v, values) -> Any:
        return settings.fusion_params(**dict(zip(controls, values, strict=True)), **_face_choice(face_v))

    def on_source(path, thr):
        if not path:
            return ""
        try:
            n, *_, w, h = pool.call(_faces_job, _read_upload(path, "source"), "source", thr,
                                    settings.output.max_pixels)
        except (FaceFuseError, PageError) as exc:
            return f"⚠ {_message(exc)}"
        if n == 0:
            return f"⚠ {page_message(NoFaceError('source'))}"
        return f"{w}x{h} · {n} face(s)" + ("; the largest, #0, is brought in" if n > 1 else "; this face is used")

    def frame_faces(path, begin, thr, current):
        """The numbered faces of the frame at Start: (preview, ticks, boxes, base, line)."""
        hidden = (gr.update(value=None, visible=False), gr.update(choices=_face_choices(1), value=["0"],
                                                                  visible=False), [], None)
        if not path:
            return (*hidden, "")
        try:
            at_s = clip_range(begin, None)[0] or 0.0
            n, image, found = pool.call(_clip_faces_job, path, at_s, thr, limits)
        except (FaceFuseError, PageError) as exc:
            return (*hidden, f"⚠ {_clip_message(exc, path)}")
        if n == 0:
            return (*hidden, f"⚠ No face in the frame at {at_s:g} s: try another Start, or lower the detection "
                             "threshold under Advanced.")
        keep = [str(v) for v in (current or []) if str(v).isdigit() and int(v) < n] or ["0"]
        text = f"{n} face(s) in the frame at {at_s:g} s" + (
            " — click the faces to fuse on the preview (green = picked)" if n > 1 else "")
        return (gr.update(value=draw_boxes(image, found, [int(v) for v in keep]), visible=True),
                gr.update(choices=_face_choices(n), value=keep, visible=True), found, image, text)

    def on_clip(path, begin, thr, current):
        """The clip's facts, the scrubber's range and the faces at Start; a bad clip is one line."""
        if not path:
            return ("", gr.update(maximum=1, value=0), *frame_faces(None, begin, thr, current))
        try:
            meta = pool.call(_clip_job, path, limits)
        except FaceFuseError as exc:
            return (f"⚠ {_clip_message(exc, path)}", gr.update(maximum=1, value=0),
                    *frame_faces(None, begin, thr, current))
        audio = f", audio {meta.audio_codec}" if meta.audio_codec else ", no audio"
        return (f"{meta.width}x{meta.height} · {float(meta.fps):.3g} fps · {meta.duration:.1f} s{audio}",
                gr.update(maximum=max(0.1, round(meta.duration - 0.05, 1)), value=0),
                *frame_faces(path, begin, thr, current))

    def on_preview(src_path, clip_path, seconds, face_v, *values):
        try:
            if not src_path or not clip_path:
                raise PageError("Upload a source face and a clip first.")
            image = pool.call(_preview_job, src_path, clip_path, float(seconds), params_of(face_v, values), limits)
        except (FaceFuseError, PageError) as exc:
            return None, f"⚠ {_clip_message(exc, src_path, clip_path)}"
        return image, f"Frame at {float(seconds):.1f} s, fused (one frame: no smoothing over time)."

    # Gradio finds its progress tracker by this default, so the call stays in the signature
    def on_fuse(src_path, clip_path, begin, stop, face_v, *values, progress=gr.Progress()):  # noqa: B008
        path = None
        try:
            if not src_path or not clip_path:
                raise PageError("Upload a source face and a clip first.")
            params = params_of(face_v, values)
            first, last = clip_range(begin, stop, pool.call(_clip_job, clip_path, limits).duration)
            ext = "webm" if str(clip_path).lower().endswith(".webm") else "mp4"
            path = store.claim(ext, {"source": Path(src_path).name, "video": Path(clip_path).name,
                                     "engine": settings.inference.engine, "start": first, "end": last})
            progress(0.0, desc="waiting for a worker")
            report = pool.call(_video_job, src_path, clip_path, path, params, limits, first, last,
                               lambda done, total: progress(done / max(total, 1), desc=f"frame {done} of {total}"))
            store.finish(path, {"report": report})
        except Exception as exc:  # facefuse's own errors as one line; a bug logged in full, also one line
            if path is not None:
                store.release(path)
            if not isinstance(exc, (FaceFuseError, PageError)):
                log.exception("video fusion failed")
                exc = PageError(f"Internal error ({type(exc).__name__}); see the server log.")
            return None, f"⚠ {_clip_message(exc, src_path, clip_path)} No result.", gr.update(visible=False)
        frames = report.get("frames", "?")
        seconds = report.get("seconds", 0.0)
        text = (f"**Done:** {frames} frames in {seconds:.1f} s · saved as `{Path(settings.output.dir) / path.name}`"
                + (f"\n\n⚠ **Warning:** {report['lost']}: only the frames decoded were fused." if report.get("lost")
                   else ""))
        return str(path), text, gr.update(value=str(path), visible=True, label=f"Download {path.name}")

    source.upload(on_source, [source, threshold], [source_info], api_visibility="private")
    source.clear(on_source, [source, threshold], [source_info], api_visibility="private")
    frame_io = ([clip, start, threshold, face], [faces, face, boxes, base, faces_info])
    clip.upload(on_clip, frame_io[0], [clip_info, at, *frame_io[1]], api_visibility="private")
    clip.clear(on_clip, frame_io[0], [clip_info, at, *frame_io[1]], api_visibility="private")  # no stale facts
    for changed in (start.submit, start.blur, threshold.release):
        changed(frame_faces, *frame_io, api_visibility="private")
    faces.select(on_pick, [face, boxes, base], [face, faces], api_visibility="private")
    face.input(on_ticks, [face, boxes, base], [faces], api_visibility="private")
    for upload in (source, clip):
        upload.upload(clears_warning(NO_VIDEO_RESULT), [info], [info], api_visibility="private")
    preview_btn.click(on_preview, [source, clip, at, face, *controls.values()], [preview, info],
                      api_visibility="private")
    fuse_btn.click(on_fuse, [source, clip, start, end, face, *controls.values()], [result, info, download],
                   api_visibility="private")
