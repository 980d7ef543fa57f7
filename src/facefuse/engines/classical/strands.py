"""Hair that reaches into a source face from outside it (a strand blown across it): found
by colour against the skin's own, by thickness and by touching the face's outline, so eye
make-up, a mole or lipstick (inside the face) and frames or lashes (thin) are not taken."""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from .tuning import Occlusion, Strands


def robust_centre(values: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median, spread) of `values` (n, channels): the spread is 1.4826 median absolute
    deviations (a Gaussian's sigma), at least `floor` per channel. What covers less than
    half of the pixels moves neither."""
    mu = np.median(values, axis=0)
    return mu, np.maximum(1.4826 * np.median(np.abs(values - mu), axis=0), floor)


class StrandColours:
    """What strands are looked for by on one face (work scale): its skin's chroma learned on
    `region`, and which pixels step from it (`strands` uses them, for each outline it is
    asked about: the colour tests run once). `own_pose`: the source fused onto itself
    (ClassicalEngine.own_finds), where a lock is also followed across its gaps
    (hair_and_its_gaps) and takes its mixed edge (with_its_mixed_edge)."""

    def __init__(self, lab: np.ndarray, region: np.ndarray, eye_dist: float, tuning: Strands, occlusion: Occlusion,
                 lms: np.ndarray | None = None, own_pose: bool = False):
        self.lab, self.region, self.eye_dist, self.lms, self.own_pose = lab, region, eye_dist, lms, own_pose
        # the lips as the mesh draws them: a strand is followed across them (`strands`, `followed_down`)
        self.lips = np.zeros(region.shape, bool) if lms is None else lips(lms, region.shape[::-1])
        self.tuning, self.occlusion = tuning, occlusion
        ref = lab[region > 0.5][:, 1:]
        self.enough = len(ref) >= 20
        if not self.enough:
            return
        # this face's skin chroma, learned on it: hair over a cheek moves it not while it covers
        # less than half of the cheek
        floor = np.float32(occlusion.skin_spread_floor[1:])
        mu, spread = robust_centre(ref, floor)
        chroma_step = np.sqrt(((lab[:, :, 1:] - mu) ** 2).sum(2))
        chroma_z = np.sqrt((((lab[:, :, 1:] - mu) / spread) ** 2).sum(2))
        self.unlike = chroma_step > tuning.chroma
        self.faint = (chroma_z > tuning.chroma_z) & (tuning.chroma_z > 0)
        lightness = lab[:, :, 0]
        self.skin = np.float32([np.median(lightness[region > 0.5]), *mu])  # its Lab centre
        self.darker = (lightness < self.skin[0] - tuning.dark) & (tuning.dark > 0)
        if lms is None:
            self.grow = None
            return
        size = region.shape[::-1]
        self.own = own_features(lms, size, eye_dist, tuning, lab, floor)
        coloured = self.unlike | self.faint
        if own_pose:  # (a brow is darker than the skin by nature: its darkness is no gap between hairs)
            dark = self.darker & ~((hull(lms[mesh.RIGHT_BROW], size) | hull(lms[mesh.LEFT_BROW], size)) > 0)
            coloured = hair_and_its_gaps(coloured, dark, lightness, eye_dist, tuning)
        self.grow = coloured & ~self.own


def strand_width_px(eye_dist: float, tuning: Strands) -> int:
    """A strand's `width` in pixels of a grid whose eye distance is `eye_dist`: odd, at least 3
    (a kernel for OpenCV's morphology and box filters)."""
    return max(3, int(round(tuning.width * eye_dist)) | 1)


def hair_and_its_gaps(coloured: np.ndarray, darker: np.ndarray, lightness: np.ndarray, eye_dist: float,
                      tuning: Strands) -> np.ndarray:
    """bool: what a strand found thick is followed along (`strands`' `grow`): pixels of a
    colour unlike the skin's (`coloured`), and the gaps between them: pixels darker than the
    skin (`darker`) and than the hairs within a strand's `width` of them (their mean
    `lightness`). A lock's hairs lie over their own shadows, darker than the skin, than the
    hairs, and of no colour of their own; without the gaps deepface_img3.jpg's lock was
    followed only to its shadowed under-layer, and its outer half (beyond it) was pasted
    onto deepface_img19.jpg's cheek as a sheaf of light hairs. Skin shaded beside dark hair
    is lighter than the hair, so it is no gap (no dev photo needed this: the pale streak down
    fr_obama_32bit.png's cheek on deepface_img19.jpg first blamed on it came from
    `with_its_mixed_edge` at a target's pose), and shading far from any such colour (a
    side-lit face's shadowed half) is not followed. Asked at the source's own pose only
    (StrandColours' `own_pose`, ClassicalEngine.own_finds), as `with_its_mixed_edge` is."""
    k = strand_width_px(eye_dist, tuning)
    hair = coloured.astype(np.float32)
    around = cv2.boxFilter(hair, -1, (k, k))
    hair_lightness = cv2.boxFilter(hair * lightness, -1, (k, k)) / np.maximum(around, 1e-6)
    return coloured | (darker & (around > 0) & (lightness < hair_lightness))


def strands(colours: StrandColours, outline: np.ndarray, dark_where: np.ndarray | None = None,
            hair: np.ndarray | None = None, beyond: np.ndarray | None = None) -> np.ndarray:
    """1 on strands (work scale): a colour unlike the skin's (a chroma step of `chroma`:
    shading and shadow change the lightness, and dark hair's lightness step is
    `occlusion.foreign_patches`' test), thicker than `width` eye distances, and connected to
    the face's outline; or, as light hair on light skin steps less, `chroma_z` robust
    deviations of this face's own skin chroma, hanging `tall` from the outline, with the
    mixed pixel along its edge (with_its_mixed_edge). Each find
    is followed along its thinner rest and the darker gaps between its hairs
    (hair_and_its_gaps; with `lms`: not into the eyes or the lips, nor where a brow has its
    own colour: own_features; but across the lips to what lies beyond them).
    Where `dark_where` (beside the eyes) also hair `dark` darker than the
    skin that hangs `tall` eye distances long from the outline. `hair` (bool, the source's
    region map, learned on this face, with `lms` the landmarks on this grid): strands of
    any colour, found by the map, with the same reach-in test. `beyond` (bool: off the
    face's skin: beyond the outline, the brows, the lips; the eyes are left out): a find
    that hangs `tall` is as thick and as tall as it is with what the same test finds there,
    while what is found and its area stay the test's own finds (a lock whose edge lies
    along the outline shows only a band a few pixels wide inside it, thinner than `width`:
    deepface_img3's blonde lock at fr_obama's and deepface_img1's temples)."""
    c, tuning, occlusion, eye_dist, lms = colours, colours.tuning, colours.occlusion, colours.eye_dist, colours.lms
    if not c.enough:
        return np.zeros(c.region.shape, np.float32)
    k = strand_width_px(eye_dist, tuning)
    edge = (outline > 0.5) & (cv2.erode((outline > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0)
    eyes = np.zeros(outline.shape, bool) if lms is None else eye_openings(lms, outline.shape[::-1]) > 0

    def reaching_in(unlike: np.ndarray, tall: float = 0.0, thin: bool = False, grow: np.ndarray | None = None,
                    there: np.ndarray | None = None) -> np.ndarray:
        judged = (unlike & (outline > 0.5)).astype(np.uint8)
        cand = judged if there is None else judged | (there & ~eyes).astype(np.uint8)
        # where a find must hang `tall` from the outline (or is a learned label's): closed over
        # one-pixel gaps, without the eye openings. A per-pixel colour test leaves holes in a
        # strand, which the opening below crumbled (deepface_img19's blonde lock fell into
        # pieces none of which reached the outline); an eye's colours are no skin's either
        # (closed with them, a lock beside deepface_img1's eye took the eye in). What needs no
        # height to count stays as found (closed, eye shadow at an eye's corner joined the outline)
        def closed(m: np.ndarray) -> np.ndarray:
            if not (tall > 0 or thin):
                return m
            return cv2.morphologyEx(np.where(eyes, 0, m).astype(np.uint8), cv2.MORPH_CLOSE,
                                    cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))

        cand = closed(cand)
        # a colour test's finds are opened to the strand's width (frames, lashes are thinner)
        if not thin:
            cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        # a piece's height is its whole's (with what lies `there`); its area, its reach to the
        # outline and what is found are what the test judges (the area of the whole took eye
        # make-up joined to dark hair beyond the outline: regular pair 2 lost its likeness)
        whole = cand
        if there is not None:
            cand = whole & closed(judged)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(whole, connectivity=8)
        touching = np.zeros(count, bool)
        touching[np.unique(labels[edge & (cand > 0)])] = True
        area = stats[:, cv2.CC_STAT_AREA] if there is None else np.bincount(labels[cand > 0], minlength=count)
        keep = touching & (area >= occlusion.foreign_area * eye_dist ** 2)
        keep &= stats[:, cv2.CC_STAT_HEIGHT] >= tall * eye_dist
        keep[0] = False
        if there is not None:
            labels = np.where(cand > 0, labels, 0)
        if grow is None:
            return keep[labels]
        # a strand found thick where it enters is followed along its thin rest (`grow`), and
        # across the lips (`lips`): a thin strand over them takes their colour, so what it
        # has beyond them is cut off from it (prnet_image01322's lock, whose tip curls below
        # the mouth's corner, 8 work pixels of lip-coloured lip from the rest). The lips
        # themselves stay the face's own
        kept = keep[labels]
        _, along = cv2.connectedComponents((kept | c.lips | (grow & (outline > 0.5))).astype(np.uint8), connectivity=8)
        on = np.unique(along[kept])
        return np.isin(along, on[on > 0]) & (kept | ~c.lips)

    faint = reaching_in(c.faint, tuning.tall, grow=c.grow, there=None if beyond is None else c.faint & beyond)
    if c.own_pose:
        faint = with_its_mixed_edge(faint, outline, None if lms is None else c.own)
    found = reaching_in(c.unlike, grow=c.grow) | faint
    if dark_where is not None and tuning.dark > 0:
        dark = c.darker & (dark_where > 0.5)
        found |= reaching_in(dark & (c.region > 0.5), tuning.tall, grow=c.grow,
                             there=None if beyond is None else dark & beyond)
    if hair is not None:  # the learned label is a strand's shape already: no opening
        # a strand may run through the lashes and lids round an eye, but they stay the eye's
        found |= reaching_in(hair, thin=True) & ~around_the_eyes(lms, outline.shape[::-1], eye_dist, tuning)
    return found.astype(np.float32)


def with_its_mixed_edge(found: np.ndarray, outline: np.ndarray, own: np.ndarray | None) -> np.ndarray:
    """bool: what the learned colour test found (`strands`: beyond this face's own skin
    chroma, hanging `tall` from the outline), one work pixel wider inside the outline, but
    not into the face's own features (`own`: the brows, the eyes, the lips). The work pixel
    along a lock's edge is half lock, half skin, and for a light lock it fails the test.
    Left out, the find's soft edge lay on the lock's innermost hairs and the shadow they
    cast on the skin, and drew them as a thin dark line down the cheek (deepface_img3.jpg,
    cases.md S10). The fixed chroma step's finds (`unlike`, which also takes a strongly lit
    face's coloured shade: deepface_img27.jpg's forehead and magenta side) stay as found:
    one pixel wider, those cost regular pair 1 its likeness. At the source's own pose only
    (StrandColours' `own_pose`; ClassicalEngine.own_finds carries them to every fusion): at a
    target's pose the warped source brings in what a turned source's silhouette shows beyond
    it, and one pixel more of that drew a pale streak down fr_obama_32bit.png's cheek on
    deepface_img19.jpg."""
    inside = outline > 0.5
    grown = (cv2.dilate(found.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & inside
    return grown if own is None else (found & inside) | (grown & ~own)


def without_mirrored_make_up(found: np.ndarray, colours: StrandColours) -> np.ndarray:
    """`found` (0..1, work scale) less what it has round an eye (`around_the_eye`) when most
    of that is eye make-up: coloured unlike the skin (`unlike`, `faint`), with the mirrored
    place round the other eye of its colour (nearer to it than half its step from the skin,
    within a pixel: the mirror is the mesh's). Both eyes wear make-up; a lock falls on one
    side, and its mirror is the other eye's skin. Asked at the source's own pose only
    (ClassicalEngine.own_finds): there regular pair 2's smoky wing, joined to her hair at one
    temple, was found as a lock and took her eye; at a target's pose a lock beside made-up
    eyes stays a lock (simswap_specific1.png's hair by her eye)."""
    c = colours
    if not c.enough or c.lms is None or not found.any():
        return found
    size = found.shape[::-1]
    twin = None
    out = found
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        near = around_the_eye(c.lms[ring], size, c.eye_dist, c.tuning) & (found > 0)
        if not near.any():
            continue
        if twin is None:
            twin = cv2.warpAffine(c.lab, mirror_map(c.lms), size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
        ys, xs = np.nonzero(near)
        own = c.lab[ys, xs]
        h, w = near.shape
        to_twin = np.min([np.linalg.norm(own - twin[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)], axis=1)
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        coloured = (c.unlike | c.faint)[ys, xs]
        if 2 * int((coloured & (to_twin < 0.5 * np.linalg.norm(own - c.skin, axis=1))).sum()) > len(ys):
            out = np.where(near, 0.0, out).astype(np.float32)
    return out


def mirror_map(lms: np.ndarray) -> np.ndarray:
    """(2, 3) float32: the affine map that best takes each landmark of `lms` (the mesh's, on
    any grid) to its mirror across the face (mesh.mirror)."""
    pts = lms[: mesh.N_MESH].astype(np.float64)
    sol, *_ = np.linalg.lstsq(np.hstack([pts, np.ones((len(pts), 1))]), pts[mesh.mirror()], rcond=None)
    return sol.T.astype(np.float32)


def followed_down(found: np.ndarray, anywhere: np.ndarray, through: np.ndarray) -> np.ndarray:
    """The parts of `anywhere` (strands looked for on the whole face, the chin included)
    connected to `found` (those found above the mouth, where a beard is not looked at),
    also across `through` (bool: the lips, which a strand crossing them may not show on)."""
    whole = anywhere > 0.5
    _, labels = cv2.connectedComponents((whole | through).astype(np.uint8), connectivity=8)
    on = np.unique(labels[whole & (found > 0.5)])
    return (np.isin(labels, on[on > 0]) & whole).astype(np.float32)


def hull(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 on the grid of `size` (w, h): 1 inside the convex hull of `points` (that grid's pixels)."""
    m = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillConvexPoly(m, np.round(cv2.convexHull(points)).astype(np.int32), 1)
    return m


def eye_openings(lms: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 on the grid of `size` (w, h): 1 inside each eye's opening as the mesh draws it."""
    return hull(lms[mesh.RIGHT_EYE], size) | hull(lms[mesh.LEFT_EYE], size)


def lips(lms: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool on the grid of `size` (w, h): the lips as the mesh draws them (their outer ring's hull)."""
    return hull(lms[mesh.OUTER_LIPS], size) > 0


def around_the_eyes(lms: np.ndarray, size: tuple[int, int], eye_dist: float, tuning: Strands) -> np.ndarray:
    """bool on the grid of `size` (w, h): each eye and `eye_margin` eye distances around it,
    where lashes and lids are the eye's own, however dark (`lms` in that grid's pixels)."""
    return around_the_eye(lms[mesh.RIGHT_EYE], size, eye_dist, tuning) | around_the_eye(lms[mesh.LEFT_EYE], size,
                                                                                          eye_dist, tuning)


def around_the_eye(ring: np.ndarray, size: tuple[int, int], eye_dist: float, tuning: Strands) -> np.ndarray:
    """bool: one eye (`ring`, its opening's landmarks) and `eye_margin` eye distances round it."""
    k = max(3, int(2 * tuning.eye_margin * eye_dist) | 1)
    return cv2.dilate(hull(ring, size), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0


def own_features(lms: np.ndarray, size: tuple[int, int], eye_dist: float, tuning: Strands,
                 lab: np.ndarray | None = None, floor: np.ndarray | None = None) -> np.ndarray:
    """bool: the eyes with their margin, the brows and the lips: their colours are the face's own.
    With `lab` (this grid's Lab), of each brow only what has the brow's own chroma: learned on
    the brow (median and robust spread, at least `floor`), `chroma_z` deviations from it are
    not the brow. A strand crossing a brow's end (the README example's red lock, over a
    grey-brown brow) is then followed across it; a brow unlike the skin is still the brow."""
    parts = lips(lms, size)
    for ring in (mesh.RIGHT_BROW, mesh.LEFT_BROW):
        inside = hull(lms[ring], size) > 0
        if lab is not None and inside.sum() >= 20:
            chroma = lab[:, :, 1:][inside]
            mu, spread = robust_centre(chroma, floor)
            inside[inside] = np.sqrt((((chroma - mu) / spread) ** 2).sum(1)) <= tuning.chroma_z
        parts |= inside
    return around_the_eyes(lms, size, eye_dist, tuning) | parts


def with_covered_eyes(found: np.ndarray, lms: np.ndarray, eye_dist: float, tuning: Strands) -> np.ndarray:
    """`found` (0..1, work scale) with each eye the strands partly cover (more than
    `eye_share` of it and `eye_margin` around it) added whole: the target's eye then stays
    there. `lms` in work-scale pixels."""
    out = found.copy()
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        around = around_the_eye(lms[ring], found.shape[::-1], eye_dist, tuning)
        if around.any() and found[around].mean() > tuning.eye_share:  # (an eye off the grid: none)
            out[around] = 1.0
    return out
