"""REST API under /api/v1 (FastAPI), with the Gradio WebUI mounted at / in the same app.

    POST /api/v1/fuse     multipart: source, target (files) + the CLI's fusion fields + format
    POST /api/v1/detect   multipart: image (file) [+ threshold] -> faces as JSON
    GET  /api/v1/health
    /docs                 OpenAPI

Every image operation (decode, detect, fuse, encode) runs in `FusionPool`: a bounded pool
of worker threads, each holding its own `Fuser` (mediapipe graphs must not be used by two
threads at once), so the event loop only moves bytes. Requests beyond the pool's workers
wait in a queue of `server.queue_size`; beyond that they get 503 with Retry-After.

Errors are JSON `{"error": code, "message": one line}`: 400 bad parameter, 401 missing or
wrong API key, 413 body over `server.max_upload_mb` (counted while it streams in, before
FastAPI buffers it), 415 not an image, 422 unreadable / over the pixel limit / no face,
503 busy. A 500 means a bug, never bad input.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import math
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .config import FusionParams, Settings, default_workers
from .errors import ConfigError, EngineError, FaceFuseError, InputError, NoFaceError
from .io import DecodedImage, decode_image, encode_like

log = logging.getLogger("facefuse.api")

API_PREFIX = "/api/v1"
API_KEY_HEADER = "X-API-Key"
MB = 1024 * 1024  # server.max_upload_mb counts these, as Gradio's upload limit does
# format field -> (PIL format, media type, file extension)
FORMATS = {
    "jpg": ("JPEG", "image/jpeg", "jpg"),
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
    "webp": ("WEBP", "image/webp", "webp"),
}


# -- errors ---------------------------------------------------------------------------
class ApiError(Exception):
    """An HTTP error with the JSON body `{"error": code, "message": message}`."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JSONResponse:
        return _error_response(self.status, self.code, self.message, self.headers, **self.extra)


class BadUpload(InputError):
    """An uploaded file that cannot be used, with the HTTP status that says why."""

    def __init__(self, message: str, status: int, code: str):
        super().__init__(message)
        self.status, self.code = status, code


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__("busy")
        self.retry_after = retry_after


def _error_response(status: int, code: str, message: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def error_for(exc: FaceFuseError) -> ApiError:
    """The HTTP form of a facefuse error."""
    msg = str(exc)
    if isinstance(exc, BadUpload):
        return ApiError(exc.status, exc.code, msg)
    if isinstance(exc, NoFaceError):
        return ApiError(422, "no_face", msg, which=exc.which or None)
    if isinstance(exc, ConfigError):
        return ApiError(400, "bad_parameter", msg)
    if isinstance(exc, InputError):
        return ApiError(422, "bad_input", msg)
    if isinstance(exc, EngineError):
        return ApiError(500, "engine_error", msg)
    return ApiError(500, "internal_error", msg)


# -- the work: decode, fuse, encode (run in pool threads) -------------------------------
def decode_upload(data: bytes, which: str, max_pixels: int, reduce_to: int | None = None) -> DecodedImage:
    """Decode an uploaded image; a failure says which input and why, with an HTTP status.
    `reduce_to`: see `io.decode_image` (a JPEG target decoded at the scale the output needs)."""
    name = f"{which} image"
    if not data:
        raise BadUpload(f"{name}: file is empty", 400, "empty_file")
    try:
        return decode_image(data, max_pixels=max_pixels, name=name, reduce_to=reduce_to)
    except InputError as exc:
        status = 415 if exc.reason == "not_an_image" else 422
        raise BadUpload(str(exc), status, exc.reason or "bad_image") from exc


@dataclass
class Fused:
    """An encoded fusion result and what it took."""

    data: bytes
    fmt: str  # PIL format name
    result: Any  # FusionResult
    seconds: float  # decode + fusion + encode, in the worker
    timings: dict = field(default_factory=dict)
    target: Any = None  # the decoded target (RGB, input size), for before/after views

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.result.image.shape[:2]
        return w, h

    def headers(self) -> dict[str, str]:
        w, h = self.size
        used = ",".join(str(f.index) for f in self.result.faces)
        timing = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in self.timings.items() if k != "total")
        return {
            "X-Facefuse-Seconds": f"{self.seconds:.3f}",
            "X-Facefuse-Faces-Used": used,
            "X-Facefuse-Faces-Found": str(self.result.target_faces_found),
            "X-Facefuse-Output-Size": f"{w}x{h}",
            "Server-Timing": timing,
        }


def fuse_uploads(fuser, source: bytes, target: bytes, params: FusionParams, fmt: str = "JPEG",
                 quality: int = 95, progress: Optional[Callable[[float, str], None]] = None,
                 max_pixels: int | None = None) -> Fused:
    """Decode both uploads, fuse, encode in `fmt` (keeping alpha, ICC and EXIF where it can).

    `max_pixels` defaults to the Fuser's `output.max_pixels`."""

    def step(frac: float, what: str) -> None:
        if progress is not None:
            progress(frac, what)

    t0 = time.perf_counter()
    step(0.05, "reading images")
    max_pixels = max_pixels or fuser.settings.output.max_pixels
    tgt = decode_upload(target, "target", max_pixels, reduce_to=fuser.decode_size_for(params))  # as the CLI does
    src = decode_upload(source, "source", max_pixels)
    decode_s = time.perf_counter() - t0
    step(0.25, "finding faces and fusing")
    target_rgb = tgt.flattened()
    result = fuser.fuse_detailed(src.flattened(), target_rgb, params)
    step(0.85, "encoding")
    t1 = time.perf_counter()
    data = encode_like(result.image, tgt, fmt, quality)
    timings = dict(result.timings)
    timings["decode"] = timings.get("decode", 0.0) + decode_s
    timings["encode"] = time.perf_counter() - t1
    step(1.0, "done")
    return Fused(data=data, fmt=fmt, result=result, seconds=time.perf_counter() - t0, timings=timings,
                 target=target_rgb)


def detect_upload(fuser, image: bytes, threshold: Optional[float], max_pixels: int | None = None) -> dict:
    t0 = time.perf_counter()
    decoded = decode_upload(image, "uploaded", max_pixels or fuser.settings.output.max_pixels)
    rgb = decoded.flattened()
    det = fuser.detect(rgb, threshold)
    return {
        "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        "faces": [{"index": k, **f.to_dict()} for k, f in enumerate(det.faces)],
        "dropped": det.dropped, "passes": det.passes,
        "seconds": round(time.perf_counter() - t0, 4),
    }


# -- the pool ---------------------------------------------------------------------------
class FusionPool:
    """Worker threads, each with its own Fuser (created here, once), and a bounded queue.

    `submit(fn, *args)` runs `fn(fuser, *args)` on a free worker's Fuser. With
    `bounded=True` (REST) a submission beyond workers + queue_size raises QueueFull at
    once; the WebUI passes bounded=False because Gradio's own queue bounds it.
    """

    def __init__(self, settings: Settings, workers: int | None = None, queue_size: int | None = None):
        from .pipeline import Fuser

        self.settings = settings
        self.workers = workers or settings.server.workers or default_workers()
        self.queue_size = settings.server.queue_size if queue_size is None else queue_size
        self.capacity = self.workers + self.queue_size
        self._fusers: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.workers):
            self._fusers.put(Fuser(settings))
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="facefuse-worker")
        self._lock = threading.Lock()
        self.pending = 0  # submitted, not finished
        self.done = 0
        self._avg_s = 0.5  # running mean of job time, for Retry-After

    def submit(self, fn: Callable, *args: Any, bounded: bool = True) -> Future:
        with self._lock:
            if bounded and self.pending >= self.capacity:
                raise QueueFull(self.retry_after())
            self.pending += 1
        try:
            # like asyncio.to_thread: the job sees the caller's context variables (Gradio's
            # progress reporting finds its event through them)
            return self._executor.submit(contextvars.copy_context().run, self._run, fn, args)
        except BaseException:
            with self._lock:
                self.pending -= 1
            raise

    def _run(self, fn: Callable, args: tuple) -> Any:
        fuser = self._fusers.get()
        t0 = time.perf_counter()
        try:
            return fn(fuser, *args)
        finally:
            self._fusers.put(fuser)
            with self._lock:
                self.pending -= 1
                self.done += 1
                self._avg_s = 0.9 * self._avg_s + 0.1 * (time.perf_counter() - t0)

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained enough to take a request."""
        return max(1, math.ceil(self._avg_s * self.pending / self.workers))

    async def run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def call(self, fn: Callable, *args: Any) -> Any:
        """Blocking, unbounded: for callers (the WebUI) that queue on their own."""
        return self.submit(fn, *args, bounded=False).result()

    def status(self) -> dict:
        return {"workers": self.workers, "busy": min(self.pending, self.workers),
                "queued": max(0, self.pending - self.workers), "capacity": self.capacity, "done": self.done}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# -- the guard: API key and body size, before any byte of the body is buffered ----------
class _BodyTooLarge(Exception):
    pass


class ApiGuard:
    """ASGI middleware for REST paths: checks the API key, then refuses a body over the limit
    from its Content-Length, or, without one, as soon as the bytes received pass it."""

    def __init__(self, app, prefix: str, max_body: int, api_key: str | None):
        self.app, self.prefix, self.max_body, self.api_key = app, prefix, max_body, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and not key_matches(self.api_key, headers):
            return await _send_json(send, 401, "unauthorized",
                                    f"missing or wrong API key (send it in the {API_KEY_HEADER} header)",
                                    {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await _send_json(send, 400, "bad_request", "Content-Length is not a number")
            if int(length) > self.max_body:
                return await _send_json(send, 413, "too_large", self._too_large(int(length)))
        received = 0
        tripped = False
        started = False

        async def counting_receive():
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    tripped = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if tripped:
                return  # the app's own answer to its broken-off parse is replaced below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await _send_json(send, 413, "too_large", self._too_large(received))

    def _too_large(self, size: int) -> str:
        return (f"request body of {size / MB:.1f} MB is over the upload limit of "
                f"{self.max_body / MB:g} MB (server.max_upload_mb)")


async def _send_json(send, status: int, code: str, message: str, headers: dict | None = None) -> None:
    response = _error_response(status, code, message, headers)
    response.headers["Connection"] = "close"

    async def no_body():
        return {"type": "http.disconnect"}

    await response({"type": "http"}, no_body, send)


def key_matches(expected: str, headers: dict[str, str]) -> bool:
    given = headers.get(API_KEY_HEADER.lower())
    if given is None:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


# -- the app ------------------------------------------------------------------------------
def create_app(settings: Settings, pool: FusionPool | None = None, api_key: str | None = None,
               webui: bool = True) -> FastAPI:
    """The whole server: REST under /api/v1, OpenAPI at /docs, the WebUI at / (webui=True).

    The pool (and so every Fuser) is created here, once, unless one is passed in.
    """
    pool = pool or FusionPool(settings)
    max_body = int(settings.server.max_upload_mb * MB)
    from fastapi_offline import FastAPIOffline  # /docs served from the package, no CDN

    app = FastAPIOffline(
        title="facefuse", version=__version__,
        description="Local face fusion. Every image operation runs in a bounded worker pool; "
                    f"request bodies over {settings.server.max_upload_mb:g} MB are refused with 413.",
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json", static_url="/api-docs-static",
    )
    app.state.pool = pool
    app.state.settings = settings
    app.add_middleware(ApiGuard, prefix=API_PREFIX, max_body=max_body, api_key=api_key)
    _add_error_handlers(app)
    _add_routes(app, pool, settings)
    if webui:
        import gradio as gr

        from .webui import build_ui

        demo = build_ui(settings, pool)
        out_dir = os.path.abspath(settings.output.dir)
        app = gr.mount_gradio_app(
            app, demo, path="/", max_file_size=max_body, allowed_paths=[out_dir], show_error=True,
            footer_links=["api"], auth=_ui_auth(api_key), auth_message=(
                "This server needs its API key: any user name, the key as password." if api_key else None),
            theme=gr.themes.Soft(), css=_UI_CSS,
        )
    return app


_UI_CSS = "#result img, #faces img {object-fit: contain;} footer {display: none !important;}"


def _ui_auth(api_key: str | None):
    if not api_key:
        return None
    return lambda _user, password: hmac.compare_digest(str(password).encode(), api_key.encode())


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # a bug, never bad input: log it whole, answer one line
        log.exception("%s %s failed", request.method, request.url.path)
        return _error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
        name = ".".join(loc) or "request"
        code = "missing_field" if first.get("type") == "missing" else "bad_parameter"
        return _error_response(400, code, f"{name}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return _error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                               getattr(exc, "headers", None))


def _params_or_400(settings: Settings, overrides: dict) -> FusionParams:
    try:
        return settings.fusion_params(**overrides)
    except ConfigError as exc:
        raise ApiError(400, "bad_parameter", str(exc)) from exc


async def _in_pool(pool: FusionPool, fn: Callable, *args: Any) -> Any:
    try:
        return await pool.run(fn, *args)
    except QueueFull as exc:
        raise ApiError(503, "busy", f"the server is busy ({pool.capacity} requests in progress or waiting); "
                       f"retry in {exc.retry_after} s", {"Retry-After": str(exc.retry_after)}) from exc
    except FaceFuseError as exc:
        raise error_for(exc) from exc


def _add_routes(app: FastAPI, pool: FusionPool, settings: Settings) -> None:
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="needed when the server has an API key (any non-loopback bind)")

    def api_key_doc(_key: Optional[str] = Depends(key_header)) -> None:
        """Documents the key in OpenAPI; ApiGuard has already checked it."""

    deps = [Depends(api_key_doc)]
    image_responses = {
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
              "description": "the fused image; headers X-Facefuse-Seconds, X-Facefuse-Faces-Used, "
                             "X-Facefuse-Faces-Found, X-Facefuse-Output-Size, Server-Timing"},
        400: {"description": "bad parameter"}, 401: {"description": "API key missing or wrong"},
        413: {"description": "body over server.max_upload_mb"}, 415: {"description": "not an image"},
        422: {"description": "unreadable image, over the pixel limit, or no face (`which` says where)"},
        503: {"description": "queue full; see Retry-After"},
    }

    @app.post(f"{API_PREFIX}/fuse", tags=["fusion"], dependencies=deps, responses=image_responses,
              response_class=Response, summary="Fuse the source's face into the target")
    async def fuse(
        source: UploadFile = File(..., description="image with the face to use"),
        target: UploadFile = File(..., description="image whose face is replaced"),
        ratio: Optional[float] = Form(None, description="0-1: how far the face moves toward the source"),
        mode: Optional[str] = Form(None, description="normal | blend | overlay"),
        smoothing: Optional[float] = Form(None, description="skin smoothing 0-1"),
        brightness: Optional[float] = Form(None, description="-1..1"),
        contrast: Optional[float] = Form(None, description="-1..1"),
        saturation: Optional[float] = Form(None, description="-1..1"),
        resolution: Optional[str] = Form(None, description="'original' or the long side (512, 1024, 2048, 4096; 64-8192)"),
        face_index: Optional[int] = Form(None, description="which target face, 0 = largest"),
        all_faces: Optional[bool] = Form(None, description="fuse every face of the target"),
        source_face_index: Optional[int] = Form(None, description="which face of the source"),
        threshold: Optional[float] = Form(None, description="face detection confidence 0-1"),
        padding: Optional[float] = Form(None, description="ROI padding around the face box 0-1"),
        format: str = Form("jpg", description="jpg | png | webp"),
        quality: Optional[int] = Form(None, description="JPEG/WebP quality 1-100"),
    ):
        overrides = dict(ratio=ratio, mode=mode, smoothing=smoothing, brightness=brightness, contrast=contrast,
                         saturation=saturation, resolution=resolution, face_index=face_index, all_faces=all_faces,
                         source_face_index=source_face_index, threshold=threshold, padding=padding)
        params = _params_or_400(settings, overrides)
        fmt_key = format.strip().lower().lstrip(".")
        if fmt_key not in FORMATS:
            raise ApiError(400, "bad_parameter", f"format: must be jpg, png or webp, got {format!r}")
        pil_fmt, media_type, ext = FORMATS[fmt_key]
        q = settings.output.quality if quality is None else quality
        if not 1 <= q <= 100:
            raise ApiError(400, "bad_parameter", f"quality: must be 1-100, got {q}")
        src_bytes, tgt_bytes = await source.read(), await target.read()
        t0 = time.perf_counter()
        fused: Fused = await _in_pool(pool, fuse_uploads, src_bytes, tgt_bytes, params, pil_fmt, q, None,
                                      settings.output.max_pixels)
        headers = fused.headers()
        headers["X-Facefuse-Wait-Seconds"] = f"{max(0.0, time.perf_counter() - t0 - fused.seconds):.3f}"
        headers["Content-Disposition"] = f'inline; filename="fused.{ext}"'
        return Response(fused.data, media_type=media_type, headers=headers)

    @app.post(f"{API_PREFIX}/detect", tags=["fusion"], dependencies=deps,
              summary="The faces of an image, in fusion order (index 0 = largest)")
    async def detect(
        image: UploadFile = File(..., description="the image to search"),
        threshold: Optional[float] = Form(None, description="face detection confidence 0-1"),
    ) -> dict:
        if threshold is not None and not 0 <= threshold <= 1:
            raise ApiError(400, "bad_parameter", f"threshold: must be 0-1, got {threshold}")
        data = await image.read()
        return await _in_pool(pool, detect_upload, data, threshold, settings.output.max_pixels)

    @app.get(f"{API_PREFIX}/health", tags=["server"], dependencies=deps, summary="Is the server up, how busy")
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "engine": settings.inference.engine,
                "max_upload_mb": settings.server.max_upload_mb, **pool.status()}

    @app.api_route(API_PREFIX + "/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                   include_in_schema=False)
    async def not_found(request: Request, rest: str):
        if rest.strip("/") in ("fuse", "detect", "health"):
            raise ApiError(405, "method_not_allowed", f"{request.method} {API_PREFIX}/{rest}: method not allowed (see /docs)")
        raise ApiError(404, "not_found", f"{API_PREFIX}/{rest}: no such endpoint (see /docs)")
