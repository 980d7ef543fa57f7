"""REST API under /api/v1 (FastAPI); `server.create_app` mounts the WebUI beside it.

    POST /api/v1/fuse     multipart: source, target (files) + the CLI's fusion fields + format;
                          face_N files map target face N to its own source (the CLI's --map)
    POST /api/v1/detect   multipart: image (file) [+ threshold] -> faces as JSON
    GET  /api/v1/health
    WS   /api/v1/live     camera frames in, fused frames out (live_api.py)
    /docs                 OpenAPI

Every image operation (decode, detect, fuse, encode) runs in the shared `service.FusionPool`,
so the event loop only moves bytes; beyond the pool's queue a request gets 503 with
Retry-After. The form fields of /fuse are FusionParams' fields (name, type, help).

Errors are JSON `{"error": code, "message": one line}` (ErrorBody, listed per route in the
OpenAPI document): 400 bad parameter, 401 missing or wrong API key (the docs need it too),
404 no such endpoint or job, 405 wrong method (with Allow), 409 job not done, 413 body over
`server.max_upload_mb` (counted while it streams in, before FastAPI buffers it), 415 not an
image, 422 unreadable / over the pixel limit / no face, 503 busy, 507 the server's disk is
full. A 500 means a bug, never bad input.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .config import FusionParams, Settings, readable_error
from .errors import ConfigError, EngineError, FaceFuseError, InputError, NoFaceError
from .io import FORMAT_NAMES, NO_SPACE, image_format
from .jobs import JobsBusy, JobStore, UnknownJob, video_limits, video_work
from .live_api import LiveHub, add_live_route
from .service import FusionPool, QueueFull, detect_upload, fuse_upload

log = logging.getLogger("facefuse.api")

API_PREFIX = "/api/v1"
FACE_FIELD = re.compile(r"face_(0|[1-9][0-9]{0,2})")  # /fuse's face mapping: face_0 .. face_999
HEALTH_PATH = f"{API_PREFIX}/health"  # open to health probes: no API key, no work done
VIDEO_PATH = f"{API_PREFIX}/video"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")  # a JSON body is neither
FACE_FIELDS_HINT = ", and face_N files (the source photo for target face N, as /detect numbers them)"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
API_KEY_HEADER = "X-API-Key"
DOCS_PATHS = ("/docs", "/openapi.json")  # behind the key too, when there is one (a browser logs in: Basic)
# the API's own paths (after /api/v1/) and their methods: anything else on them is a 405 with Allow
METHODS = {r"fuse|detect|video": "POST", r"health": "GET", r"jobs/(?!\.\.?/)[^/]+": "GET, DELETE",
           r"jobs/(?!\.\.?/)[^/]+/result": "GET"}
MB = 1024 * 1024  # server.max_upload_mb counts these, as Gradio's upload limit does


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


def _error_response(status: int, code: str, message: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


class ErrorBody(BaseModel):
    """Every error's JSON body."""

    error: str = Field(description="a code for programs", examples=["bad_parameter"])
    message: str = Field(description="one line for people", examples=["ratio: must be between 0 and 1, got 1.5"])
    which: Optional[str] = Field(None, description="no_face only: source or target", examples=["target"])


NO_SPACE_MESSAGE = "no space left on the server's disk"  # no server path in it
ERRORS = {  # status -> (what, an example body)
    400: ("a bad or missing field (named), an empty file, a malformed body",
          {"error": "bad_parameter", "message": "ratio: must be between 0 and 1, got 1.5"}),
    401: ("the API key is missing or wrong", {"error": "unauthorized", "message": "missing or wrong API key "
                                                                                   "(send it in the X-API-Key header)"}),
    404: ("no such job (finished jobs are removed after server.job_keep_hours)",
          {"error": "not_found", "message": "no job '0123456789abcdef0123456789abcdef'"}),
    409: ("the job is not done yet", {"error": "not_ready", "message": "job 0123456789abcdef0123456789abcdef is "
                                                                       "running; the result comes when it is done"}),
    413: ("the body is over the upload limit (the setting is named)",
          {"error": "too_large", "message": "request body of 30.0 MB is over the upload limit of 25 MB "
                                            "(server.max_upload_mb)"}),
    415: ("not an image (or not a video) facefuse can read",
          {"error": "not_an_image", "message": "target image: not an image facefuse can read"}),
    422: ("damaged, over the pixel limit, or no face (`which` says where)",
          {"error": "no_face", "message": "target image: no face found", "which": "target"}),
    503: ("busy: retry after Retry-After seconds", {"error": "busy", "message": "the server is busy (34 requests in "
                                                                                "progress or waiting); retry in 2 s"}),
    507: ("no space left on the server's disk", {"error": "no_space", "message": NO_SPACE_MESSAGE}),
}


def error_responses(*statuses: int) -> dict:
    """OpenAPI entries for these error statuses: the JSON error body, with an example."""
    return {status: {"model": ErrorBody, "description": ERRORS[status][0],
                     "content": {"application/json": {"example": ERRORS[status][1]}}} for status in statuses}


INPUT_STATUS = {"empty": (400, "empty_file"), "not_an_image": (415, "not_an_image"), "not_a_video": (415, "not_a_video"),
                "too_long": (413, "too_long"), "no_video": (415, "no_video"),
                "no_space": (507, "no_space"), "still_image": (415, "not_a_video")}  # else 422


def error_for(exc: FaceFuseError) -> ApiError:
    """The HTTP form of a facefuse error, from its type and fields."""
    msg = str(exc)
    if isinstance(exc, NoFaceError):
        return ApiError(422, "no_face", msg, which=exc.which or None)
    if isinstance(exc, ConfigError):
        return ApiError(400, "bad_parameter", msg)
    if isinstance(exc, InputError):
        status, code = INPUT_STATUS.get(exc.reason, (422, exc.reason or "bad_image"))
        return ApiError(status, code, NO_SPACE_MESSAGE if code == "no_space" else msg)
    if isinstance(exc, EngineError):
        return ApiError(500, "engine_error", msg)
    return ApiError(500, "internal_error", msg)


def _probe_upload(data: bytes, limits):
    """An uploaded clip's header (VideoInfo), read from memory, checked against the limits
    (duration, pixels per frame) before a job is made: ApiError 413 over a limit, 415 not a
    video, 422 unusable."""
    from .video.io import probe

    try:
        return probe(data, limits, name="video")
    except InputError as exc:
        raise error_for(exc) from exc


def _check_times(start: float | None, end: float | None, duration: float | None = None) -> None:
    """`start` and `end` of a video job, in the fields' own names: a 400 at submit, not a job
    that fails later."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and value < 0:
            raise ApiError(400, "bad_parameter", f"{name}: must be >= 0 seconds, got {value:g}")
    if start is not None and end is not None and end <= start:
        raise ApiError(400, "bad_parameter", f"end ({end:g} s) must be after start ({start:g} s)")
    if start is not None and duration and start >= duration:
        raise ApiError(400, "bad_parameter", f"start: {start:g} s is past the end of the clip, "
                                             f"which is {duration:.1f} s long")


def fused_headers(fused) -> dict[str, str]:
    """What a client learns about an EncodedFusion besides the image."""
    w, h = fused.size
    used = ",".join(str(f.index) for f in fused.result.faces)
    timing = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in fused.timings.items() if k != "total")
    return {
        "X-Facefuse-Seconds": f"{fused.seconds:.3f}",
        "X-Facefuse-Faces-Used": used,
        "X-Facefuse-Faces-Found": str(fused.result.target_faces_found),
        "X-Facefuse-Output-Size": f"{w}x{h}",
        "Server-Timing": timing,
    }


# -- the guard: API key and body size, before any byte of the body is buffered ----------
class _BodyTooLarge(Exception):
    pass


class ApiGuard:
    """ASGI middleware for REST paths: checks the API key, then refuses a body over the limit
    from its Content-Length, or, without one, as soon as the bytes received pass it. A
    WebSocket, on any path, needs the key too (see _refuse_websocket)."""

    def __init__(self, app, prefix: str, max_body: int, api_key: str | None, bigger: dict[str, tuple[int, str]] | None = None,
                 ticket_ok: Callable[[str], bool] | None = None):
        """`bigger`: paths with a limit of their own (bytes, the setting that sets it).
        `ticket_ok`: whether a WebSocket's `ticket` query parameter is a valid one-time ticket."""
        self.app, self.prefix, self.default_body, self.api_key = app, prefix, max_body, api_key
        self.bigger = bigger or {}
        self.ticket_ok = ticket_ok

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and self.api_key and not self._websocket_allowed(scope):
            return await _refuse_websocket(receive, send)
        if scope["type"] == "http" and self.api_key and scope["path"].startswith(DOCS_PATHS):
            return await self._docs(scope, receive, send)
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and scope["path"] != HEALTH_PATH and not key_matches(self.api_key, headers):
            return await _send_json(send, 401, "unauthorized",
                                    f"missing or wrong API key (send it in the {API_KEY_HEADER} header)",
                                    {"WWW-Authenticate": "Bearer"})
        max_body, setting = self.bigger.get(scope["path"], (self.default_body, "server.max_upload_mb"))
        def too_large(size):
            return (f"request body of {size / MB:.1f} MB is over the upload limit of "
                    f"{max_body / MB:g} MB ({setting})")
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await _send_json(send, 400, "bad_request", "Content-Length is not a number")
            if int(length) > max_body:
                return await _send_json(send, 413, "too_large", too_large(int(length)))
        received = 0
        tripped = False
        started = False

        async def counting_receive():
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
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
            await _send_json(send, 413, "too_large", too_large(received))

    async def _docs(self, scope, receive, send):
        """The OpenAPI page and schema need the key too; a browser asks for it (any user
        name, the key as password, as the WebUI does)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if key_matches(self.api_key, headers):
            return await self.app(scope, receive, send)
        return await _send_json(send, 401, "unauthorized", "the API docs need the API key (any user name, the key as "
                                "password; or the X-API-Key header)", {"WWW-Authenticate": 'Basic realm="facefuse"'})

    def _websocket_allowed(self, scope) -> bool:
        """Browsers cannot set headers on a WebSocket: the key may also come as the query
        parameter `key`, or a one-time `ticket` (the WebUI's, got behind its login)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if key_matches(self.api_key, headers) or any(
                hmac.compare_digest(given.encode(), self.api_key.encode()) for given in query.get("key", [])):
            return True
        return self.ticket_ok is not None and any(self.ticket_ok(t) for t in query.get("ticket", []))


async def _refuse_websocket(receive, send) -> None:
    """Closed before it is accepted (the client sees the handshake refused with 403)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized: missing or wrong API key"})


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
        elif auth[:6].lower() == "basic ":  # a browser's login: any user name, the key as password
            given = _basic_password(auth[6:].strip())
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _basic_password(token: str) -> str | None:
    try:
        return base64.b64decode(token, validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return None


# -- the app ------------------------------------------------------------------------------
def create_rest_app(settings: Settings, pool: FusionPool, api_key: str | None = None,
                    jobs: JobStore | None = None) -> FastAPI:
    """REST under /api/v1 and OpenAPI at /docs, served from the package (no CDN); video jobs
    in `jobs` (by default a store under output.dir/jobs)."""
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        title="facefuse", version=__version__,
        description="Local face fusion. Every image operation runs in a bounded worker pool; "
                    f"request bodies over {settings.server.max_upload_mb:g} MB are refused with 413.",
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json", static_url="/api-docs-static",
    )
    app.state.pool = pool
    app.state.settings = settings
    jobs = jobs or _job_store(settings, pool)
    app.state.jobs = jobs
    app.state.live = LiveHub(settings)
    video_limit = (int(settings.server.max_video_mb * MB), "server.max_video_mb")
    app.add_middleware(ApiGuard, prefix=API_PREFIX, max_body=int(settings.server.max_upload_mb * MB), api_key=api_key,
                       bigger={VIDEO_PATH: video_limit}, ticket_ok=app.state.live.has_ticket)
    _add_error_handlers(app)
    add_live_route(app, app.state.live)
    _add_video_routes(app, jobs, settings)  # before _add_routes' catch-all for unknown paths
    _add_routes(app, pool, settings)
    return app


def _job_store(settings: Settings, pool: FusionPool) -> JobStore:
    """The video jobs under output.dir/jobs; an unusable output.dir (a file, /dev/null, a
    read-only place) stops the server at start-up with one line naming the key."""
    folder = Path(settings.output.dir) / "jobs"
    try:
        return JobStore(folder, lambda fn, *a: pool.submit(fn, *a, bounded=False),
                        settings.server.job_keep_hours * 3600, settings.server.max_video_jobs)
    except OSError as exc:
        raise ConfigError(f"output.dir: cannot keep video jobs in {folder} ({exc.strerror or exc})") from None


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # a bug, never bad input: log it whole, answer one line
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:  # e.g. an upload spooled to a full disk
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return _error_response(507, "no_space", NO_SPACE_MESSAGE)
        log.exception("%s %s failed", request.method, request.url.path)
        return _error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if request.method == "POST" and not request.headers.get("content-type", "").startswith(FORM_TYPES):
            return _error_response(415, "not_multipart", "multipart/form-data expected: fields and files as a form "
                                                         "(curl -F ratio=0.8 -F source=@face.jpg ...)")
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
        name = ".".join(loc) or "request"
        if "UploadFile" in str(first.get("msg", "")):  # text where a file goes (-F source=x, not =@x)
            return _error_response(400, "bad_parameter", f"{name}: expected a file, got text "
                                                         f"(curl -F {name}=@photo.jpg, with the @)")
        code = "missing_field" if first.get("type") == "missing" else "bad_parameter"
        return _error_response(400, code, f"{name}: {readable_error(first) if first.get('type') else 'invalid'}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno in NO_SPACE:  # FastAPI's 400 for an upload it could not spool
            return _error_response(507, "no_space", NO_SPACE_MESSAGE)
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return _error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                               getattr(exc, "headers", None))


def _params_or_400(settings: Settings, overrides: dict) -> FusionParams:
    return _or_400(settings.fusion_params, **overrides)


def _or_400(check: Callable, *args: Any, **kwargs: Any) -> Any:
    """`check(...)`, its ConfigError a 400 bad_parameter."""
    try:
        return check(*args, **kwargs)
    except ConfigError as exc:
        raise ApiError(400, "bad_parameter", str(exc)) from exc


def _refuse_unknown_fields(form, known: set[str], also: str = "") -> None:
    """A misspelt field (`ratios=0.3`) is an error, as an unknown flag or config key is; so is
    a field given twice (which value would count?). `also`: fields the list does not name."""
    names = [name for name, _ in form.multi_items()]
    unknown = sorted(set(names) - known)
    if unknown:
        raise ApiError(400, "bad_parameter",
                       f"{unknown[0]}: unknown field; the fields are {', '.join(sorted(known))}{also}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ApiError(400, "bad_parameter", f"{twice[0]}: given more than once; give each field once")


def _face_map_fields(form) -> dict[str, tuple[int, Any]]:
    """The face mapping of a /fuse request: file fields `face_N` (N = the target face's
    index, as /detect lists them), each the source photo for that face, like the CLI's
    `--map N=PHOTO`. A face_N that is not a file is a 400."""
    mapped = {}
    for name in form.keys():
        match = FACE_FIELD.fullmatch(name)
        if match:
            value = form.get(name)
            if not hasattr(value, "read"):
                raise ApiError(400, "bad_parameter", f"{name}: expected an image file (the source for target face "
                                                     f"{int(match.group(1))})")
            if len(form.getlist(name)) > 1:
                raise ApiError(400, "bad_parameter", f"{name}: face {int(match.group(1))} is mapped twice")
            mapped[name] = (int(match.group(1)), value)
    return mapped


def _form(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _form_type(annotation: Any) -> type:
    """The form type of a parameter: numbers and flags as such, everything else (a mode,
    a resolution) as text that FusionParams validates with its own message."""
    return annotation if annotation in (float, int, bool) else str


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
        **error_responses(400, 401, 413, 415, 422, 503, 507),
    }

    known_fields = {"source", "target", "format", "quality", *FusionParams.model_fields}

    async def fuse(request: Request, source: Optional[UploadFile], target: UploadFile, format: str,
                   quality: Optional[int], **fields):
        form = await request.form()
        mapped = _face_map_fields(form)
        _refuse_unknown_fields(form, known_fields | set(mapped), FACE_FIELDS_HINT)
        if source is None and not mapped:
            raise ApiError(400, "bad_parameter", "source: a source image is needed, or face_N fields (a face mapping)")
        params = _params_or_400(settings, fields)
        fmt = _or_400(image_format, format)
        q = _or_400(settings.output_quality, quality)
        src_bytes, tgt_bytes = (None if source is None else await source.read()), await target.read()
        sources = {index: await upload.read() for index, upload in sorted(mapped.values(), key=lambda m: m[0])}
        t0 = time.perf_counter()
        fused = await _in_pool(pool, fuse_upload, src_bytes, tgt_bytes, params, fmt.pil, q, None,
                               settings.output.max_pixels, sources or None)
        headers = fused_headers(fused)
        if fused.result.notes:
            headers["X-Facefuse-Notes"] = " | ".join(fused.result.notes)
        headers["X-Facefuse-Wait-Seconds"] = f"{max(0.0, time.perf_counter() - t0 - fused.seconds):.3f}"
        headers["Content-Disposition"] = f'inline; filename="fused.{fmt.ext}"'
        return Response(fused.data, media_type=fmt.media_type, headers=headers)

    fuse.__signature__ = inspect.Signature([
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        _form("source", Optional[UploadFile], File(None, description="image with the face to use (optional when "
                                                                      "face_N files map target faces to sources)")),
        _form("target", UploadFile, File(..., description="image whose face is replaced")),
        *(_form(name, Optional[_form_type(info.annotation)], Form(None, description=info.description,
                                                                   examples=[info.default]))
          for name, info in FusionParams.model_fields.items()),
        _form("format", str, Form("jpg", description=" | ".join(FORMAT_NAMES), examples=["jpg"])),
        _form("quality", Optional[int], Form(None, description="JPEG/WebP quality 1-100", examples=[95])),
    ])
    app.post(f"{API_PREFIX}/fuse", tags=["fusion"], dependencies=deps, responses=image_responses,
             response_class=Response, summary="Fuse the source's face into the target")(fuse)

    @app.post(f"{API_PREFIX}/detect", tags=["fusion"], dependencies=deps,
              responses=error_responses(400, 401, 413, 415, 422, 503, 507),
              summary="The faces of an image, in fusion order (index 0 = largest)")
    async def detect(
        request: Request,
        image: UploadFile = File(..., description="the image to search"),
        threshold: Optional[float] = Form(None, description="face detection confidence 0-1"),
    ) -> dict:
        _refuse_unknown_fields(await request.form(), {"image", "threshold"})
        thr = _or_400(settings.detection_threshold, threshold)
        data = await image.read()
        return await _in_pool(pool, detect_upload, data, thr, settings.output.max_pixels)

    @app.get(HEALTH_PATH, tags=["server"], summary="Is the server up, how busy (no API key needed)")
    async def health() -> dict:
        return {"status": "ok", "version": __version__, "engine": settings.inference.engine,
                "max_upload_mb": settings.server.max_upload_mb, **pool.status()}

    @app.api_route(API_PREFIX + "/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                                         "TRACE"], include_in_schema=False)
    async def not_found(request: Request, rest: str):
        allowed = next((methods for shape, methods in METHODS.items() if re.fullmatch(shape, rest.rstrip("/"))), None)
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{request.method} {API_PREFIX}/{rest}: method not allowed; "
                           f"allowed: {allowed} (see /docs)", {"Allow": allowed})
        raise ApiError(404, "not_found", f"{API_PREFIX}/{rest}: no such endpoint (see /docs)")


def _add_video_routes(app: FastAPI, jobs: JobStore, settings: Settings) -> None:
    from .video.io import ENCODERS

    """POST /video starts a job (202 + its id); GET /jobs/{id} follows it, GET
    /jobs/{id}/result fetches the clip, DELETE /jobs/{id} cancels it (or removes a finished
    one). The fusion fields are /fuse's."""
    known_fields = {"source", "video", "start", "end", "quality", "codec", *FusionParams.model_fields}

    async def video(request: Request, source: UploadFile, video: UploadFile, start: Optional[float],
                    end: Optional[float], quality: Optional[int], codec: Optional[str], **fields):
        _refuse_unknown_fields(await request.form(), known_fields)
        params = _params_or_400(settings, fields)
        _check_times(start, end)
        if quality is not None:
            _or_400(settings.output_quality, quality)
        if codec is not None and codec not in ENCODERS:
            raise ApiError(400, "bad_parameter", f"codec: must be {' or '.join(ENCODERS)}, got {codec!r}")
        suffix = Path(video.filename or "").suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise ApiError(415, "not_a_video", f"video: expected a {', '.join(VIDEO_SUFFIXES)} file, "
                           f"got {video.filename or 'no file name'!r}")
        src, clip = await source.read(), await video.read()
        if not src or not clip:
            raise ApiError(400, "empty_file", f"{'source' if not src else 'video'}: file is empty")
        out = "fused.webm" if codec == "vp9" or (codec is None and suffix == ".webm") else "fused.mp4"
        options = {k: v for k, v in dict(start=start, end=end, quality=quality, codec=codec).items() if v is not None}
        options["limits"] = video_limits(settings)
        info = _probe_upload(clip, options["limits"])  # not a video, over the limits: refused now, not in the job
        _check_times(start, end, info.duration)
        try:
            job_id = jobs.create({"source": src, f"input{suffix}": clip},
                                 video_work("source", f"input{suffix}", out, params, options),
                                 meta={"source": source.filename, "video": video.filename})
        except InputError as exc:  # a full disk: the job is not made, its slot stays free
            raise error_for(exc) from exc
        except JobsBusy as exc:
            raise ApiError(503, "busy", f"{exc.active} video jobs are queued or running (server.max_video_jobs); "
                           "retry later", {"Retry-After": "30"}) from exc
        return JSONResponse({"id": job_id, "state": "queued", "status": f"{API_PREFIX}/jobs/{job_id}",
                             "result": f"{API_PREFIX}/jobs/{job_id}/result"}, status_code=202)

    video.__signature__ = inspect.Signature([
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        _form("source", UploadFile, File(..., description="image with the face to use")),
        _form("video", UploadFile, File(..., description=f"the clip ({' '.join(VIDEO_SUFFIXES)})")),
        _form("start", Optional[float], Form(None, description="first second to fuse", examples=[0.0])),
        _form("end", Optional[float], Form(None, description="last second to fuse", examples=[1.0])),
        _form("quality", Optional[int], Form(None, description="1-100, mapped to the encoder's CRF", examples=[75])),
        _form("codec", Optional[str], Form(None, description="h264 (default; .mp4) or vp9 (.webm)", examples=["h264"])),
        *(_form(name, Optional[_form_type(info.annotation)], Form(None, description=info.description,
                                                                   examples=[info.default]))
          for name, info in FusionParams.model_fields.items()),
    ])
    app.post(VIDEO_PATH, tags=["video"], status_code=202, summary="Start fusing the source's face into a clip",
             responses={202: {"description": "the job's id and where to follow it",
                              "content": {"application/json": {"example": {
                                  "id": "0123456789abcdef0123456789abcdef", "state": "queued",
                                  "status": f"{API_PREFIX}/jobs/0123456789abcdef0123456789abcdef",
                                  "result": f"{API_PREFIX}/jobs/0123456789abcdef0123456789abcdef/result"}}}},
                        **error_responses(400, 401, 413, 415, 422, 503, 507)})(video)

    def _job(job_id: str) -> dict:
        try:
            return jobs.status(job_id)
        except UnknownJob:
            raise ApiError(404, "not_found", f"no job {job_id!r} (finished jobs are removed after "
                           f"{settings.server.job_keep_hours:g} h)") from None

    @app.get(API_PREFIX + "/jobs/{job_id}", tags=["video"], responses=error_responses(401, 404),
             summary="A job's state, progress, error and warnings (e.g. a truncated clip, fused as far as it goes)")
    async def job_status(job_id: str) -> dict:
        return _job(job_id)

    @app.get(API_PREFIX + "/jobs/{job_id}/result", tags=["video"], response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}, "video/webm": {}}, "description": "the fused clip"},
                        **error_responses(401, 404, 409)}, summary="The fused clip of a finished job")
    async def job_result(job_id: str):
        state = _job(job_id)
        path = jobs.result(job_id)
        if path is None and state["state"] in ("failed", "cancelled"):  # no result will come: not a 409
            why = f": {state['error']}" if state.get("error") else ""
            raise ApiError(410, f"job_{state['state']}", f"job {job_id} {state['state']}, it has no result{why}")
        if path is None:
            raise ApiError(409, "not_ready", f"job {job_id} is {state['state']}; the result comes when it is done")
        media = "video/webm" if path.suffix == ".webm" else "video/mp4"
        return FileResponse(path, media_type=media, filename=path.name)

    @app.delete(API_PREFIX + "/jobs/{job_id}", tags=["video"], responses=error_responses(401, 404),
                summary="Cancel a job, or remove a finished one")
    async def job_cancel(job_id: str) -> dict:
        _job(job_id)
        return jobs.cancel(job_id)
