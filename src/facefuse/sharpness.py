"""The frame's own blur for a fused face: estimate it from the target face, apply it to what
fusion changed (pure functions, float32 RGB 0..255 arrays in and out).

A fused face is drawn from a source photo and stays crisp where the target frame is soft,
out of focus or motion-blurred, so it looks pasted on (and its re-warped detail flickers in
video). One mechanism covers the three: a kernel from one small family, a line of length L
along an angle (motion) convolved with an isotropic Gaussian of sigma (focus, softness),
chosen so that inside the face the result has the target's detail energy per direction.

The measure is the energy of the second directional derivative (what the judge's Laplacian
variance sums over two directions): motion along u removes it along u and leaves it across,
so the direction where the target has least of it relative to the fused face is the motion,
the direction across it sets sigma, and the direction along it then sets L; no blur takes
the face below the frame's detail in all (the two directions' sum). Both are found by
bisection, so they vary continuously with the frame (no steps that flicker in video).
A fused face no sharper than the target in any direction is returned as it is: on a sharp
target the step changes nothing (this engine's faces are softer than a sharp photo).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .faces import FusedFace
from .masks import feather

MAX_SIGMA = 0.03  # the largest Gaussian sigma, share of the face size (a 200-px face: 6 px): beyond it no detail is left to match
MAX_LENGTH = 0.12  # the longest motion line, share of the face size (a 200-px face: 24 px)
STEPS = 6  # bisection steps per parameter: the bounds / 64 (sigma to 0.1 px, the line to 0.5 px on a 300-px face)
REACHABLE = 1.1  # the least goal, times the base's own energy: the last 10 % above it take kernels without bound
INTERIOR = 0.95  # alpha above which a pixel is the face's interior, where energies are measured
MIN_INTERIOR = 256  # pixels: a smaller interior measures nothing reliably (the face is left as it is)
TURNS = 3  # rounds of (sigma, line): on a 15-px vertical motion of a test face the third moved sigma by 0.15 px and the line by 1.6 px, a fourth about as much again (slow to settle; each round costs)
ANGLES = 16  # directions tried for the motion (every 11.25 degrees)
# cells per cycle / px of the grid the spectrum is summed on: the finest kernel ripple (a
# line of 0.12 face sizes on a 640-px face, 77 px: a period of 0.013 cycles / px) spans 1.7 cells
SPECTRUM_BINS = 128
LUMA = np.float32([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Blur:
    """A blur kernel of the family: a line of `length` px along `angle` (radians, image x to
    y) convolved with a Gaussian of `sigma` px. Blur() is the identity."""

    sigma: float = 0.0
    length: float = 0.0
    angle: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.sigma <= 0.0 and self.length <= 0.0


def line_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line of `length` px along `angle`, anti-aliased by bilinear splatting of
    points every quarter pixel, so it grows continuously with the length (1x1 at 0)."""
    radius = int(np.ceil(length / 2.0)) + 1
    size = 2 * radius + 1
    k = np.zeros((size, size), np.float32)
    t = np.linspace(-length / 2.0, length / 2.0, max(2, int(np.ceil(length * 4)) + 1))
    xs, ys = radius + t * np.cos(angle), radius + t * np.sin(angle)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = (xs - x0).astype(np.float32), (ys - y0).astype(np.float32)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), w)
    return k / k.sum()


def blurred(img: np.ndarray, blur: Blur) -> np.ndarray:
    """img convolved with the blur's kernel (edges reflected)."""
    out = img
    if blur.length > 0.0:
        out = cv2.filter2D(out, -1, line_kernel(blur.length, blur.angle), borderType=cv2.BORDER_REFLECT)
    if blur.sigma > 0.0:
        out = cv2.GaussianBlur(out, (0, 0), blur.sigma, borderType=cv2.BORDER_REFLECT)
    return out


# second differences as the judge's Laplacian takes them (no smoothing), rows are y
D_XX = np.float32([[0, 0, 0], [1, -2, 1], [0, 0, 0]])
D_YY = D_XX.T.copy()
D_XY = np.float32([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]) / 4


def hessian(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The second derivatives xx, yy, xy of a float32 image."""
    return tuple(cv2.filter2D(luma, -1, k, borderType=cv2.BORDER_REFLECT) for k in (D_XX, D_YY, D_XY))


def along(h: tuple[np.ndarray, np.ndarray, np.ndarray], angle: float) -> np.ndarray:
    """The second derivative along `angle` (radians): c^2 xx + s^2 yy + 2cs xy."""
    c, s = np.cos(angle), np.sin(angle)
    return (c * c) * h[0] + (s * s) * h[1] + (2 * c * s) * h[2]


def hessian_moments(h: tuple[np.ndarray, np.ndarray, np.ndarray], interior: np.ndarray) -> np.ndarray:
    """The six means inside `interior` of products of the second derivatives (xx, yy, xy),
    from which the energy of the second derivative along any direction follows."""
    xx, yy, xy = (x[interior].astype(np.float64) for x in h)
    return np.float64([(a * b).sum() for a, b in ((xx, xx), (yy, yy), (xy, xy), (xx, yy), (xx, xy), (yy, xy))]) / max(xx.size, 1)


def directional_energy(moments: np.ndarray, angle) -> np.ndarray:
    """Mean squared second derivative along `angle` (radians; scalar or array), from the
    moments: (c^2 xx + s^2 yy + 2cs xy)^2 expanded."""
    c, s = np.cos(angle), np.sin(angle)
    a, b, e = c * c, s * s, 2 * c * s
    xx, yy, xy, xx_yy, xx_xy, yy_xy = moments
    return a * a * xx + b * b * yy + e * e * xy + 2 * a * b * xx_yy + 2 * a * e * xx_xy + 2 * b * e * yy_xy


class _Spectrum:
    """The energy inside the interior of the second derivative along one direction of
    base + k * change, for any kernel k of the family, without filtering the image again:
    by Parseval it is the sum over frequencies of |B + K C|^2 (B, C: the spectra of the
    windowed derivatives, K: the kernel's transfer function, real and even for the family),
    so each candidate costs one pass over the spectrum's products."""

    def __init__(self, d_base: np.ndarray, d_change: np.ndarray, interior: np.ndarray, margin: int):
        h, w = d_base.shape
        size = (cv2.getOptimalDFTSize(h + margin), cv2.getOptimalDFTSize(w + margin))  # no wrap-around
        spectra = [np.fft.rfft2(np.where(interior, x, 0.0).astype(np.float32), s=size) for x in (d_base, d_change)]
        b, c = spectra
        fold = np.full(b.shape[1], 2.0, np.float32)  # the half spectrum stands for both halves
        fold[0] = 1.0
        if size[1] % 2 == 0:
            fold[-1] = 1.0
        norm = fold / (size[0] * size[1] * max(int(interior.sum()), 1))
        self.bb = float(((b.real ** 2 + b.imag ** 2) * norm).sum())
        fy = np.broadcast_to(np.fft.fftfreq(size[0])[:, None], b.shape).ravel()
        fx = np.broadcast_to(np.fft.rfftfreq(size[1])[None, :], b.shape).ravel()
        # the products summed per cell of a SPECTRUM_BINS grid (cycles / px), the kernel taken
        # at each cell's mean frequency: each candidate then costs a few thousand products
        cell = np.round((fy + 0.5) * SPECTRUM_BINS).astype(np.int64) * (SPECTRUM_BINS + 1) + np.round(fx * SPECTRUM_BINS).astype(np.int64)
        cells = (SPECTRUM_BINS + 1) ** 2
        count = np.bincount(cell, minlength=cells)
        reached = np.flatnonzero(count)  # only the cells the spectrum reaches
        count = count[reached]
        sums = lambda values: np.bincount(cell, values.ravel(), cells)[reached].astype(np.float32)
        self.bc = sums((b.real * c.real + b.imag * c.imag) * norm)
        self.cc = sums((c.real ** 2 + c.imag ** 2) * norm)
        self.fx, self.fy = sums(fx) / count, sums(fy) / count
        self.f2 = self.fx ** 2 + self.fy ** 2
        self._along: dict[float, np.ndarray] = {}

    def energy(self, blur: Blur) -> float:
        k = np.ones_like(self.cc)
        if blur.sigma > 0:
            k *= np.exp(np.float32(-2 * np.pi ** 2 * blur.sigma ** 2) * self.f2)
        if blur.length > 0:
            if blur.angle not in self._along:
                self._along[blur.angle] = self.fx * np.float32(np.cos(blur.angle)) + self.fy * np.float32(np.sin(blur.angle))
            k *= np.sinc(np.float32(blur.length) * self._along[blur.angle])
        return self.bb + float((k * (2 * self.bc + k * self.cc)).sum())


def estimate_blur(image: np.ndarray, target: np.ndarray, base: np.ndarray, interior: np.ndarray,
                  face_size: float) -> Blur:
    """The kernel that, applied to what fusion changed (image - base), gives the fused face
    the target's second-derivative energy inside `interior`, across the direction of motion
    and along it; Blur() when the fused face is no sharper than the target in any direction.

    `target` is the frame's own face (ROI pixels, unwarped: what the result is compared
    with), `base` what the fused face is blended onto; all three float32 RGB of one shape."""
    if int(interior.sum()) < MIN_INTERIOR:
        return Blur()
    ys, xs = np.nonzero(interior)
    crop = np.s_[ys.min():ys.max() + 2, xs.min():xs.max() + 2]
    image, target, base, interior = image[crop], target[crop], base[crop], interior[crop]
    lumas = [cv2.transform(x, LUMA[None, :]) for x in (image, target, base)]
    h_img, h_tgt, h_base = (hessian(x) for x in lumas)
    want = hessian_moments(h_tgt, interior)
    angles = np.arange(ANGLES) * (np.pi / ANGLES)
    ratio = directional_energy(hessian_moments(h_img, interior), angles) / np.maximum(directional_energy(want, angles), 1e-6)
    if ratio.max() <= 1.0:
        return Blur()
    motion = float(angles[np.argmax(ratio)])  # motion removed most of the frame's detail along it
    across = motion + np.pi / 2
    h_change = tuple(a - b for a, b in zip(h_img, h_base))
    margin = int(np.ceil(MAX_LENGTH * face_size / 2 + 3 * MAX_SIGMA * face_size))
    spectra = {a: _Spectrum(along(h_base, a), along(h_change, a), interior, margin) for a in (motion, across)}
    # no blur takes the result below the base's own energy (the target warped, its finest
    # detail softened by the resampling): a goal under it would lengthen the kernel to its bound
    goal = {a: max(float(directional_energy(want, a)), REACHABLE * spectra[a].bb) for a in (motion, across)}
    # each blur stops where its direction matches, or where the two directions' sum (the
    # judge's Laplacian) reaches the frame's: a fused face is softer than a sharp frame to
    # begin with (resampling), and matching the motion's direction alone left it softer
    # than the frame overall
    total = goal[motion] + goal[across]

    def too_sharp(direction: float, blur: Blur) -> bool:
        energy = spectra[direction].energy(blur)
        if energy <= goal[direction]:
            return False
        return energy + spectra[across if direction == motion else motion].energy(blur) > total

    # the isotropic Gaussian first, matched across the motion, so that a soft frame is not
    # taken for a motion along whatever direction the content differs most in; then the line
    # for what is left along it. A line blurs across itself too (texture is not aligned), so
    # the first sigma also holds some of the motion: by turns, sigma given the line and the
    # line given sigma, the pair settles where both directions match
    sigma = length = 0.0
    for _ in range(TURNS):
        sigma = _least(lambda v: too_sharp(across, Blur(v, length, motion)), MAX_SIGMA * face_size)
        length = _least(lambda v: too_sharp(motion, Blur(sigma, v, motion)), MAX_LENGTH * face_size)
    return Blur(sigma, length, motion)


def _least(too_sharp, upper: float) -> float:
    """The least value in [0, upper] at which too_sharp turns false (bisection; 0 when it is
    false at 0, `upper` when it stays true): too_sharp falls as the blur grows."""
    if not too_sharp(0.0):
        return 0.0
    lo, hi = 0.0, upper
    for _ in range(STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if too_sharp(mid) else (lo, mid)
    return hi


def apply_blur(image: np.ndarray, base: np.ndarray, mask: np.ndarray, blur: Blur) -> np.ndarray:
    """image with what fusion changed (image - base, inside the engine's mask) blurred:
    where the fused face is the target's own (kept eyes, the base), nothing changes."""
    if blur.is_identity:
        return image
    change = (image - base) * mask[:, :, None]
    return base + blurred(change, blur)


def take_frame_blur(fused: FusedFace, target: np.ndarray) -> FusedFace:
    """The fused face with the blur of the frame it goes into (`target`: the frame's ROI
    as the engine got it, RGB); the same object when the face is no sharper than the frame."""
    if target.shape[:2] != fused.image.shape[:2]:
        return fused
    alpha = fused.alpha if fused.alpha is not None else feather(fused.mask, fused.face_size)
    blur = estimate_blur(fused.image, np.asarray(target, np.float32), fused.base, alpha > INTERIOR, fused.face_size)
    if blur.is_identity:
        return fused
    return replace(fused, image=apply_blur(fused.image, fused.base, fused.mask, blur))
