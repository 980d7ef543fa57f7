"""What covers either face: hair over the forehead, a hand, a hat brim, a strand across a
source face, the background a profile's silhouette brings in.

Skin that does not look like the face's own skin is an occluder. The skin's colour is
learned per face from what is rarely covered (cheeks and nose), so no fixed colour decides.
Everything here runs at the work scale (workscale.py) and returns 0..1 masks at ROI size.
"""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from ...imaging import masked_blur
from ...masks import face_region_mask
from . import strands as st
from .tuning import ClassicalTuning, Occlusion
from .workscale import WorkScale, beside_the_eyes, eye_band


def skin_agreement(lab: np.ndarray, reference: np.ndarray, lightness_weight: float, tuning: Occlusion,
                   lightness_spread: float | None = None) -> np.ndarray:
    """1 where a pixel's colour is like the reference skin, falling to 0 for colours that
    are not (hair, a hand, a frame). `lightness_spread`: at most this spread of L counts
    (cheeks in hard light spread widely, and dark hair then passed for shaded skin)."""
    return skin_agreements(lab, reference, lightness_weight, tuning, (lightness_spread,))[0]


def skin_agreements(lab: np.ndarray, reference: np.ndarray, lightness_weight: float, tuning: Occlusion,
                    lightness_spreads: tuple[float | None, ...]) -> list[np.ndarray]:
    """`skin_agreement` for each of several caps on the lightness spread, the skin's colour
    (median and spread of the reference pixels) learned once."""
    ref = lab[reference > 0.5]
    if len(ref) < 20:
        return [np.ones(lab.shape[:2], np.float32) for _ in lightness_spreads]
    mu, learned = st.robust_centre(ref, np.float32(tuning.skin_spread_floor))
    out = []
    for cap in lightness_spreads:
        spread = learned.copy()
        if cap is not None:
            spread[0] = min(spread[0], cap)
        z = (lab - mu) / spread
        dist = np.sqrt(lightness_weight * z[:, :, 0] ** 2 + z[:, :, 1] ** 2 + z[:, :, 2] ** 2)
        out.append(np.clip((tuning.skin_far - dist) / (tuning.skin_far - tuning.skin_near), 0.0, 1.0).astype(np.float32))
    return out


def unoccluded(src: np.ndarray, tgt: np.ndarray, skin: np.ndarray, lms: np.ndarray, eye_dist: float,
               work: WorkScale, tuning: Occlusion,
               source_agreement: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(paste, trust, the source's agreement): where the source face may be pasted, and
    which skin pixels of both faces are skin to learn light from (weights 0..1); and how
    like its skin the source's pixels are (work scale, (h, w, 2): `skin_agreements` with any
    lightness spread and with the forehead's), which a video's next frames carry instead of
    learning it again (`source_agreement`: carried from an earlier frame; None: learned here).

    The source's hair over its forehead must not come in, and the target's hair there must
    stay; neither face's hair or shadowed edges may bias the light transfer. Above the
    brows, where hair falls, the paste is cut where either face is not skin; below them
    only where the target is covered from outside (`target_occluders`): cutting the
    source's non-skin along the outline too lost identity (judge: 96 % -> 84 % of pairs
    moved), as its own shaded cheeks read as occluders there."""
    sk = work.small(skin)
    _, depth, brow_depth = work.axes(lms)
    forehead = (sk > 0.5) & (depth < brow_depth - tuning.forehead_margin * eye_dist)
    # lightness counts fully on the source (hair is darker or lighter than skin), less on
    # the target, whose own light and shadow must not read as an occluder
    reference = reference_skin(sk, lms, eye_dist, work, tuning)
    tgt_agree, below = skin_and_cover(work.lab(tgt), sk, reference, eye_dist * work.scale, tuning)
    if source_agreement is None:
        source_agreement = np.dstack(skin_agreements(work.lab(src), reference, 1.0, tuning, (None, tuning.forehead_spread)))
    agree, strict = source_agreement[:, :, 0] * tgt_agree, source_agreement[:, :, 1] * tgt_agree
    agree = np.where(forehead, strict, agree)  # the source's bangs (see Occlusion.forehead_spread)
    return work.up_soft(np.where(forehead, agree, below).astype(np.float32)), work.up_soft(agree), source_agreement


def reference_skin(skin: np.ndarray, lms: np.ndarray, eye_dist: float, work: WorkScale, tuning: Occlusion) -> np.ndarray:
    """The part of `skin` (work grid) a face's skin colour is learned on: the cheeks and the
    nose, `reference_depth` eye distances below the eye line, which are rarely covered."""
    return skin * (work.axes(lms)[1] > tuning.reference_depth * eye_dist)


def skin_and_cover(lab: np.ndarray, skin: np.ndarray, reference: np.ndarray, eye_px: float,
                   tuning: Occlusion) -> tuple[np.ndarray, np.ndarray]:
    """(how like its skin each pixel of a face is, where nothing covers it from outside),
    both 0..1 on the work grid (`eye_px`: the eye distance there): `skin_agreement` learned
    on `reference` (`reference_skin`), with the target's weight on lightness (its own
    shading is no cover), and `target_occluders` on it."""
    agree = skin_agreement(lab, reference, tuning.target_lightness, tuning)
    return agree, target_occluders(agree, skin, eye_px, tuning)


def target_occluders(tgt_agree: np.ndarray, skin: np.ndarray, eye_dist: float, tuning: Occlusion) -> np.ndarray:
    """Where the source may be pasted below the brows (0..1, work scale): not where the
    target's face is covered by something that reaches in from outside it (a hat brim, a
    hand, a lock of hair). Such things stay the target's.

    Occluder = not the target's skin colour, at least `occluder_min` eye distances thick
    (glasses frames and stubble are opened away), and connected to the edge of the region
    (eye make-up, a mole, a beard's inner patch are not: they are the face's own). An eye
    or the lips (holes in the skin mask) count as covered when most of the skin around
    them is: an eye under a hat brim is not pasted onto the brim."""
    k = max(3, int(round(tuning.occluder_min * eye_dist)) | 1)
    occ = cv2.morphologyEx((1.0 - tgt_agree).astype(np.float32), cv2.MORPH_OPEN,
                           cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    count, labels = cv2.connectedComponents((occ > 0.5).astype(np.uint8), connectivity=8)
    from_outside = np.zeros(count, np.float32)  # per component: 1 where it touches the ROI's border
    from_outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = 1.0
    from_outside[0] = 0.0
    occ = occ * from_outside[labels]
    m = (skin > 0.5).astype(np.float32)
    sig = max(1.0, tuning.hole_sigma * eye_dist)
    around = masked_blur(occ, m, sig)
    lo, hi = tuning.hole_cover
    covered = np.where(m > 0, occ, np.clip((around - lo) / (hi - lo), 0.0, 1.0))
    return np.clip(1.0 - covered, 0.0, 1.0).astype(np.float32)


def source_occluders(src: np.ndarray, skin: np.ndarray, lms: np.ndarray, eye_dist: float, turned: float,
                     work: WorkScale, tuning: ClassicalTuning, light_sigma: float,
                     not_skin: np.ndarray | None = None, own_pose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """0..1, on the work scale's grid, where the warped source shows something other than its
    skin on the face's skin (a strand of hair, a hand, the background a profile's silhouette
    brings in): there the target's skin is kept, under the same light, instead of cutting
    the paste (cutting lost identity, see `unoccluded`). Two tests: patches much lighter or
    darker than the skin around them (`foreign_patches`), on a frontal source not in the
    band of the eyes and brows (there they are eye make-up or a glasses frame, and half a
    frame filled left a ghost of it and lost the likeness: judge 96 % -> 91 %), and, on a
    turned source (`turned` 0..1), any colour unlike its skin (on a frontal one that took
    shaded cheeks and make-up too and cost the likeness). Below the nose a frontal source's
    beard and stubble are its own and stay; a turned one's mouth and chin border the
    background. `not_skin`: the source's region map's hair, glasses and hands at ROI size
    (labels.py), what strands are made of (None: the colour tests of strands.strands). A
    video finds this once per track (engine.SourceFinds).

    With it, on the same grid, what covers most of the face from outside (`source_cover`:
    a hat brim over the eyes; zero where nothing does), which the tests here learn around."""
    occ_t = tuning.occlusion
    size, scale = work.size, work.scale
    sk = work.small(skin)
    lab = work.lab(src)
    gy = (np.arange(size[1], dtype=np.float32)[:, None] + 0.5) / scale
    # above the nose's base (upright faces)
    above_mouth = (gy < lms[mesh.NOSE_BASE, 1]).astype(np.float32) if turned < 0.5 else np.ones_like(gy)
    region = sk * above_mouth
    covered = source_cover(lab, sk, region, lms, eye_dist, work, occ_t) * above_mouth
    region = region * (covered < 0.5)
    # the eye band counts on a turned source: its dark patches there are sunglasses or make-up
    # that, mirrored, reads as bruises (cases.md V3: lenses pasted into the target's frames)
    band = (1.0 - turned) * eye_band(lms, work, eye_dist, occ_t)
    occ = foreign_patches(lab[:, :, 0], region * (1.0 - band), eye_dist * scale, occ_t, light_sigma)
    if turned > 0:
        occ = np.maximum(occ, turned * (1.0 - skin_agreement(lab, region, 1.0, occ_t)) * (region > 0.5))
    s_t = tuning.strands
    if turned < 1 and s_t.chroma > 0:
        outline = face_region_mask(lms * scale, (size[1], size[0]), cut_mouth=False)
        hair = None if not_skin is None else work.small(not_skin) > 0.5
        beside = beside_the_eyes(lms, work) * above_mouth  # (judged on the skin; `beyond` it, for thickness)
        e = eye_dist * scale
        colours = st.StrandColours(lab, region, e, s_t, occ_t, lms * scale, own_pose=own_pose)
        # at the source's own pose (unwarped, its mirror the mesh's own), eye make-up is told
        # from a lock by the other eye wearing it too (strands.without_mirrored_make_up)
        mirrored = st.without_mirrored_make_up if own_pose else (lambda found, colours: found)
        found = mirrored(st.strands(colours, outline * above_mouth, beside, hair, beyond=region < 0.5), colours)
        found = st.with_covered_eyes(found, lms * scale, e, s_t)
        if s_t.followed_down and found.any():
            anywhere = mirrored(st.strands(colours, outline, hair=hair), colours)
            found = np.maximum(found, st.followed_down(found, anywhere, colours.lips))
        occ = np.maximum(occ, (1.0 - turned) * found)
    # one work pixel wider: a profile's nose ridge brings a line of background thinner than that
    return cv2.dilate(occ, np.ones((3, 3), np.uint8)), covered


def source_cover(lab: np.ndarray, skin: np.ndarray, region: np.ndarray, lms: np.ndarray, eye_dist: float,
                 work: WorkScale, tuning: Occlusion) -> np.ndarray:
    """What covers a source face from outside (`covered_from_outside`) where it covers more
    than half of `region`, the skin the source's tests learn its colour on; else zero. More
    than half (a hat brim over the eyes and forehead), their medians would be the cover's
    colour, and the skin below it the strand (cases.md O2: the brim pasted, the nose and
    cheeks replaced): the cover goes, and they learn on the rest."""
    covered = covered_from_outside(lab, skin, lms, eye_dist, work, tuning)
    if 2 * int(((covered > 0.5) & (region > 0.5)).sum()) > int((region > 0.5).sum()):
        return covered
    return np.zeros_like(covered)


def covered_from_outside(lab: np.ndarray, skin: np.ndarray, lms: np.ndarray, eye_dist: float, work: WorkScale,
                         tuning: Occlusion) -> np.ndarray:
    """0..1 on the work grid: where something reaches over a face from outside it (a hat
    brim, a hood, a hand), the target's own test (`target_occluders`) on this face's skin
    colour as learned on its cheeks and nose (`reference_depth`), with the target's weight
    on lightness (its own shading is no cover). `skin`: the face's skin on that grid."""
    return 1.0 - skin_and_cover(lab, skin, reference_skin(skin, lms, eye_dist, work, tuning), eye_dist * work.scale,
                                tuning)[1]


def foreign_patches(lightness: np.ndarray, region: np.ndarray, eye_dist: float, tuning: Occlusion,
                    light_sigma: float) -> np.ndarray:
    """1 on patches of `region` that are `foreign_step` (Lab L) lighter or darker than the
    skin's smooth light around them (its width `light_sigma` eye distances) and at least
    `foreign_area` eye distances^2 large: a strand of hair, a hand's edge, a stripe. Shading
    is smooth and pores, wrinkles, moles and nostrils are small or faint, so they stay."""
    m = (region > 0.5).astype(np.float32)
    sig = max(1.0, light_sigma * eye_dist)
    cand = np.zeros(m.shape, np.uint8)
    for _ in range(2):  # the second pass learns the light without the patches the first found
        w = m * (1 - cand)
        low = masked_blur(lightness, w, sig)
        cand = ((np.abs(lightness - low) > tuning.foreign_step) & (m > 0)).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    big = stats[:, cv2.CC_STAT_AREA] >= tuning.foreign_area * eye_dist ** 2
    big[0] = False
    return big[labels].astype(np.float32)
