"""Pictures for people: numbered face boxes (the preview `detect --draw` writes and the
WebUI shows, so a person can pick a face of a group photo by its number), and the
labelled before / after close-up of the fused faces."""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from .faces import Face

PICKED, NOT_PICKED = (0, 230, 0), (170, 170, 170)
Box = Sequence[float]  # x0, y0, x1, y1


def draw_faces(image: np.ndarray, faces: list[Face], max_side: int | None = None,
               picked: Iterable[int] | None = None) -> np.ndarray:
    """A copy of `image` (optionally shrunk to `max_side`) with box and index of each face;
    the faces in `picked` (default: all) green, the others grey."""
    scale = 1.0
    out = image
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        out = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return draw_boxes(out, [[v * scale for v in f.box] for f in faces], picked)


def draw_boxes(image: np.ndarray, boxes: list[Box], picked: Iterable[int] | None = None) -> np.ndarray:
    """Boxes with their index as a label readable at a glance: the label's height is a
    thirtieth of the image's long side (at least the face's), whatever the face's size."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    long_side = max(height, width)
    thick = max(2, round(long_side / 400))
    chosen = set(range(len(boxes))) if picked is None else set(picked)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        colour = PICKED if i in chosen else NOT_PICKED
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        label = str(i)
        fs = max(long_side / 30, (x1 - x0) / 4) / 22  # HERSHEY_SIMPLEX: about 22 px tall at scale 1
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
        # above the box, inside the picture even for a face cut by its edge
        ty = min(max(th + 6, y0 - 6), height - 7)
        tx = min(max(0, x0), width - tw - 8)
        cv2.rectangle(out, (tx, ty - th - 6), (tx + tw + 8, ty + 6), colour, -1)
        cv2.putText(out, label, (tx + 4, ty), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def box_at(boxes: list[Box], x: float, y: float) -> int | None:
    """The index of the smallest box containing (x, y), or None."""
    inside = [(abs((b[2] - b[0]) * (b[3] - b[1])), i) for i, b in enumerate(boxes)
              if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
    return min(inside)[1] if inside else None


def zoom_box(boxes: list[Box], width: int, height: int, margin: float = 0.35) -> tuple[int, int, int, int]:
    """The region around all `boxes`, grown by `margin` of its size, clipped to the frame."""
    if not boxes:
        return 0, 0, width, height
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    pad = margin * max(x1 - x0, y1 - y0)
    return (max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(width, int(np.ceil(x1 + pad))),
            min(height, int(np.ceil(y1 + pad))))


def label_corner(image: np.ndarray, text: str) -> np.ndarray:
    """A copy with `text` on a dark band in the bottom-left corner (e.g. "before", "after";
    the top is where image viewers put their own label and buttons)."""
    out = np.ascontiguousarray(image).copy()
    h = out.shape[0]
    fs = max(0.5, max(out.shape[:2]) / 700)
    thick = max(1, round(fs * 2))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
    cv2.rectangle(out, (0, h - th - 16), (tw + 16, h), (0, 0, 0), -1)
    cv2.putText(out, text, (8, h - 8), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), thick, cv2.LINE_AA)
    return out
