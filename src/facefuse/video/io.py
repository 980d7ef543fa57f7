"""Video decoding and encoding with PyAV (FFmpeg inside the wheel): the only place facefuse
touches video files.

Frames are RGB uint8 arrays in display orientation (a phone clip's rotation is applied on
reading and written back as metadata), each with its presentation timestamp, so the output
keeps the input's frame count, frame rate and timing (variable frame rate too). Audio is
copied packet by packet when the output container can hold it, else re-encoded (AAC; Opus
in WebM). Output goes to a temporary file beside OUT and is renamed into place only when
complete: an interrupted or failed run never leaves a partial OUT.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, OutputExistsError
from ..io import file_mode, make_temp, no_space_error, remove_stale_temps

# output suffix -> (FFmpeg muxer, default video codec)
CONTAINERS = {".mp4": ("mp4", "h264"), ".mov": ("mov", "h264"), ".mkv": ("matroska", "h264"), ".webm": ("webm", "vp9")}
ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9"}
# audio codecs each muxer takes as they are (anything else is re-encoded)
AUDIO_COPY = {
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le"},
    "matroska": {"aac", "mp3", "ac3", "eac3", "opus", "vorbis", "flac", "pcm_s16le"},
    "webm": {"opus", "vorbis"},
}
AUDIO_REENCODE = {"webm": "libopus"}  # others: "aac"
DEFAULT_QUALITY = 75  # -> CRF 18: visually lossless, background PSNR ~ 40 dB
X264_PRESET = "veryfast"  # the preset the decode + encode floor is measured with


@dataclass(frozen=True)
class VideoLimits:
    """What a video input may be; checked from the header, before any frame is decoded."""

    max_bytes: int = 4 * 1024**3
    max_seconds: float = 3 * 3600.0
    max_pixels: int = 8192 * 4608  # per frame: 8K


@dataclass
class VideoInfo:
    """A video's streams as read from its header (`frames` is the container's count or an
    estimate from duration x rate; the decoder has the last word)."""

    path: str
    width: int  # display orientation
    height: int
    fps: Fraction
    frames: int
    duration: float
    time_base: Fraction
    codec: str
    pix_fmt: str
    rotation: int  # degrees counter-clockwise the stored picture is turned for display
    start_time: float = 0.0  # seconds: the container's first timestamp, time 0 of the output
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_duration: float | None = None

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fps": round(float(self.fps), 3), "frames": self.frames,
                "duration_s": round(self.duration, 3), "codec": self.codec, "pix_fmt": self.pix_fmt,
                "rotation": self.rotation, "audio": self.audio_codec, "audio_rate": self.audio_rate}


@dataclass
class Frame:
    index: int  # 0-based, in decode order from the start of the clip (or of --start)
    pts: int  # presentation time in the stream's time base, from the clip's (or --start's) time 0
    time: float  # seconds, the same
    rgb: np.ndarray  # H x W x 3 uint8, display orientation


def _av():
    import av  # imported on use: the still-image path never needs it

    return av


def _open_input(path: str | os.PathLike | bytes, name: str):
    """An opened container of a file, or of a clip held in memory (bytes: an upload)."""
    av = _av()
    if isinstance(path, (bytes, bytearray)):
        if not path:
            raise InputError(f"{name}: empty file", "empty")
        source = io.BytesIO(path)
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{name}: file not found", "not_found")
        if not p.is_file():
            raise InputError(f"{name}: not a file", "not_found")
        if p.stat().st_size == 0:
            raise InputError(f"{name}: empty file", "empty")
        source = str(p)
    try:
        return av.open(source, "r")
    except av.error.FFmpegError as exc:
        raise InputError(f"{name}: not a video, or damaged ({_ffmpeg_reason(exc)})", "not_a_video") from exc


def _ffmpeg_reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", "") or exc).splitlines()[0][:120]


def _rotation_of(container, stream) -> int:
    """The display rotation (0, 90, 180, 270), from the first frame's display matrix."""
    av = _av()
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation or 0)) % 360
    except av.error.FFmpegError:
        return 0
    return 0


def probe(path: str | os.PathLike | bytes, limits: VideoLimits = VideoLimits(), name: str | None = None) -> VideoInfo:
    """Read a video's header and check it against `limits`; InputError (one line, with a
    `reason`) for anything that is not a usable video. `path` may also be the clip's bytes
    (an upload, checked before it is written anywhere)."""
    in_memory = isinstance(path, (bytes, bytearray))
    name = name or ("video" if in_memory else f"video {path}")
    p = None if in_memory else Path(path)
    size = len(path) if in_memory else p.stat().st_size if p.is_file() else 0
    if size > limits.max_bytes:
        raise InputError(f"{name}: {size / 1e6:.0f} MB is over the limit of {limits.max_bytes / 1e6:.0f} MB",
                         "too_large")
    container = _open_input(path if in_memory else p, name)
    try:
        if not container.streams.video:
            what = "audio only" if container.streams.audio else "no video stream"
            raise InputError(f"{name}: {what}, nothing to fuse", "no_video")
        if _is_still_image(container):
            raise InputError(f"{name}: a still image, not a video (fuse a photo with `facefuse fuse` "
                             "or the Photo tab)", "still_image")
        vs = container.streams.video[0]
        cc = vs.codec_context
        if not cc.width or not cc.height:
            raise InputError(f"{name}: the video stream has no frame size (damaged?)", "damaged_video")
        if cc.width * cc.height > limits.max_pixels:
            raise InputError(f"{name}: {cc.width}x{cc.height} is over the limit of {limits.max_pixels / 1e6:.1f} Mpx "
                             "per frame", "too_many_pixels")
        fps = Fraction(vs.average_rate or vs.guessed_rate or vs.base_rate or 25)
        duration = _duration(container, vs)
        if duration > limits.max_seconds:
            raise InputError(f"{name}: {duration:.0f} s is over the limit of {limits.max_seconds:.0f} s", "too_long")
        frames = int(vs.frames) or int(round(duration * float(fps)))
        audio = container.streams.audio[0] if container.streams.audio else None
        rotation = _rotation_of(container, vs)
        w, h = (cc.height, cc.width) if rotation in (90, 270) else (cc.width, cc.height)
        return VideoInfo(
            path="" if in_memory else str(p), width=w, height=h, fps=fps, frames=frames, duration=duration,
            time_base=Fraction(vs.time_base), codec=cc.name, pix_fmt=str(cc.format.name if cc.format else cc.pix_fmt),
            rotation=rotation, start_time=(container.start_time or 0) / 1_000_000,
            audio_codec=audio.codec_context.name if audio else None,
            audio_rate=audio.codec_context.sample_rate if audio else None,
            audio_duration=_duration(container, audio) if audio else None,
        )
    finally:
        container.close()


def _is_still_image(container) -> bool:
    """FFmpeg opens a photo as a one-frame "video" (image2 for JPEG, png_pipe, webp_pipe, ...)."""
    return container.format.name == "image2" or container.format.name.endswith("_pipe")


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The stored picture turned for display (rotation: degrees counter-clockwise)."""
    return rgb if rotation == 0 else np.ascontiguousarray(np.rot90(rgb, rotation // 90))


def _stored(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The inverse of `_upright`: a display-oriented picture back to stored orientation."""
    return rgb if rotation == 0 else np.ascontiguousarray(np.rot90(rgb, -(rotation // 90)))


class VideoReader:
    """Decoded frames of one clip, optionally from `start` to `end` seconds.

    A damaged stream is decoded as far as it goes: iteration stops at the first frame that
    cannot be decoded and `lost` says so (what was decoded is still fused).
    """

    def __init__(self, path: str | os.PathLike, start: float | None = None, end: float | None = None,
                 limits: VideoLimits = VideoLimits(), name: str | None = None):
        self.name = name or f"video {path}"
        self.info = probe(path, limits, self.name)
        if start is not None and start < 0 or end is not None and end < 0:
            raise InputError(f"{self.name}: --start and --end must be >= 0 seconds", "bad_range")
        if start is not None and end is not None and end <= start:
            raise InputError(f"{self.name}: --end ({end:g} s) must be after --start ({start:g} s)", "bad_range")
        self.start, self.end = start, end
        self.lost: str = ""  # why decoding stopped early, if it did
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame]:
        av = _av()
        container = _open_input(self.info.path, self.name)
        try:
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            tb = vs.time_base
            origin = int(round((self.info.start_time + (self.start or 0.0)) / tb))
            if self.start:
                container.seek(origin, stream=vs, backward=True, any_frame=False)
            index = 0
            try:
                for frame in container.decode(vs):
                    if frame.pts is None:
                        continue
                    t = float((frame.pts - origin) * tb)
                    if t < -1e-6 and self.start:
                        continue
                    if self.end is not None and t >= self.end - (self.start or 0.0) - 1e-6:
                        break
                    rgb = _upright(frame.to_ndarray(format="rgb24"), self.info.rotation)
                    yield Frame(index=index, pts=int(frame.pts - origin), time=t, rgb=rgb)
                    index += 1
                    self.frames_read = index
            except av.error.FFmpegError as exc:
                self.lost = f"decoding stopped after {index} frames ({_ffmpeg_reason(exc)})"
            if not self.lost and self.end is None and not self.start and index < self.info.frames - 1:
                self.lost = f"{index} of {self.info.frames} frames decoded (truncated?)"
            if index == 0:
                what = self.lost or ("no frames in the range asked for" if self.start or self.end else "zero frames")
                raise InputError(f"{self.name}: {what}", "empty")
        finally:
            container.close()


def crf_for(quality: int, codec: str) -> int:
    """Quality 1-100 (as for JPEG) to the encoder's constant rate factor: 75 -> 18
    (visually lossless), 100 -> 8, 1 -> 48 (H.264's scale is 0-51, VP9's 0-63)."""
    if not 1 <= quality <= 100:
        raise InputError(f"quality: must be 1-100, got {quality}", "bad_value")
    return int(round(48 - 0.4 * quality))


def container_for(out: str | os.PathLike) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in CONTAINERS:
        raise InputError(f"{out}: unsupported video format {suffix or '(none)'}; use one of "
                         f"{', '.join(CONTAINERS)}", "bad_output")
    return CONTAINERS[suffix][0]


def check_output(out: str | os.PathLike, overwrite: bool, codec: str | None = None) -> None:
    """Fail before any work: bad extension or codec, missing folder, existing file."""
    fmt = container_for(out)
    codec = codec or CONTAINERS[Path(out).suffix.lower()][1]
    if codec not in ENCODERS:
        raise InputError(f"codec: must be one of {', '.join(ENCODERS)}, got {codec!r}", "bad_value")
    if fmt == "webm" and codec != "vp9":
        raise InputError(f"{out}: WebM holds VP9, not {codec}", "bad_value")
    if not Path(out).resolve().parent.is_dir():
        raise InputError(f"{out}: output folder does not exist", "bad_output")
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(out)


@dataclass
class _AudioFeed:
    """The input's audio, fed to the output up to each video time (so the file is
    interleaved): copied packet by packet, or decoded and re-encoded."""

    container: object
    stream: object
    out_stream: object
    copy: bool
    origin: float  # seconds of input that are time 0 of the output
    start: float
    end: float | None
    packets: Iterator = field(init=False)
    done: bool = False
    shift: int = 0

    def __post_init__(self) -> None:
        tb = self.stream.time_base
        self.shift = int(round((self.origin + self.start) / tb))
        if self.start:
            self.container.seek(self.shift, stream=self.stream, backward=True)
        self.packets = self.container.demux(self.stream)

    def feed(self, out, until: float | None) -> None:
        """Mux the audio whose time is before `until` seconds of output (None: all)."""
        av = _av()
        tb = self.stream.time_base
        while not self.done:
            try:
                packet = next(self.packets)
            except (StopIteration, av.error.FFmpegError):
                packet = None
            if packet is None or packet.size == 0:  # the end (demux ends with an empty packet)
                self._finish(out)
                return
            if packet.pts is None:
                continue
            t = float((packet.pts - self.shift) * tb)
            if t < -1e-6 and self.start:
                continue
            if self.end is not None and t >= self.end - self.start - 1e-6:
                self._finish(out)
                return
            self._mux(out, packet)
            if until is not None and t >= until:
                return

    def _mux(self, out, packet) -> None:
        if self.copy:
            packet.pts -= self.shift
            packet.dts = packet.pts if packet.dts is None else packet.dts - self.shift
            packet.stream = self.out_stream
            out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples from 0
            for p in self.out_stream.encode(frame):
                out.mux(p)

    def _finish(self, out) -> None:
        self.done = True
        if not self.copy:
            for p in self.out_stream.encode(None):
                out.mux(p)


class VideoWriter:
    """Encodes frames (display orientation, RGB uint8) to a temporary file beside `out`,
    with `info`'s rotation, time base and audio, and renames it to `out` on `close()`.

    Use as a context manager: on any exception (Ctrl-C included) the temporary file is
    removed and `out` is left as it was.
    """

    def __init__(self, out: str | os.PathLike, info: VideoInfo, size: tuple[int, int] | None = None,
                 codec: str | None = None, quality: int = DEFAULT_QUALITY, overwrite: bool = False,
                 start: float | None = None, end: float | None = None, audio: bool = True):
        check_output(out, overwrite, codec)
        av = _av()
        self.out = Path(out)
        self.overwrite = overwrite
        self.info = info
        self.format = container_for(out)
        self.codec = codec or CONTAINERS[self.out.suffix.lower()][1]
        self.size = size or (info.width, info.height)
        remove_stale_temps(self.out.resolve().parent, {self.out.name})
        try:
            fd, tmp = make_temp(self.out.resolve(), ".part")
        except OSError as exc:
            raise no_space_error(exc, self.out) or exc from None
        os.close(fd)
        self.tmp = Path(tmp)
        self._audio_in = None
        try:
            self.container = av.open(str(self.tmp), "w", format=self.format)
            self.stream = self._video_stream(crf_for(quality, self.codec))
            self.audio = self._audio_feed(start or 0.0, end) if audio and info.audio_codec else None
        except BaseException:
            self._cleanup()
            raise
        self.frames = 0

    def _video_stream(self, crf: int):
        w, h = self.size
        sw, sh = (h, w) if self.info.rotation in (90, 270) else (w, h)
        s = self.container.add_stream(ENCODERS[self.codec], rate=self.info.fps)
        s.width, s.height = sw, sh
        # yuv420p halves the chroma: libx264 refuses odd sizes there, so odd sizes keep
        # their exact size in yuv444p (plays in FFmpeg players, not in every browser)
        odd = sw % 2 or sh % 2
        s.pix_fmt = "yuv444p" if odd and self.codec == "h264" else "yuv420p"
        s.time_base = self.info.time_base
        s.codec_context.time_base = self.info.time_base
        options = {"crf": str(crf)}
        if self.codec == "h264":
            options["preset"] = X264_PRESET
        else:
            options.update({"b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"})
        s.options = options
        s.thread_type = "AUTO"
        if self.info.rotation:
            s.set_display_rotation(self.info.rotation)
        return s

    def _audio_feed(self, start: float, end: float | None) -> _AudioFeed:
        self._audio_in = _open_input(self.info.path, f"video {self.info.path}")
        a_in = self._audio_in.streams.audio[0]
        copy = a_in.codec_context.name in AUDIO_COPY[self.format]
        if copy:
            a_out = self.container.add_stream_from_template(a_in)
        else:
            a_out = self.container.add_stream(AUDIO_REENCODE.get(self.format, "aac"),
                                              rate=48000 if self.format == "webm" else a_in.codec_context.sample_rate)
            a_out.layout = a_in.codec_context.layout.name if a_in.codec_context.layout else "stereo"
        return _AudioFeed(self._audio_in, a_in, a_out, copy, self.info.start_time, start, end)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one display-oriented frame at `pts` (the input's time base, from 0)."""
        av = _av()
        if rgb.shape[1::-1] != tuple(self.size):
            raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the writer was opened for {self.size}")
        frame = av.VideoFrame.from_ndarray(_stored(np.ascontiguousarray(rgb), self.info.rotation), format="rgb24")
        frame.pts = pts
        frame.time_base = self.info.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        if self.audio is not None:
            self.audio.feed(self.container, float(pts * self.info.time_base))

    def close(self) -> Path:
        """Flush the encoders, finish the audio and rename the file into place."""
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            self.audio.feed(self.container, None)
        self.container.close()
        self.container = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None
        if self.out.exists() and not self.overwrite:  # appeared while we worked
            self._cleanup()
            raise OutputExistsError(self.out)
        os.chmod(self.tmp, file_mode())  # mkstemp's 0o600 would stay on the output
        os.replace(self.tmp, self.out)
        return self.out

    def _cleanup(self) -> None:
        for c in (getattr(self, "container", None), self._audio_in):
            if c is not None:
                try:
                    c.close()
                except Exception:  # closing a half-written file after a failure: nothing to save
                    pass
        self.container = self._audio_in = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cleanup()
            if isinstance(exc, OSError) and no_space_error(exc, self.out):
                raise no_space_error(exc, self.out) from None


def keyframe_times(path: str | os.PathLike, name: str | None = None) -> list[float]:
    """Seconds (from the clip's time 0) of the video's keyframes, read from the packets
    without decoding: where a clip can be cut into chunks that decode on their own."""
    container = _open_input(path, name or f"video {path}")
    try:
        vs = container.streams.video[0]
        # time 0 on the video's clock, rounded to its tick as VideoReader rounds it: a
        # keyframe's time is then exactly the time a reader gives that frame, and chunks cut
        # there neither share nor drop it
        origin = int(round((container.start_time or 0) / 1_000_000 / vs.time_base))
        return sorted(float((p.pts - origin) * vs.time_base) for p in container.demux(vs)
                      if p.is_keyframe and p.pts is not None)
    finally:
        container.close()


_END = object()


def prefetch(frames, depth: int = 4) -> Iterator:
    """The items of `frames`, decoded ahead by one background thread (FFmpeg releases the
    GIL while it decodes, so decoding overlaps fusion). Errors are raised where the item
    would have been; stopping early stops the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        iterator = iter(frames)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="facefuse-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundEncoder:
    """`VideoWriter.write` on one background thread (the encoder also releases the GIL), fed
    through a short queue; `close()` waits for it and raises what it raised. On an error
    in the caller, `stop()` ends the thread before the writer is cleaned up."""

    def __init__(self, writer: VideoWriter, depth: int = 4):
        import queue
        import threading

        self.writer = writer
        self.queue: queue.Queue = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="facefuse-encode", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self.writer.write(*item)
                except BaseException as exc:  # raised by close() or the next write()
                    self.error = exc

    def write(self, rgb: np.ndarray, pts: int) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((rgb, pts))

    def finish(self) -> None:
        """Wait until every frame queued is encoded."""
        self.queue.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self.thread.is_alive():
            self.error = self.error or RuntimeError("stopped")
            self.queue.put(_END)
            self.thread.join()

    def __enter__(self) -> "BackgroundEncoder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.stop()
