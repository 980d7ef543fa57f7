"""Pure image helpers shared by io, detect, blend and pipeline: output size and resizing.

Arrays in, arrays out (RGB or single-channel, any dtype OpenCV resizes); no state.
"""

from __future__ import annotations

import cv2
import numpy as np

LUMA = np.float32([0.299, 0.587, 0.114])  # RGB -> luma weights (ITU-R BT.601)
# px: the least sigma a wide Gaussian blur runs at on its shrunk copy (wide_blur). A field
# that smooth is resampled linearly within 0.15 levels on average of the direct blur, and a
# blur of sigma s then costs (2.5 / s)^2 of the direct one (sigma 11: 0.07 against 0.63 ms)
SHRUNK_SIGMA = 2.5


def scale_for(size: float, work_size: float) -> float:
    """The factor (at most 1) that brings something `size` px large to `work_size` px: the
    reduced "work" scale a step runs at, so its cost does not grow with the resolution."""
    return min(1.0, work_size / max(size, 1.0))


def wide_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur of `sigma` px; one at least twice SHRUNK_SIGMA runs on a copy shrunk
    by the whole factor f that keeps it that wide there (area averaging: a box of f px, whose
    variance (f^2 - 1) / 12 is taken off the blur) and is enlarged back bilinearly. The cost
    of a direct blur grows with its width; this one's does not."""
    f = int(sigma // SHRUNK_SIGMA)
    if f < 2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(2, -(-w // f)), max(2, -(-h // f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), np.sqrt(sigma ** 2 - (f * f - 1) / 12.0) / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def masked_blur(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of img (H x W or H x W x C, float) restricted to mask (H x W, 0..1): a
    normalised convolution, each pixel the mask-weighted mean around it (wide_blur)."""
    m = mask if img.ndim == 2 else mask[:, :, None]
    den = np.maximum(wide_blur(mask, sigma), 1e-4)
    return wide_blur(img * m, sigma) / (den if img.ndim == 2 else den[:, :, None])


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
