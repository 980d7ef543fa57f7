"""`/api/v1/live`: a camera's frames in, fused frames out, over one WebSocket.

The protocol (the README has it as a table):

    connect   ws://HOST/api/v1/live?ratio=0.8&mode=normal...   the FusionParams names as query
              parameters; `key=KEY` (or the X-API-Key header) when the server has an API key,
              or `ticket=T`, a one-time ticket the WebUI's Live tab got with its source
    client    the source photo as the first binary message (not with a ticket)
    server    text {"type": "ready", ...}
    client    camera frames, binary JPEG, at most `in_flight` (2) unanswered
    server    per frame: text {"type": "frame", "faces", "fused", "dropped", ...}, then the
              fused frame as binary JPEG, in the order the frames came
    client    text {"type": "params", "ratio": 0.5, ...} any time: the next frame uses them;
              text {"type": "snapshot"}: the last fused frame is saved in output.dir with a
              JSON sidecar, answered {"type": "saved", "name"};
              text {"type": "record", "on": true | false}: the fused frames from now on are
              written as an MP4 (H.264) into output.dir as `facefuse video` writes (a temp
              file renamed into place when recording stops or the session ends), answered
              {"type": "recording", "name"} and then {"type": "saved", "name", "frames"}

Closes with a code and a one-line reason: 1013 busy (server.live_sessions sessions already
run), 1009 a frame over the size limit, 4400 a bad parameter or message, 4415 not an image,
4422 no face in the source, 4408 idle for server.live_idle_seconds; 1008 (before anything)
no or a wrong API key (api.ApiGuard).

Each connection has its own `LiveSession` (video/live.py: the tracker, the source), its own
planning thread and two fusion threads, and a Fuser of its own, kept for the next session
when it ends; nothing of a session outlives it. Only one frame waits while two are fused:
a newer one replaces it, and the replaced one is counted as dropped.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import queue
import re
import secrets
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from .config import FusionParams, Settings, usable_cores
from .errors import ConfigError, FaceFuseError, InputError, NoFaceError, OutputExistsError
from .io import write_bytes_atomic

log = logging.getLogger("facefuse.live")

LIVE_PATH = "/api/v1/live"
IN_FLIGHT = 2  # frames fused at once per session (video/fuse.py's FRAMES_IN_FLIGHT: 2 cores busy)
MAX_FRAME_PIXELS = 3840 * 2160  # a 4K camera; a frame over it closes the session (1009)
MAX_FRAME_BYTES = 8 * 1024 * 1024
JPEG_QUALITY = 80  # fused frames: 640x480 encodes in ~2 ms at ~40 KB
TICKET_SECONDS = 60
CLOSE_BUSY, CLOSE_TOO_BIG, CLOSE_BAD, CLOSE_NOT_IMAGE, CLOSE_NO_FACE, CLOSE_IDLE = 1013, 1009, 4400, 4415, 4422, 4408
QUERY_NOT_PARAMS = ("key", "ticket")
SECRET_IN_QUERY = re.compile(r"(?<=[?&])(key|ticket)=[^&\s\"']*")


class RedactSecrets(logging.Filter):
    """Blanks `key=` and `ticket=` in log lines: uvicorn logs a WebSocket's path with its
    query string (at INFO, `"WebSocket /api/v1/live?key=..." [accepted]`), and a browser
    can only send the key there. `facefuse serve` logs uvicorn at WARNING anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(SECRET_IN_QUERY.sub(r"\1=***", a) if isinstance(a, str) else a
                                for a in (record.args if isinstance(record.args, tuple) else (record.args,)))
        if isinstance(record.msg, str):
            record.msg = SECRET_IN_QUERY.sub(r"\1=***", record.msg)
        return True


def redact_server_logs() -> None:
    """Installs RedactSecrets on uvicorn's loggers (once)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


class LiveHub:
    """What the server's live sessions share: how many run (at most `limit`), the Fusers of
    ended sessions (a Fuser loads its models in ~1 s), and the WebUI's one-time tickets."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.limit = settings.server.live_sessions or max(1, usable_cores() // 2)
        self.idle_seconds = settings.server.live_idle_seconds
        self.active = 0
        self._lock = threading.Lock()
        self._fusers: queue.SimpleQueue = queue.SimpleQueue()
        self._tickets: dict[str, tuple[float, Any, dict]] = {}

    def enter(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def fuser(self):
        """An idle Fuser, or a new one (blocking: call it on a worker thread)."""
        try:
            return self._fusers.get_nowait()
        except queue.Empty:
            from .pipeline import Fuser

            return Fuser(self.settings)

    def give_back(self, fuser) -> None:
        if self._fusers.qsize() < self.limit:
            self._fusers.put(fuser)

    def issue_ticket(self, source, overrides: dict) -> str:
        """A one-time ticket for a prepared source (what the WebUI hands its page script:
        the page never sees the API key; Gradio's login has already checked it)."""
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._tickets = {k: v for k, v in self._tickets.items() if v[0] > now}
            self._tickets[token] = (now + TICKET_SECONDS, source, overrides)
        return token

    def _find_ticket(self, token: str) -> str | None:
        now = time.monotonic()
        for known, (expires, _, _) in list(self._tickets.items()):
            if hmac.compare_digest(known.encode(), token.encode()) and expires > now:
                return known
        return None

    def has_ticket(self, token: str) -> bool:
        with self._lock:
            return self._find_ticket(token) is not None

    def take_ticket(self, token: str) -> tuple[Any, dict] | None:
        with self._lock:
            known = self._find_ticket(token)
            if known is None:
                return None
            _, source, overrides = self._tickets.pop(known)
            return source, overrides


class LiveClosed(Exception):
    """The session ends with this close code and reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _short(reason: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455)."""
    data = reason.encode()
    return reason if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


def check_frame_size(data: bytes) -> None:
    """A camera frame's bytes and pixels against the live limits, from its header alone."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_FRAME_BYTES:
        raise LiveClosed(CLOSE_TOO_BIG, f"frame of {len(data) / 1e6:.1f} MB is over the live limit of "
                                        f"{MAX_FRAME_BYTES / 1e6:.1f} MB")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError):
        raise LiveClosed(CLOSE_NOT_IMAGE, "a frame is not an image (send JPEG bytes)") from None
    if w * h > MAX_FRAME_PIXELS:
        raise LiveClosed(CLOSE_TOO_BIG, f"frame of {w}x{h} px is over the live limit of "
                                        f"{MAX_FRAME_PIXELS / 1e6:.1f} MP")


def decode_frame(data: bytes) -> np.ndarray:
    """A camera frame (JPEG, PNG, WebP bytes, already size-checked) as RGB."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise LiveClosed(CLOSE_NOT_IMAGE, "a frame could not be decoded (damaged image)")
    return bgr[:, :, ::-1]


def encode_frame(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return buf.tobytes()


def save_snapshot(out_dir: str | Path, jpeg: bytes, meta: dict) -> Path:
    """The fused frame as `output.dir/YYYYMMDD-HHMMSS-mmm.jpg` with its JSON sidecar (named
    as the WebUI names photo results, so the gallery shows it), both written atomically."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now()
    stem = now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"
    for attempt in range(100):
        path = folder / f"{stem if attempt == 0 else f'{stem}-{attempt}'}.jpg"
        sidecar = {"created": now.isoformat(timespec="milliseconds"), "image": path.name, **meta}
        try:
            write_bytes_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2, default=str).encode())
        except OutputExistsError:
            continue
        try:
            write_bytes_atomic(path, jpeg)
            return path
        except OutputExistsError:
            path.with_suffix(".json").unlink(missing_ok=True)
    raise OutputExistsError(folder, "could not find a free file name")  # pragma: no cover


def _timestamped(folder: Path, suffix: str) -> Path:
    """A free `YYYYMMDD-HHMMSS-mmm<suffix>` in `folder` (its sidecar's name free too)."""
    now = datetime.now()
    stem = now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"
    for attempt in range(100):
        path = folder / f"{stem if attempt == 0 else f'{stem}-{attempt}'}{suffix}"
        if not path.exists() and not path.with_suffix(".json").exists():
            return path
    raise OutputExistsError(folder, "could not find a free file name")  # pragma: no cover


class Recording:
    """The fused stream as an H.264 MP4 in output.dir: frames stamped with their own times
    (a live stream's rate varies), encoded on a background thread, written to a temp file
    beside the output and renamed into place by `finish` (video/io.py's VideoWriter, as
    `facefuse video` writes); the JSON sidecar is written last."""

    def __init__(self, out_dir: str | Path, size: tuple[int, int], meta: dict):
        from fractions import Fraction

        from .video.io import BackgroundEncoder, VideoInfo, VideoWriter

        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = _timestamped(folder, ".mp4")
        self.size, self.meta = size, meta
        info = VideoInfo(path="live", width=size[0], height=size[1], fps=Fraction(25), frames=0, duration=0.0,
                         time_base=Fraction(1, 1000), codec="h264", pix_fmt="yuv420p", rotation=0)
        self.writer = VideoWriter(self.path, info, size=size, audio=False)
        self.encoder = BackgroundEncoder(self.writer, depth=8)
        self.t0: float | None = None
        self.last_pts = -1
        self.frames = 0

    def add(self, image: np.ndarray, t: float) -> None:
        """One fused frame taken at `t` (seconds, monotonic); resized if the stream's size changed."""
        from .imaging import resize_frame

        if self.t0 is None:
            self.t0 = t
        if image.shape[1::-1] != self.size:
            image = resize_frame(image, self.size)
        self.last_pts = max(self.last_pts + 1, int(round((t - self.t0) * 1000)))
        self.encoder.write(image, self.last_pts)
        self.frames += 1

    def finish(self) -> Path:
        self.encoder.finish()
        self.writer.close()
        seconds = (self.last_pts + 1) / 1000
        write_bytes_atomic(self.path.with_suffix(".json"), json.dumps(
            {"created": datetime.now().isoformat(timespec="milliseconds"), "image": self.path.name,
             "output_size": list(self.size), "frames": self.frames, "seconds": round(seconds, 3), **self.meta},
            indent=2, default=str).encode())
        return self.path

    def abandon(self) -> None:
        self.encoder.stop()
        self.writer._cleanup()


def _params(settings: Settings, overrides: dict) -> FusionParams:
    try:
        return settings.fusion_params(**overrides)
    except ConfigError as exc:
        raise LiveClosed(CLOSE_BAD, str(exc)) from exc


def add_live_route(app, hub: LiveHub) -> None:
    redact_server_logs()

    @app.websocket(LIVE_PATH)
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        if not hub.enter():
            await ws.close(CLOSE_BUSY, _short(f"busy: {hub.limit} live session(s) already running "
                                              "(server.live_sessions); try again later"))
            return
        try:
            await _run(ws, hub)
        except LiveClosed as closed:
            await _close(ws, closed.code, closed.reason)
        except Exception:  # a bug: logged whole, the client gets one line
            log.exception("live session failed")
            await _close(ws, 1011, "internal error; see the server log")
        finally:
            hub.leave()


async def _close(ws, code: int, reason: str) -> None:
    if ws.application_state != WebSocketState.DISCONNECTED and ws.client_state != WebSocketState.DISCONNECTED:
        try:
            await ws.close(code, _short(reason))
        except RuntimeError:  # the client went first
            pass


async def _receive(ws, idle: float) -> dict:
    """The next message; LiveClosed after `idle` seconds of silence, WebSocketDisconnect
    when the client has gone."""
    try:
        message = await asyncio.wait_for(ws.receive(), idle)
    except asyncio.TimeoutError:
        raise LiveClosed(CLOSE_IDLE, f"nothing received for {idle:g} s (server.live_idle_seconds)") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


async def _run(ws, hub: LiveHub) -> None:
    """One session: its source, then frames until the client leaves or breaks a limit."""
    from .video.live import LiveSession, shared_fusing_processes

    settings = hub.settings
    query = {k: v for k, v in ws.query_params.items() if k not in QUERY_NOT_PARAMS}
    ticket = ws.query_params.get("ticket")
    source, overrides = None, dict(query)
    if ticket:
        taken = hub.take_ticket(ticket)
        if taken is None:
            raise LiveClosed(CLOSE_BAD, "the ticket is unknown or expired; press Start again")
        source, ticket_overrides = taken
        overrides = {**ticket_overrides, **query}
    params = _params(settings, overrides)
    loop = asyncio.get_running_loop()
    planner = ThreadPoolExecutor(1, thread_name_prefix="facefuse-live-plan")
    fusers = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="facefuse-live-fuse")
    fuser = session = None
    try:
        try:
            if source is None:
                message = await _receive(ws, hub.idle_seconds)
                source = message.get("bytes")
                if not source:
                    raise LiveClosed(CLOSE_BAD, "send the source photo as the first (binary) message")
                if len(source) > settings.server.max_upload_mb * 1024 * 1024:
                    raise LiveClosed(CLOSE_TOO_BIG, f"source photo over server.max_upload_mb "
                                                    f"({settings.server.max_upload_mb:g} MB)")
            fuser = await loop.run_in_executor(planner, hub.fuser)
            processes = await loop.run_in_executor(planner, shared_fusing_processes, settings)
            session = await loop.run_in_executor(planner, lambda: LiveSession(fuser, source, params,
                                                                              processes=processes))
        except NoFaceError:
            raise LiveClosed(CLOSE_NO_FACE, "no face found in the source photo") from None
        except InputError as exc:
            raise LiveClosed(CLOSE_NOT_IMAGE, f"source photo: {exc}") from None
        await ws.send_text(json.dumps({"type": "ready", "in_flight": IN_FLIGHT, "params": params.model_dump(),
                                       "max_frame_pixels": MAX_FRAME_PIXELS, "max_frame_bytes": MAX_FRAME_BYTES,
                                       "idle_seconds": hub.idle_seconds}))
        stream = _Stream(ws, session, settings, overrides, planner, fusers)
        try:
            await stream.run(hub.idle_seconds)
        finally:
            await stream.stop_recording()
    except WebSocketDisconnect:
        pass
    finally:
        await loop.run_in_executor(None, lambda: (fusers.shutdown(wait=True), planner.shutdown(wait=True),
                                                  session is not None and session.close()))
        if fuser is not None:
            hub.give_back(fuser)


class _Stream:
    """The frames of one session: received into a one-frame inbox (a newer frame replaces a
    waiting one), planned in order on the planning thread, fused two at once, sent in order."""

    def __init__(self, ws, session, settings: Settings, overrides: dict, planner, fusers):
        self.ws, self.session, self.settings, self.overrides = ws, session, settings, overrides
        self.planner, self.fusers = planner, fusers
        self.inbox: deque = deque(maxlen=1)
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.dropped = 0
        self.frames = 0
        self.last: tuple[Any, bytes] | None = None  # the last fused frame sent and its JPEG
        self.recording: Recording | None = None

    async def run(self, idle: float) -> None:
        workers = [asyncio.create_task(self._plan_loop()), asyncio.create_task(self._send_loop())]
        try:
            while True:
                receiving = asyncio.ensure_future(_receive(self.ws, idle))
                done, _ = await asyncio.wait([receiving, *workers], return_when=asyncio.FIRST_COMPLETED)
                for task in workers:
                    if task in done:  # a damaged frame, a bug: it ends the session
                        receiving.cancel()
                        task.result()
                message = receiving.result()
                if message.get("bytes") is not None:
                    self._arrive(message["bytes"])
                elif message.get("text") is not None:
                    await self._command(message["text"])
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _arrive(self, data: bytes) -> None:
        check_frame_size(data)  # over the limit: refused as it arrives, before it waits
        if self.inbox:
            self.dropped += 1  # stale: the newer frame replaces it
        self.inbox.append((data, time.monotonic()))
        self.arrived.set()

    async def _command(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message.pop("type")
        except (ValueError, KeyError, AttributeError, TypeError):
            raise LiveClosed(CLOSE_BAD, 'a text message must be JSON with a "type" (params, snapshot)') from None
        if kind == "params":
            try:
                params = self.settings.fusion_params(**{**self.overrides, **message})
            except ConfigError as exc:
                await self.ws.send_text(json.dumps({"type": "error", "message": str(exc)}))
                return
            self.overrides = {**self.overrides, **message}
            self.session.set_params(params)
        elif kind == "snapshot":
            await self.ws.send_text(json.dumps(await self._snapshot()))
        elif kind == "record":
            await self.ws.send_text(json.dumps(await (self._start_recording() if message.get("on")
                                                      else self.stop_recording())))
        else:
            raise LiveClosed(CLOSE_BAD, f"unknown message type {kind!r} (params, snapshot, record)")

    def _meta(self) -> dict:
        return {"live": True, "params": self.session.params.model_dump(), "engine": self.settings.inference.engine}

    async def _start_recording(self) -> dict:
        if self.recording is not None:
            return {"type": "recording", "name": self.recording.path.name}
        if self.last is None:
            return {"type": "error", "message": "no fused frame yet: record once the stream shows"}
        size = (int(self.last[0].image.shape[1]), int(self.last[0].image.shape[0]))
        try:
            self.recording = await asyncio.get_running_loop().run_in_executor(
                None, Recording, self.settings.output.dir, size, self._meta())
        except (OSError, FaceFuseError) as exc:
            return {"type": "error", "message": f"cannot record: {exc}"}
        return {"type": "recording", "name": self.recording.path.name}

    async def stop_recording(self) -> dict:
        """Finish the recording (one with no frame is dropped); what to tell the client."""
        recording, self.recording = self.recording, None
        if recording is None:
            return {"type": "error", "message": "not recording"}
        loop = asyncio.get_running_loop()
        if recording.frames == 0:
            await loop.run_in_executor(None, recording.abandon)
            return {"type": "error", "message": "nothing was recorded"}
        try:
            path = await loop.run_in_executor(None, recording.finish)
        except Exception as exc:  # noqa: BLE001 - the encoder's error, told to the client in one line
            await loop.run_in_executor(None, recording.abandon)
            return {"type": "error", "message": f"recording not saved: {exc}"}
        return {"type": "saved", "name": path.name, "dir": str(self.settings.output.dir),
                "frames": recording.frames}

    async def _snapshot(self) -> dict:
        if self.last is None:
            return {"type": "error", "message": "no fused frame yet"}
        frame, jpeg = self.last
        meta = {"output_size": [int(frame.image.shape[1]), int(frame.image.shape[0])],
                "faces_found": frame.faces_found, "faces_fused": frame.fused, **self._meta()}
        try:
            path = await asyncio.get_running_loop().run_in_executor(
                None, save_snapshot, self.settings.output.dir, jpeg, meta)
        except (OSError, FaceFuseError) as exc:
            return {"type": "error", "message": f"snapshot not saved: {exc}"}
        return {"type": "saved", "name": path.name, "dir": str(self.settings.output.dir)}

    async def _plan_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.slots.acquire()
            while not self.inbox:
                self.arrived.clear()
                await self.arrived.wait()
            data, t = self.inbox.popleft()
            planned = await loop.run_in_executor(self.planner, self._decode_and_plan, data, t)
            await self.outbox.put(loop.run_in_executor(self.fusers, self._fuse_and_encode, planned))

    def _decode_and_plan(self, data: bytes, t: float):
        return self.session.plan(decode_frame(data), t)

    def _fuse_and_encode(self, planned):
        frame = self.session.fuse(planned)
        return frame, encode_frame(frame.image)

    async def _send_loop(self) -> None:
        while True:
            future = await self.outbox.get()
            frame, jpeg = await future
            self.frames += 1
            self.last = (frame, jpeg)
            await self.ws.send_text(json.dumps({
                "type": "frame", "index": frame.index, "faces": frame.faces_found, "fused": frame.fused,
                "dropped": self.dropped, "detection": frame.full_detection,
                "server_ms": round((time.monotonic() - frame.t) * 1000, 1),
                "plan_ms": round(frame.plan_s * 1000, 1), "fuse_ms": round(frame.fuse_s * 1000, 1)}))
            await self.ws.send_bytes(jpeg)
            if self.recording is not None:
                self.recording.add(frame.image, frame.t)
            self.slots.release()
