"""Numbered face boxes drawn on an image: the preview `detect --draw` writes and the
WebUI shows, so a person can pick a face of a group photo by its number."""

from __future__ import annotations

import cv2
import numpy as np

from .faces import Face


def draw_faces(image: np.ndarray, faces: list[Face], max_side: int | None = None) -> np.ndarray:
    """A copy of `image` (optionally shrunk to `max_side`) with box and index of each face."""
    scale = 1.0
    out = image
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        out = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(out).copy()
    thick = max(2, round(max(out.shape[:2]) / 400))
    for i, face in enumerate(faces):
        x0, y0, x1, y1 = (int(round(v * scale)) for v in face.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 255, 0), thick)
        label = str(i)
        fs = max(0.6, (x1 - x0) / 120)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
        ty = max(th + 4, y0 - 4)
        cv2.rectangle(out, (x0, ty - th - 4), (x0 + tw + 6, ty + 4), (0, 255, 0), -1)
        cv2.putText(out, label, (x0 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), thick, cv2.LINE_AA)
    return out
