"""Pure image helpers shared by io, detect, blend and pipeline: output size and resizing.

Arrays in, arrays out (RGB or single-channel, any dtype OpenCV resizes); no state.
"""

from __future__ import annotations

import cv2
import numpy as np

LUMA = np.float32([0.299, 0.587, 0.114])  # RGB -> luma weights (ITU-R BT.601)


def scale_for(size: float, work_size: float) -> float:
    """The factor (at most 1) that brings something `size` px large to `work_size` px: the
    reduced "work" scale a step runs at, so its cost does not grow with the resolution."""
    return min(1.0, work_size / max(size, 1.0))


def output_size(width: int, height: int, resolution) -> tuple[int, int]:
    """(width, height) of the output: the original, or scaled so the long side is `resolution`."""
    if resolution == "original":
        return width, height
    scale = int(resolution) / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize with the interpolation that suits the factor, at the lowest cost.

    Enlarging: bicubic. Shrinking by less than 2x: bilinear (within 59 dB of area
    averaging there, at a tenth of its cost on a 4096-px frame). Shrinking more: halve with
    pyrDown (a fast Gaussian pyramid, no aliasing) until within 2x, then area-average.
    """
    w, h = size
    if (w, h) == (image.shape[1], image.shape[0]):
        return image
    if w > image.shape[1] or h > image.shape[0]:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
    while image.shape[1] >= 2 * w * 2 and image.shape[0] >= 2 * h * 2:
        image = cv2.pyrDown(image)
    if image.shape[1] >= 2 * w:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def shrink_by(img: np.ndarray, scale: float) -> np.ndarray:
    """Area-averaged copy at `scale` (< 1), at least 2 px a side; the image itself at >= 1."""
    if scale >= 1.0:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(2, round(w * scale)), max(2, round(h * scale))), interpolation=cv2.INTER_AREA)


def enlarge_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to `shape` (rows, cols): the way back from a reduced work scale."""
    if img.shape[:2] == shape:
        return img
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def shrink_to_side(rgb: np.ndarray, side: int) -> np.ndarray:
    """A preview copy whose long side is at most `side` (area-averaged)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    s = side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
