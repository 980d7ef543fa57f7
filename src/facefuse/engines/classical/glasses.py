"""Glasses frames, found as dark ridges that ring the eyes: a target's are laid back over the
blended face so they stay in front, as crisp as the photo; a source's are painted out of it
before the warp, so they are never pasted."""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh
from ...faces import SourceFace
from ...imaging import LUMA, scale_for
from ...masks import face_region_mask, face_share
from .strands import hull
from .tuning import Frames


def target_frames(img: np.ndarray, lms: np.ndarray, eye_dist: float, tuning: Frames,
                  eyes_ringed: int = 2) -> np.ndarray | None:
    """0..1 over the ROI where the target wears glasses frames (None: no frames found), to
    be laid over the blended face (FusedFace.overlay): a frame is thinner than the occluder
    rule's opening and faded where the face was pasted.

    A ridge filter, not skin colour: a frame is a line darker than a closing `width` wide
    fills it with (a black-hat), looked for only in the box around the eyes and brows,
    inside the face and outside the eye openings and the nose's flanks. Only lines that ring
    an eye count (in the eye's middle column, above its upper lid and below its lower one),
    and only when both eyes are ringed and the rims are joined across the nose (a bridge,
    `_bridged`): a brow joined to a lid crease rings an eye on some faces, never with a
    bridge. Of the 281 faces in the dev photos, nine are found: eight wearing dark frames and
    one without (`faceapi_disgusted.jpg`: a squint's creases joined across the nose), so a
    face without glasses keeps the source's eyes and brows. (Brows are not cut out: a top
    rim runs under them and was lost.) Found at an eye distance of `eye_px`; the pixels
    laid over are the target's own at full resolution, so the frame stays as crisp as the
    photo.

    `eyes_ringed`: how many eyes a rim must ring. On a video track whose face has shown its
    glasses already, one (with the bridge): a quick move's motion blur or a turn breaks one
    lens's rims on some frames, and the frames blinked off there (a moving-head clip made
    from faceapi_bernadette1.png: found on 107 of 200 frames with two, 198 with one). On a
    still, two: one ringed eye and a bridge also take four dev faces without glasses (a
    squint, a lid crease joined to the brow)."""
    found = _rims(img, lms, eye_dist, tuning, eyes_ringed)
    if found is None:
        return None
    rims, box = found
    # a brow joined to a top rim is the person's own, not the frame: not laid over
    size = rims.labels.shape[::-1]
    brows = hull(rims.local[2 * rims.n:2 * rims.n + 10], size) | hull(rims.local[2 * rims.n + 10:], size)
    # the rims and every dark line joined to them, the nose's flanks included (there a lens's
    # inner corner was cut off, and its bottom rim floated on the fused face as a loose
    # stroke: simswap_multi_people.jpg's second face, faceapi_bernadette2.png), as strong as
    # the line is dark: the rim's core in full, its soft edge partly
    strength = np.clip(rims.ridge.astype(np.float32) / np.float32(tuning.step) - 0.5, 0.0, 1.0)
    lines = rims.rimmed[rims.lines]
    frames = (lines & (brows == 0) & (_lenses(lines, rims.local, rims.n) == 0)) * strength
    return _at_image_size(cv2.GaussianBlur(frames, (0, 0), 0.7), img.shape[:2], box)


def paint_out_frames(source: SourceFace, tuning: Frames) -> None:
    """Paint the prepared source's glasses frames out of its crop (OpenCV's inpainting from
    the skin around them, `painted` eye distances wider than found: their soft edge and
    shadow), once, before any warp: a source's frames are never pasted, and its own skin,
    brows and eyes continue under them (the target's skin laid into a rim left rings of
    another tone). The share of the face they took goes in `prepared["frames_share"]`."""
    lms = source.face.landmarks[: mesh.N_MESH]
    eye = mesh.eye_distance(lms)
    frames = source_frames(source.image, lms, eye, tuning)
    if frames is None:
        return
    k = max(3, int(round(tuning.painted * eye)) | 1)
    mask = cv2.dilate(frames, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    # painted at the scale they are found at (the fill is smooth skin: a 1200-px crop took
    # 0.9 s at full size), laid back in where the mask is
    h, w = mask.shape
    scale = min(1.0, scale_for(eye, tuning.eye_px))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(source.image, size, interpolation=cv2.INTER_AREA)
    small_mask = (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    filled = cv2.resize(cv2.inpaint(small, small_mask, max(3, round(tuning.painted * eye * scale)), cv2.INPAINT_TELEA),
                        (w, h), interpolation=cv2.INTER_LINEAR)
    weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.5, 0.5 / scale))[:, :, None]
    painted = source.image + weight * (filled.astype(np.float32) - source.image)
    source.image = np.clip(painted + 0.5, 0, 255).astype(np.uint8)
    source.prepared["frames_share"] = face_share(mask, lms)


def source_frames(img: np.ndarray, lms: np.ndarray, eye_dist: float, tuning: Frames) -> np.ndarray | None:
    """uint8 0/1 over the image where the source wears glasses frames (None: none found):
    what is painted out of the source before it is warped, so that its frames are never
    pasted. The rims `target_frames` finds, with the parts of the frame joined to them that
    ring no eye themselves (the bridge, the rims' inner sides, the pads), and under the
    brows: what lies above the brows' lower edge is the brow, however the top rim joins it.

    Within a black-hat's `width` of an eye's opening, only lines thinner than `thin` are
    taken: there the wide black-hat also takes the lash line and the lid's crease as one
    band joined to the rim, and painting them out smeared the eyes (`deepface_img24.jpg`:
    its lids were lost on every target). And what reaches into a lens the rims close is
    kept, as on a target (`_lenses`): `deepface_img25.jpg`'s lash lines joined to a rim were
    painted out, and its eyes came out in dark smudges."""
    found = _rims(img, lms, eye_dist, tuning)
    if found is None:
        return None
    rims, box = found
    lids = cv2.dilate(rims.openings, _disc(tuning.width, rims.e))
    near = cv2.dilate((rims.ring[rims.labels] & (lids == 0)).astype(np.uint8), _disc(tuning.joined, rims.e))
    # any dark line near the rims (away from the lids), the pads on the nose's flanks too
    wide = _touching(rims.lines, near > 0)[rims.lines] & (lids == 0)
    # and the thin lines joined to them, lids or not
    ridge = cv2.morphologyEx(rims.luma, cv2.MORPH_BLACKHAT, _disc(tuning.thin, rims.e))
    _, lines = cv2.connectedComponents((rims.dark & (ridge > tuning.step)).astype(np.uint8), connectivity=8)
    joined = _touching(lines, near > 0)[lines] | wide
    # what reaches into a lens is the face's (its lash lines, joined to a rim), as on a target
    frames = (joined & (rims.brows == 0) & (_lenses(joined, rims.local, rims.n) == 0)).astype(np.float32)
    return (_at_image_size(frames, img.shape[:2], box) > 0.5).astype(np.uint8)


class _Rims:
    """What `_rims` found, on its grid: each candidate's component (`labels`), which ring an
    eye (`ring`, per component), the black-hat (`ridge`), the eyes' and brows' landmarks
    (`local`, `n` per eye), the eye distance `e`, every dark line (`dark`, the nose's
    flanks included), its components (`lines`) and which of them hold a rim (`rimmed`), what
    lies above the brows' lower edges (`brows`, 1: brow, never frame), the eye `openings` and
    the grid's `luma`."""

    def __init__(self, labels, ring, ridge, local, n, e, dark, lines, rimmed, brows, openings, luma):
        self.labels, self.ring, self.ridge, self.local, self.n, self.e = labels, ring, ridge, local, n, e
        self.dark, self.lines, self.rimmed, self.brows = dark, lines, rimmed, brows
        self.openings, self.luma = openings, luma


def _rims(img: np.ndarray, lms: np.ndarray, eye_dist: float, tuning: Frames,
          eyes_ringed: int = 2) -> tuple[_Rims, tuple] | None:
    """The dark lines ringing the eyes (see target_frames), on the grid they are found on,
    and that grid's box in the image (x0, y0, x1, y1); None: no glasses (fewer than
    `eyes_ringed` eyes ringed, or no bridge between them)."""
    h, w = img.shape[:2]
    pts = np.concatenate([lms[mesh.RIGHT_EYE], lms[mesh.LEFT_EYE], lms[mesh.RIGHT_BROW], lms[mesh.LEFT_BROW]])
    x0, y0 = (pts.min(0) - np.float32(tuning.box_above) * eye_dist).astype(int)
    x1, y1 = (pts.max(0) + np.float32(tuning.box_below) * eye_dist).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    scale = scale_for(eye_dist, tuning.eye_px)
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    # 8-bit: the black-hat on it takes 40 % of the time it takes on float32 (1.6 against 3.9
    # ms on a 380x190 grid), with the same lines at whole levels
    luma = np.clip(cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA) @ LUMA + 0.5,
                   0, 255).astype(np.uint8)
    e = eye_dist * scale
    ridge = cv2.morphologyEx(luma, cv2.MORPH_BLACKHAT, _disc(tuning.width, e))
    local = (pts - np.float32([x0, y0])) * scale
    n = len(mesh.RIGHT_EYE)
    openings = _eye_openings(local, n, size, e, tuning)
    face = face_region_mask((lms - np.float32([x0, y0])) * scale, (size[1], size[0]), cut_mouth=False)
    dark = (ridge > tuning.step) & (openings == 0) & (face > 0.99)
    cand = (dark & (_not_frames(openings, local, n, e, tuning) == 0)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    # a rim rings an eye: in the eye's middle column it passes both above the upper lid and
    # below the lower one (a brow joined to a lid crease only hooks round the corner)
    ring = (stats[:, cv2.CC_STAT_WIDTH] >= tuning.span * e) & (stats[:, cv2.CC_STAT_HEIGHT] >= tuning.span * e)
    ring[0] = False
    around = np.zeros_like(ring)
    ringed = 0  # eyes a rim rings
    for eye_pts in (local[:n], local[n:2 * n]):
        ex, ey0, ey1 = eye_pts[:, 0].mean(), eye_pts[:, 1].min(), eye_pts[:, 1].max()
        column = labels[:, max(0, int(ex - tuning.column * e)):max(1, int(ex + tuning.column * e) + 1)]
        above = np.unique(column[:max(0, int(ey0))])
        below = np.unique(column[min(size[1], int(ey1 + tuning.lid_gap * e) + 1):])
        both = np.intersect1d(above, below)
        around[both] = True
        ringed += int(ring[both].any())
    ring &= around
    # glasses: both eyes ringed (most faces stop here, on every video frame; on a track that
    # has shown glasses, one), and the rims joined across the nose (the bridge)
    if ringed < eyes_ringed:
        return None
    _, lines = cv2.connectedComponents(dark.astype(np.uint8), connectivity=8)
    rimmed = _touching(lines, ring[labels])
    brows = _above_brows(local, n, size)
    if not _bridged(rimmed[lines] & (brows == 0), local, n, e, tuning):
        return None
    return _Rims(labels, ring, ridge, local, n, e, dark, lines, rimmed, brows, openings, luma), (x0, y0, x1, y1)


def _bridged(rimmed: np.ndarray, local: np.ndarray, n: int, e: float, tuning: Frames) -> bool:
    """Whether the lines joined to the rims (`rimmed`, brows already taken away) cross the
    midline between the eyes above the nose's flanks: a bridge. Brows, lids and lash lines
    joined into rings (eight dev faces without glasses at the black-hat's `width`) stay
    apart there, and a frown joins the brows above their lower edges."""
    inner = local[[8, n + 8]]  # inner eye corners (133, 362)
    mid = int(round(inner[:, 0].mean()))
    return bool(rimmed[:int(inner[:, 1].max() + tuning.nose_below * e), max(0, mid - 1):mid + 2].any())


def _lenses(frames: np.ndarray, local: np.ndarray, n: int) -> np.ndarray:
    """1 inside each lens the frames enclose: the convex hull of the hole they close round
    an eye. A line joined to a rim that reaches into it is the face's own (a lash line at
    the eye's outer corner, joined to the top rim), not the frame: laid back, it floated
    as a dark fleck by the fused eye (faceapi_bernadette1.png in a moving-head clip,
    deepface_img24.jpg under deepface_img1.jpg). Where the rims do not close, nothing."""
    h, w = frames.shape
    outside = np.pad(frames.astype(np.uint8), 1)
    cv2.floodFill(outside, None, (0, 0), 1)
    _, holes = cv2.connectedComponents((outside[1:-1, 1:-1] == 0).astype(np.uint8), connectivity=4)
    lenses = np.zeros((h, w), np.uint8)
    for eye_pts in (local[:n], local[n:2 * n]):
        cx, cy = np.round(eye_pts.mean(0)).astype(int)
        if 0 <= cy < h and 0 <= cx < w and holes[cy, cx]:
            cv2.fillConvexPoly(lenses, cv2.convexHull(cv2.findNonZero((holes == holes[cy, cx]).astype(np.uint8))), 1)
    return lenses


def _above_brows(local: np.ndarray, n: int, size: tuple[int, int]) -> np.ndarray:
    """1 above the brows' lower edges (outer end to outer end, run on to the box's sides):
    brow, whatever dark line joins it, never frame."""
    lower = np.concatenate([local[2 * n + 5:2 * n + 10], local[2 * n + 15:]])
    lower = lower[np.argsort(lower[:, 0])]
    width = size[0]
    line = np.vstack([[0, lower[0, 1]], lower, [width, lower[-1, 1]], [width, 0], [0, 0]])
    brows = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillPoly(brows, [np.round(line).astype(np.int32)], 1)
    return brows


def _touching(components: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per component of a label image (cv2.connectedComponents'), whether it has a pixel
    in `where`; the background (0) never."""
    touching = np.zeros(int(components.max()) + 1, bool)
    touching[np.unique(components[where])] = True
    touching[0] = False
    return touching


def _disc(eye_distances: float, e: float) -> np.ndarray:
    """An elliptic kernel `eye_distances` wide (odd, at least 3 px) on a grid where an eye
    distance is `e` px."""
    k = max(3, int(round(eye_distances * e)) | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def _at_image_size(frames: np.ndarray, shape: tuple[int, int], box: tuple) -> np.ndarray:
    """A mask of the rims' grid back on the whole image (float32 0..1, zero outside the box)."""
    x0, y0, x1, y1 = box
    out = np.zeros(shape, np.float32)
    out[y0:y1, x0:x1] = np.clip(cv2.resize(frames, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return out


def _eye_openings(local: np.ndarray, n: int, size: tuple[int, int], e: float, tuning: Frames) -> np.ndarray:
    """1 on the eye openings and a margin round them: no frame is looked for there."""
    own = hull(local[:n], size) | hull(local[n:2 * n], size)
    return cv2.dilate(own, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(tuning.opening_margin * e) | 1),) * 2))


def _not_frames(openings: np.ndarray, local: np.ndarray, n: int, e: float, tuning: Frames) -> np.ndarray:
    """1 where no rim is looked for: the eye `openings`, and the nose's flanks below the eye
    line between the eyes (their shadow is a dark line too)."""
    own = openings.copy()
    inner = local[[8, n + 8]]  # inner eye corners (133, 362)
    cv2.rectangle(own, (int(inner[:, 0].min()), int(inner[:, 1].max() + tuning.nose_below * e)),
                  (int(inner[:, 0].max()), own.shape[0]), 1, -1)
    return own
