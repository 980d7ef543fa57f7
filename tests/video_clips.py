"""Short test clips made from the photos in tests/data with PyAV: a panning, zooming crop of
a real photo is a real-face clip; two photos back to back make a cut; a sine tone is an
audio track. Small (<= 320 px, about a second) so the video tests stay fast."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def pan_frames(photo: Path, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """n frames of a crop sliding across and zooming into the photo."""
    img = np.asarray(Image.open(photo).convert("RGB"))
    h, w = img.shape[:2]
    frames = []
    for i in range(n):
        zoom = 0.85 - 0.15 * i / max(n - 1, 1)
        ch, cw = int(h * zoom), int(w * zoom)
        x0 = int((w - cw) * (0.35 + 0.3 * i / max(n - 1, 1)))
        y0 = (h - ch) // 2
        frames.append(np.asarray(Image.fromarray(img[y0:y0 + ch, x0:x0 + cw]).resize(size, Image.BILINEAR)))
    return frames


def crossing_frames(left: Image.Image, right: Image.Image, n: int, side: int = 160) -> list[np.ndarray]:
    """n frames of two faces side by side on grey, each in a side x side half: the left one
    shrinks from the full half to half of it while the right one grows the other way, so
    the faces change size order about halfway (`left`, `right`: square crops of a face)."""
    frames = []
    for i in range(n):
        frame = Image.new("RGB", (2 * side, side), (128, 128, 128))
        grow = i / max(n - 1, 1)
        for photo, k, x0 in ((left, 1 - grow, 0), (right, grow, side)):
            s = int(side * (0.5 + 0.5 * k))
            frame.paste(photo.convert("RGB").resize((s, s), Image.BILINEAR), (x0 + (side - s) // 2, (side - s) // 2))
        frames.append(np.asarray(frame))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, audio: bool = False, rotation: int = 0,
               pts: list[int] | None = None, pix_fmt: str = "yuv420p", codec: str = "libx264",
               keyframe_every: int | None = None, audio_start_s: float = 0.0) -> Path:
    """Encode frames (and a 440 Hz tone as long as them, its stream from `audio_start_s`) to
    path; `pts` in 1/fps units."""
    c = av.open(str(path), "w")
    v = c.add_stream(codec, rate=fps)
    v.height, v.width = frames[0].shape[:2]
    v.pix_fmt = pix_fmt
    if keyframe_every:
        v.options = {"g": str(keyframe_every), "keyint_min": str(keyframe_every), "sc_threshold": "0"}
    if rotation:
        v.set_display_rotation(rotation)
    a = _tone_stream(c) if audio else None
    for i, rgb in enumerate(frames):
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        f.pts = i if pts is None else pts[i]
        for p in v.encode(f):
            c.mux(p)
    for p in v.encode():
        c.mux(p)
    if a is not None:
        write_tone(c, a, seconds=len(frames) / fps, start_s=audio_start_s)
    c.close()
    return path


def _tone_stream(container, rate: int = 44100):
    a = container.add_stream("aac", rate=rate)
    a.layout = "mono"
    return a


def write_tone(container, a, seconds: float, start_s: float = 0.0) -> None:
    """The tone, its stream starting at `start_s` seconds: the AAC encoder's priming frame
    there, the tone's samples from the next frame (1024 samples later)."""
    rate = a.rate
    first = int(round(start_s * rate)) + 1024
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for k in range(0, samples.shape[1], 1024):
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + 1024]), format="fltp", layout="mono")
        fr.sample_rate = rate
        fr.pts = first + k
        for p in a.encode(fr):
            container.mux(p)
    for p in a.encode():
        container.mux(p)


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    c = av.open(str(path), "w")
    write_tone(c, _tone_stream(c), seconds)
    c.close()
    return path


def streams(path: Path) -> dict:
    """What a player sees: frames, fps, size, rotation, audio duration, timestamps."""
    c = av.open(str(path))
    v = c.streams.video[0]
    frames = list(c.decode(v))
    out = {"frames": len(frames), "fps": float(v.average_rate), "size": (v.width, v.height),
           "rotation": int(frames[0].rotation or 0) % 360, "pts_s": [float(f.pts * v.time_base) for f in frames]}
    c.close()
    c = av.open(str(path))
    out["audio_s"] = float(c.streams.audio[0].duration * c.streams.audio[0].time_base) if c.streams.audio else None
    c.close()
    return out


def decoded(path: Path) -> list[np.ndarray]:
    c = av.open(str(path))
    frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    c.close()
    return frames


def faststart(src: Path, dst: Path) -> Path:
    """The clip remuxed with its index (moov) first, as streaming files are: cutting its
    end then loses frames, not the index."""
    i = av.open(str(src))
    o = av.open(str(dst), "w", options={"movflags": "faststart"})
    s = o.add_stream_from_template(i.streams.video[0])
    for packet in i.demux(i.streams.video[0]):
        if packet.size:
            packet.stream = s
            o.mux(packet)
    o.close()
    i.close()
    return dst


def moving_frames(photo: Path, n: int, size: tuple[int, int], fps: float = 25.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n frames of a camera moving over a photo, as a moving head looks: a pan across a
    tenth of the photo and back, a zoom from 0.8 to 0.65 of its width, a turn from -8 to +8
    degrees, each frame rendered with motion blur (the average of 4 renderings over half the
    frame time). Also each frame's 2 x 3 matrix from photo to frame pixels at the frame's
    time (where a point of the photo truly is)."""
    import cv2

    img = np.asarray(Image.open(photo).convert("RGB"))
    h, w = img.shape[:2]

    def matrix(t: float) -> np.ndarray:
        s = n / fps  # the clip's length in seconds
        u = t / s
        centre = (w * (0.5 + 0.05 * np.sin(2 * np.pi * u)), h * (0.5 + 0.03 * np.sin(4 * np.pi * u)))
        m = cv2.getRotationMatrix2D(centre, -8.0 + 16.0 * u, size[0] / (w * (0.8 - 0.15 * u)))
        m[:, 2] += (size[0] / 2 - centre[0], size[1] / 2 - centre[1])
        return m

    frames, matrices = [], []
    for i in range(n):
        t = i / fps
        acc = np.zeros((size[1], size[0], 3), np.float32)
        for k in range(4):
            acc += cv2.warpAffine(img, matrix(t + (k / 3 - 0.5) * 0.5 / fps), size, flags=cv2.INTER_AREA,
                                  borderMode=cv2.BORDER_REFLECT_101)
        frames.append(np.clip(acc / 4 + 0.5, 0, 255).astype(np.uint8))
        matrices.append(matrix(t))
    return frames, matrices
