"""The target's light on the source's face, and the target's crispness.

The source's low frequencies (tone, light, shading) are replaced by the target's, its
colourfulness matched, and its finest detail scaled to the target's energy. The low
frequencies are computed at the work scale and upsampled, so this costs the same at any
resolution. Over a video the low frequencies are carried from frame to frame (LightField).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ... import mesh
from ...imaging import LUMA, masked_blur
from . import tuning as tn
from .workscale import WorkScale


def chroma_spread(img: np.ndarray, mask: np.ndarray) -> float:
    """RMS distance of the pixels' colour from grey, inside mask."""
    px = img[mask > 0.5]
    chroma = px - (px @ LUMA)[:, None]
    return float(np.sqrt((chroma ** 2).sum(1).mean())) if len(px) else 0.0


@dataclass(frozen=True)
class LightField:
    """The light transfer's low frequencies of one face at work scale, with the face's
    rigid points there: what a video hands from one frame's fusion to the next, so the
    light is smoothed over time while the engine stays stateless (state in, state out)."""

    low_src: np.ndarray
    low_tgt: np.ndarray
    mask: np.ndarray
    anchor: np.ndarray  # mesh.RIGID landmarks, work-scale pixels


def _carried_over(previous: LightField, anchor: np.ndarray, size: tuple[int, int], low_src: np.ndarray,
                  low_tgt: np.ndarray, mask: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """This frame's low frequencies mixed with the previous frame's, moved onto this
    frame's face (a similarity on the rigid points): `keep` of the previous where it covered
    the face, so landmark jitter and mask edges do not make the light flicker."""
    m = mesh.similarity(previous.anchor, anchor).astype(np.float32)

    def warp(x):
        return cv2.warpAffine(x, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    weight = (keep * np.clip(warp(previous.mask), 0.0, 1.0) * (mask > 0.05))[:, :, None]
    return (low_src + weight * (warp(previous.low_src) - low_src),
            low_tgt + weight * (warp(previous.low_tgt) - low_tgt))


def transfer_light(src: np.ndarray, tgt: np.ndarray, mask: np.ndarray, eye_dist: float,
                   eyes: tuple[np.ndarray, tuple[slice, slice]] | None = None,
                   tuning: tn.Light = tn.DEFAULT_TUNING.light) -> np.ndarray:
    """`transfer_light_over_time` for one image, without a previous frame."""
    return transfer_light_over_time(src, tgt, mask, eye_dist, eyes, tuning=tuning)[0]


def transfer_light_over_time(src: np.ndarray, tgt: np.ndarray, mask: np.ndarray, eye_dist: float,
                             eyes: tuple[np.ndarray, tuple[slice, slice]] | None = None,
                             anchor: np.ndarray | None = None, previous: LightField | None = None,
                             keep: float = 0.0, work: WorkScale | None = None,
                             tuning: tn.Light = tn.DEFAULT_TUNING.light) -> tuple[np.ndarray, LightField | None]:
    """src with its low frequencies replaced by tgt's, inside mask (float32 RGB 0..255),
    and its colourfulness matched to tgt's (a grey or sepia target stays grey or sepia).

    The source's detail rides on the target's low frequencies with its contrast scaled by
    the square root of the light ratio: a face moved into brighter light gets brighter
    without its highlights blowing out (a plain gain would), one moved into shadow keeps
    some relief.

    `eyes` (a 0..1 mask and the (rows, cols) box it covers, see eyes.eyes_mask): there the
    source's own colour is kept and only scaled by the square root of the change in the
    light's strength. Carried as detail over the target's skin tone, an iris takes the
    difference between the two skin tones: brown eyes turned blue-grey, blue ones brown.

    Over time (a video): `anchor` (the face's mesh.RIGID points, ROI pixels) and the
    `previous` frame's LightField mix `keep` of the previous low frequencies into this
    frame's; the LightField of this frame is returned for the next (None without anchor).
    The detail's colour (beyond its lightness) shrinks where the source's skin is more
    colourful than the target's: carried in full, a dark brow from brown skin turned
    blue-grey on pale skin (fr_obama3.jpg on fnp_kate_siegel.jpg, Lab b* -4 and -7).

    `work`: the ROI's WorkScale, if the caller shrank src or tgt already.
    """
    h, w = mask.shape
    work = work or WorkScale((h, w), eye_dist)
    (sw, sh), scale, up = work.size, work.scale, work.up
    ms, ss, ts = work.small(mask), work.small(src), work.small(tgt)
    sigma = max(1.0, tuning.sigma * eye_dist * scale)
    low_src, low_tgt = masked_blur(ss, ms, sigma), masked_blur(ts, ms, sigma)
    field = None
    if anchor is not None:
        anchor = work.on_grid(anchor)
        if previous is not None and keep > 0:
            low_src, low_tgt = _carried_over(previous, anchor, (sw, sh), low_src, low_tgt, ms, keep)
        field = LightField(low_src=low_src, low_tgt=low_tgt, mask=ms, anchor=anchor)
    lo, hi = tuning.ratio_range
    floor = tuning.floor
    contrast = np.sqrt(np.clip((low_tgt + floor) / (low_src + floor), lo, hi))
    lit_small = low_tgt + (ss - low_src) * contrast
    tgt_colour = chroma_spread(ts, ms)
    chroma_keep = float(np.clip(tgt_colour / max(chroma_spread(lit_small, ms), 1e-3), 0.0, tuning.chroma_max))
    detail = (src - up(low_src)) * up(contrast)
    # a source more colourful than the target (strongly coloured skin onto pale skin): the
    # detail's colour beyond its lightness (a pixel's colour minus its skin's) shrinks by the
    # ratio of the two skins' colourfulness (at most to the light ratio's lower bound), so a
    # near-grey brow or nostril, far less red and yellow than brown skin, does not cross grey
    # into blue on pale skin. It never grows: a grey-graded source's detail grown threefold
    # painted blue lids and orange cheeks on a warm face
    shrink = max(lo, min(1.0, tgt_colour / max(chroma_spread(ss, ms), 1e-3)))
    if shrink < 1.0:
        detail -= (1.0 - shrink) * (detail - (detail @ LUMA)[:, :, None])
    lit = up(low_tgt) + detail
    if eyes is not None and eyes[0].size:
        # the eyes are not skin: their colour stays the source's, scaled by the square root
        # of the change in light (as the detail's contrast is: the skin's ratio mixes the
        # light with the two skin tones, and in full made dark eyes glow on a pale face)
        e, (rows, cols) = eyes[0][:, :, None], eyes[1]
        gain = up(np.sqrt(np.clip((low_tgt @ LUMA + floor) / (low_src @ LUMA + floor), lo, hi)))[rows, cols, None]
        lit[rows, cols] = lit[rows, cols] * (1.0 - e) + np.clip(src[rows, cols] * gain, 0.0, 255.0) * e
    if abs(chroma_keep - 1.0) > tuning.chroma_tolerance:
        luma = (lit @ LUMA)[:, :, None]
        lit = luma + (lit - luma) * chroma_keep
    return lit, field


def filled_tone(lit: np.ndarray, base: np.ndarray, learned: np.ndarray, filled: np.ndarray, skin: np.ndarray,
                eye_dist: float, work: WorkScale, tuning: tn.Light = tn.DEFAULT_TUNING.light
                ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Where the target's skin fills for the source's own (`filled`, 0..1: a strand, a hand,
    a patch or a brim on the source), the tone the fused face has around it: the low
    frequencies of lit - base (float32 RGB, ROI size) learned where the light is (`learned`,
    the mask transfer_light_over_time got: its shrunk copy is made once), at the light
    transfer's own width, times `filled` on `skin` (a kept target eye keeps its colour); as
    (the box round `filled`, the tone there: nothing else is multiplied), or None where
    nothing is filled. Added to the target's skin there, the fill keeps the
    target's texture in the fused face's tone. Without it the fill kept the target's own
    tone, and where the source's skin beside a lock was darker (the lock's shadow,
    deepface_img3.jpg on fnp_paul_rudd.jpg: 193 against the target cheek's 220) the lock's
    edge showed as a line down the cheek."""
    x, y, w, h = cv2.boundingRect((filled > 1e-3).astype(np.uint8))
    if w == 0 or h == 0:
        return None
    sigma = max(1.0, tuning.sigma * eye_dist * work.scale)
    tone = work.up(masked_blur(work.small(lit) - work.small(base), work.small(learned), sigma))
    box = (slice(y, y + h), slice(x, x + w))
    return box, (filled[box] * skin[box])[:, :, None] * tone[box]


def borrow_fine_skin_texture(img: np.ndarray, ref: np.ndarray, skin: np.ndarray, upscale: float,
                             tuning: tn.Light = tn.DEFAULT_TUNING.light) -> np.ndarray:
    """Where the source face is enlarged (a small source on a large target face) it has no
    detail finer than the enlargement; on skin, take that band from the target (pores,
    grain), which carries no identity at these scales but makes the face as crisp as the
    photo around it."""
    if upscale <= tuning.borrow_upscale:
        return img
    per_unit, most = tuning.borrow_sigma
    sigma = min(per_unit * upscale, most)

    def band(x):
        return x - cv2.GaussianBlur(x, (0, 0), sigma)

    weight = cv2.GaussianBlur(skin, (0, 0), sigma)[:, :, None]
    return img + weight * (band(ref) - band(img))


def match_detail(img: np.ndarray, ref: np.ndarray, interior: np.ndarray,
                 tuning: tn.Light = tn.DEFAULT_TUNING.light) -> np.ndarray:
    """Scale img's finest detail (what a 1-px Gaussian removes) so that in the face's
    interior it has the energy of ref's: a face resampled from a smaller or softer photo
    gets the target's crispness back, one from a sharper photo is not noisier than its
    surroundings. (The interior only: near the outline the source has hair and edges.)"""
    m = interior.astype(np.uint8)
    if int(cv2.countNonZero(m)) < 64:
        return img
    blur_img = cv2.GaussianBlur(img, (0, 0), 1.0)
    detail = cv2.subtract(img, blur_img)
    lo, hi = tuning.detail_gain
    gain = float(np.clip(_detail_rms(ref, m) / max(_detail_rms(img, m), 1e-3), lo, hi))
    return cv2.scaleAdd(detail, gain, blur_img)


def _detail_rms(img: np.ndarray, mask: np.ndarray) -> float:
    """RMS of the finest detail's luma inside mask (the blur is linear: taken on the luma)."""
    luma = cv2.transform(img, LUMA[None, :])
    mean, std = cv2.meanStdDev(cv2.subtract(luma, cv2.GaussianBlur(luma, (0, 0), 1.0)), mask=mask)
    return float(np.hypot(mean[0, 0], std[0, 0]))
