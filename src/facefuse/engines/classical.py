"""The default engine: a dense landmark warp of the source face onto the target geometry.

No model download, CPU only. For each target face:
1. both meshes are fitted with a pose (pose.py); each face's own shape is what its
   landmarks add to the reference mesh seen in that pose, and the source's is carried
   into the target's pose (`shape_difference`), so a pose difference is not taken for a
   shape difference;
2. the result's geometry starts from the target's and moves its inner points a share of
   the way to the source's shape (`ratio` x GEOMETRY_SHARE, less when the two faces are
   turned differently); the face outline stays the target's, so the new face fits the
   head, hair and background exactly, and pose and expression stay the target's;
3. one dense map per image, built from the mesh triangles on a coarse grid and upsampled
   (the map is piecewise affine, so this is almost exact) drives one `cv2.remap` each for
   the source texture and the re-shaped target. The triangles are drawn far to near and
   those facing away are left out (pose.py), so a turned target's far cheek never lands
   on its near one. A turned source's hidden, edge-on or non-skin triangles (its far
   cheek, the background beside its silhouette) take their mirror triangle's texture
   (mesh.mirror()); where neither side is usable, or the target shows a surface much
   more directly than the source does, the target's own skin stays;
4. hair over the forehead (the source's or the target's) is left out of the paste, and so
   is whatever covers the target's face from outside it (a hat brim over the eyes, a
   hand, a lock of hair); hair or shadow anywhere is left out of the light statistics;
5. the source's low frequencies (tone, light, shading) are replaced by the target's
   (masked Gaussian, width tied to the eye distance; the eyes keep the source's colour and
   only take the light's strength), its colourfulness matched, and its
   finest detail matched to the target's crispness (borrowing the target's skin grain
   where a small source face is enlarged);
6. the textures mix by `ratio`; the target's inner mouth is kept, so an open mouth shows
   the target's teeth and a closed one never gets a ghost of the source's; an eye the
   target has (nearly) closed keeps the target's opening.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import mesh, pose
from ..faces import Face
from ..masks import face_region_mask, feather, fill_poly
from . import FusedFace, SourceFace, register

# at ratio 1 the inner face shape moves this share of the way to the source's. With the
# shape carried through the poses (shape_difference) 0.4 keeps the judge's landmark error
# of the 2-D alignment at 0.25 (regular pairs 0.058) and brings the faces closer (mean
# d(result, source) 0.510 -> 0.501); 0.55 gave 0.063
GEOMETRY_SHARE = 0.4
MAP_GRID = 320  # long side of the grid the warp maps are evaluated on
# and at most this share of the ROI's side: the maps are piecewise affine and continuous, so
# upsampled from 0.6 they move the smallest triangles (the lids) by under a pixel; on the talking
# head at 720p this took 8 % of a frame's fusion, judged flicker 0.671 either way (stills with a
# face over ~400 px already sample more coarsely, MAP_GRID / ROI side)
MAP_GRID_SHARE = 0.6
LIGHT_SIGMA = 0.22  # Gaussian sigma of the light transfer, in eye distances
WORK_FACE = 128  # face size (px) at which the light transfer and occlusions are computed
DETAIL_GAIN = (0.6, 2.5)  # bounds of the fine-detail gain that matches the target's crispness
OCCLUSION_NEAR, OCCLUSION_FAR = 3.0, 5.0  # skin-colour distance (robust z) kept / dropped
# Lab L units: the most lightness spread a source's skin may claim above the brows (a
# cheek in hard light spreads ~30, and dark bangs then passed for shaded skin: a bright
# smeared band over the forehead, regular pair 19). 8 cost a regular pair's identity
FOREHEAD_SPREAD = 10.0
EYE_BAND = 0.2  # eye distances below the eye line where the eye band (make-up, glasses) ends
FOREIGN_STEP, FOREIGN_AREA = 25.0, 0.09  # Lab L step from the skin's smooth light, and eye distances^2: an occluder patch
STRAND_CHROMA, STRAND_WIDTH = 14.0, 0.12  # Lab chroma step from the skin's (0: no strand test), and eye distances: hair across a source face
OCCLUDER_MIN = 0.25  # eye distances: target occluders thinner than this (glasses frames, stubble) are ignored
POSE_APART = (25.0, 60.0)  # degrees of yaw difference over which the geometry stops moving to the source's
TURNED = (18.0, 35.0)  # degrees of yaw over which visibility starts to count
SOURCE_FACING = (0.08, 0.3)  # source triangle facing / its frontal facing: mirrored below, its own above
SOURCE_SEEN = (0.08, 0.35)  # share of a source triangle no nearer part hides: mirrored below, its own above
# (both were 0.2-0.45 / 0.2-0.5: a turned source's own foreshortened far side carries more of
# its likeness than its mirrored near side; hard pairs 2, 3, 5 closer to the source, none lost)
TARGET_FACING = (0.05, 0.15)
STRETCH = (2.5, 5.0)  # target / source facing of a surface: the source's texture above, none beyond
PROFILE_YAW = (45.0, 55.0)  # degrees of source or target yaw over which STRETCH tightens to PROFILE_STRETCH
PROFILE_STRETCH = (1.5, 2.5)
PROFILE_EYES = 1.0  # share of the target's own eye region kept for a profile source (see keep_target_eyes)
NEAR_HALF_TURNED = (25.0, 35.0)  # degrees of source yaw over which its far half comes from its near half
NEAR_HALF_BAND = 0.1  # reference units (eye-corner distance 1) over which a turned source's near half gives way to its mirror
MIRROR_GAIN = 0.3  # trust the mirror side must have above the direct one to be taken in full  # target triangle facing / its frontal facing below which its own skin stays
EYE_LIDS = 0.5  # half height of the eye region kept for a closed target eye, in eye widths
EYE_CLOSING = (0.5, 0.8)  # 1 - target / source eye openness: the source's eye below, the target's above
FRAME_STEP = 35.0  # luma levels a glasses frame is darker than what a closing of FRAME_WIDTH fills it with
FRAME_WIDTH = 0.12  # eye distances: dark lines thinner than this (rims, the bridge) are frame candidates
FRAME_SPAN = 0.35  # eye distances: a frame's part spans at least this, across and down (it rings an eye)
FRAME_EYE_PX = 160.0  # eye distance (px) frames are found at: a rim is still a few pixels wide
HOLE_COVER = (0.6, 0.9)  # share of an eye's / the lips' skin ring covered: pasted below, kept above


def _eye_distance(lms: np.ndarray) -> float:
    return float(np.linalg.norm(lms[33] - lms[263])) + 1e-3


def _geometry_weights(lms: np.ndarray) -> np.ndarray:
    """0 on the face outline rising to 1 a fifth of the face inside, per mesh vertex."""
    oval = lms[mesh.FACE_OVAL].astype(np.float64)
    depth = 0.2 * _eye_distance(lms) * 2.0
    return np.clip(_inside_distance(lms[: mesh.N_MESH].astype(np.float64), oval) / depth, 0.0, 1.0).astype(np.float32)


def _inside_distance(pts: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance of each point to the closed polygon's outline, 0 for points outside it
    (what cv2.pointPolygonTest measures, for all points at once)."""
    a, b = polygon, np.roll(polygon, -1, axis=0)  # the edges a -> b
    ab = b - a
    rel = pts[:, None, :] - a[None]  # (P, E, 2)
    t = np.clip((rel * ab).sum(2) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
    dist = np.linalg.norm(rel - t[:, :, None] * ab, axis=2).min(1)
    # even-odd rule: a ray to the right crosses the outline an odd number of times from inside
    y = pts[:, 1:2]
    spans = (a[None, :, 1] > y) != (b[None, :, 1] > y)
    x_cross = a[:, 0] + (y - a[:, 1]) * ab[:, 0] / np.where(ab[:, 1] == 0, 1e-12, ab[:, 1])
    inside = (spans & (pts[:, :1] < x_cross)).sum(1) % 2 == 1
    return np.where(inside, dist, 0.0)


def _triangle_inverses(dst: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3) inverses of each destination triangle's homogeneous corner matrix, and
    which triangles are not degenerate: a triangle's affine map onto any source triangle
    is then one matrix product (the destination is shared by every map of a fusion)."""
    dh = np.concatenate([dst[tris].astype(np.float64), np.ones((len(tris), 3, 1))], axis=2)  # T x 3 x 3
    ok = np.abs(np.linalg.det(dh)) > 1e-6
    inv = np.zeros_like(dh)
    inv[ok] = np.linalg.inv(dh[ok])
    return inv, ok


def _triangle_affines(dst: np.ndarray, src: np.ndarray, tris: np.ndarray,
                      inverses: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2, 3) affine maps taking each destination triangle onto its source triangle."""
    inv, ok = _triangle_inverses(dst, tris) if inverses is None else inverses
    aff = np.transpose(inv @ src[tris].astype(np.float64), (0, 2, 1))
    return aff.astype(np.float32), ok


def dense_maps(
    shape: tuple[int, int],
    dst_pts: np.ndarray,
    src_sets: list[tuple[np.ndarray, np.ndarray]],
    order: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dense remap tables for an image of `shape` (h, w) whose mesh is at `dst_pts`.

    For each (src_pts, fallback 2x3) pair, returns (map_x, map_y) such that
    cv2.remap(source, map_x, map_y) moves every mesh triangle of src_pts onto dst_pts;
    pixels outside the mesh follow the fallback affine transform. The mesh's displacement
    is evaluated on a grid of at most MAP_GRID pixels a side and upsampled, which is exact
    inside each triangle up to the grid's bilinear error and costs little at any size.

    `order`: the triangles to draw, far to near (pose.drawing_order): where a turned face's
    mesh overlaps itself the near triangle wins, and triangles facing away are not drawn.
    Default: all, in index order.
    """
    h, w = shape
    c = min(MAP_GRID_SHARE, MAP_GRID / max(h, w))
    gw, gh = max(2, round(w * c)), max(2, round(h * c))
    cx, cy = gw / w, gh / h
    tris = mesh.triangles()
    # triangle ids on the coarse grid (cv2 grid pixel j <-> full-res x = (j + .5) / c - .5)
    grid_pts = (dst_pts + 0.5) * np.float32([cx, cy]) - 0.5
    ids = np.zeros((gh, gw), np.int32)
    fixed = np.round(grid_pts * 16).astype(np.int32)
    for i in range(len(tris)) if order is None else order:
        cv2.fillConvexPoly(ids, fixed[tris[i]], int(i) + 1, lineType=cv2.LINE_8, shift=4)
    gx = (np.arange(gw, dtype=np.float32) + 0.5) / cx - 0.5
    gy = (np.arange(gh, dtype=np.float32) + 0.5) / cy - 0.5
    inverses = _triangle_inverses(dst_pts, tris)
    out = []
    for src_pts, fallback in src_sets:
        aff, ok = _triangle_affines(dst_pts, src_pts, tris, inverses)
        # per triangle, how its map differs from the fallback (0 outside the mesh, id 0, and
        # for degenerate triangles): only this displacement is upsampled; the fallback itself
        # is evaluated exactly at full size, so pixels outside the face map exactly, also at
        # the ROI's border, where bilinear upsampling of the whole map would clamp instead of
        # extrapolating (a 1.4 px shift, seen in a test)
        delta = np.zeros((6, len(tris) + 1), np.float32)  # per id, the map's six terms (rows of the 2x3)
        delta[:, 1:][:, ok] = (aff[ok] - fallback[None].astype(np.float32)).reshape(-1, 6).T
        coords = []
        for row, fixed_coord in zip((delta[:3], delta[3:]), _affine_grid(fallback, w, h)):
            # the grid pixel's triangle's row of the map, applied to the pixel's (x, y, 1)
            d, dy, d0 = (np.take(terms, ids) for terms in row)
            d *= gx[None, :]
            dy *= gy[:, None]
            d += dy
            d += d0
            if (gw, gh) != (w, h):
                d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
            coords.append(cv2.add(fixed_coord, d))
        out.append((coords[0], coords[1]))
    return out


def _affine_grid(m: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The 2x3 affine map m evaluated at every pixel of a w x h image (float32)."""
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    fx = (m[0, 0] * xs + m[0, 2]) + m[0, 1] * ys
    fy = (m[1, 0] * xs + m[1, 2]) + m[1, 1] * ys
    return np.ascontiguousarray(fx, np.float32), np.ascontiguousarray(fy, np.float32)


class WorkScale:
    """The reduced scale (face about WORK_FACE px) the light transfer and the occlusion
    tests run at, for one ROI: each image they share is shrunk (and taken to Lab) once
    per fusion, not once per test."""

    def __init__(self, shape: tuple[int, int], eye_dist: float):
        h, w = shape
        self.shape = (h, w)
        self.scale = min(1.0, WORK_FACE / max(eye_dist * 2.5, 1.0))
        self.size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))  # (w, h) for OpenCV
        self._done: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def _memo(self, kind: str, x: np.ndarray, make) -> np.ndarray:
        hit = self._done.get((kind, id(x)))
        if hit is None or hit[0] is not x:  # (the array is held, so its id is not reused meanwhile)
            hit = self._done[(kind, id(x))] = (x, make(x))
        return hit[1]

    def small(self, x: np.ndarray) -> np.ndarray:
        return self._memo("small", x, lambda a: cv2.resize(a, self.size, interpolation=cv2.INTER_AREA))

    def lab(self, rgb: np.ndarray) -> np.ndarray:
        """The shrunk RGB (0..255) as float Lab."""
        return self._memo("lab", rgb, lambda a: cv2.cvtColor(np.clip(self.small(a) / 255.0, 0, 1).astype(np.float32),
                                                             cv2.COLOR_RGB2Lab))

    def up(self, x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)


def _masked_blur(img: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of img restricted to mask (normalised convolution)."""
    m = mask[:, :, None]
    num = cv2.GaussianBlur(img * m, (0, 0), sigma)
    den = cv2.GaussianBlur(mask, (0, 0), sigma)[:, :, None]
    return num / np.maximum(den, 1e-4)


LUMA = np.float32([0.299, 0.587, 0.114])


def _chroma_spread(img: np.ndarray, mask: np.ndarray) -> float:
    """RMS distance of the pixels' colour from grey, inside mask."""
    chroma = img - (img @ LUMA)[:, :, None]
    m = mask > 0.5
    return float(np.sqrt((chroma[m] ** 2).sum(1).mean())) if m.any() else 0.0


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
    warp = lambda x: cv2.warpAffine(x, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    weight = (keep * np.clip(warp(previous.mask), 0.0, 1.0) * (mask > 0.05))[:, :, None]
    return (low_src + weight * (warp(previous.low_src) - low_src),
            low_tgt + weight * (warp(previous.low_tgt) - low_tgt))


def transfer_light(src: np.ndarray, tgt: np.ndarray, mask: np.ndarray, eye_dist: float,
                   eyes: tuple[np.ndarray, tuple[slice, slice]] | None = None) -> np.ndarray:
    """`transfer_light_over_time` for one image, without a previous frame."""
    return transfer_light_over_time(src, tgt, mask, eye_dist, eyes)[0]


def transfer_light_over_time(src: np.ndarray, tgt: np.ndarray, mask: np.ndarray, eye_dist: float,
                             eyes: tuple[np.ndarray, tuple[slice, slice]] | None = None,
                             anchor: np.ndarray | None = None, previous: LightField | None = None,
                             keep: float = 0.0, work: WorkScale | None = None) -> tuple[np.ndarray, LightField | None]:
    """src with its low frequencies (tone, light, shading) replaced by tgt's, inside mask
    (float32 RGB 0..255), and its colourfulness matched to tgt's (a grey or sepia target
    stays grey or sepia).

    The source's detail rides on the target's low frequencies with its contrast scaled by
    the square root of the light ratio: a face moved into brighter light gets brighter
    without its highlights blowing out (a plain gain would), one moved into shadow keeps
    some relief. The low frequencies are computed at a reduced scale (face about
    WORK_FACE px) and upsampled, so this costs the same at any resolution.

    `eyes` (a 0..1 mask and the (rows, cols) box it covers, see `_eyes_mask`): where the
    source's own colour is kept and only scaled by the square root
    of the change in the light's strength. Carried as detail over the target's skin tone, an iris takes the
    difference between the two skin tones: brown eyes turned blue-grey, blue ones brown.

    Over time (a video): `anchor` (the face's mesh.RIGID points, ROI pixels) and the
    `previous` frame's LightField mix `keep` of the previous low frequencies into this
    frame's; the LightField of this frame is returned for the next (None without anchor).
    `work`: the ROI's WorkScale, if the caller shrank src or tgt already.
    """
    h, w = mask.shape
    work = work or WorkScale((h, w), eye_dist)
    (sw, sh), scale, up = work.size, work.scale, work.up
    ms, ss, ts = work.small(mask), work.small(src), work.small(tgt)
    sigma = max(1.0, LIGHT_SIGMA * eye_dist * scale)
    low_src, low_tgt = _masked_blur(ss, ms, sigma), _masked_blur(ts, ms, sigma)
    field = None
    if anchor is not None:
        anchor = (anchor.astype(np.float32) + 0.5) * np.float32([sw / w, sh / h]) - 0.5
        if previous is not None and keep > 0:
            low_src, low_tgt = _carried_over(previous, anchor, (sw, sh), low_src, low_tgt, ms, keep)
        field = LightField(low_src=low_src, low_tgt=low_tgt, mask=ms, anchor=anchor)
    contrast = np.sqrt(np.clip((low_tgt + 4.0) / (low_src + 4.0), 0.3, 3.0))
    lit_small = low_tgt + (ss - low_src) * contrast
    chroma_keep = float(np.clip(_chroma_spread(ts, ms) / max(_chroma_spread(lit_small, ms), 1e-3), 0.0, 1.2))
    lit = up(low_tgt) + (src - up(low_src)) * up(contrast)
    if eyes is not None and eyes[0].size:
        # the eyes are not skin: their colour stays the source's, scaled by the square root
        # of the change in light (as the detail's contrast is: the skin's ratio mixes the
        # light with the two skin tones, and in full made dark eyes glow on a pale face)
        e, (rows, cols) = eyes[0][:, :, None], eyes[1]
        gain = up(np.sqrt(np.clip((low_tgt @ LUMA + 4.0) / (low_src @ LUMA + 4.0), 0.3, 3.0)))[rows, cols, None]
        lit[rows, cols] = lit[rows, cols] * (1.0 - e) + np.clip(src[rows, cols] * gain, 0.0, 255.0) * e
    if abs(chroma_keep - 1.0) > 0.02:
        luma = (lit @ LUMA)[:, :, None]
        lit = luma + (lit - luma) * chroma_keep
    return lit, field


def borrow_fine_skin_texture(img: np.ndarray, ref: np.ndarray, skin: np.ndarray, upscale: float) -> np.ndarray:
    """Where the source face is enlarged (a small source on a large target face) it has no
    detail finer than the enlargement; on skin, take that band from the target (pores,
    grain), which carries no identity at these scales but makes the face as crisp as the
    photo around it."""
    if upscale <= 1.25:
        return img
    sigma = min(0.5 * upscale, 6.0)
    band = lambda x: x - cv2.GaussianBlur(x, (0, 0), sigma)
    weight = cv2.GaussianBlur(skin, (0, 0), sigma)[:, :, None]
    return img + weight * (band(ref) - band(img))


def match_detail(img: np.ndarray, ref: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """Scale img's finest detail (what a 1-px Gaussian removes) so that in the face's
    interior it has the energy of ref's: a face resampled from a smaller or softer photo
    gets the target's crispness back, one from a sharper photo is not noisier than its
    surroundings. (The interior only: near the outline the source has hair and edges.)"""
    m = interior.astype(np.uint8)
    if int(cv2.countNonZero(m)) < 64:
        return img
    blur_img = cv2.GaussianBlur(img, (0, 0), 1.0)
    detail = cv2.subtract(img, blur_img)
    gain = float(np.clip(_detail_rms(ref, m) / max(_detail_rms(img, m), 1e-3), DETAIL_GAIN[0], DETAIL_GAIN[1]))
    return cv2.scaleAdd(detail, gain, blur_img)


def _detail_rms(img: np.ndarray, mask: np.ndarray) -> float:
    """RMS of the finest detail's luma inside mask (the blur is linear: taken on the luma)."""
    luma = cv2.transform(img, LUMA[None, :])
    mean, std = cv2.meanStdDev(cv2.subtract(luma, cv2.GaussianBlur(luma, (0, 0), 1.0)), mask=mask)
    return float(np.hypot(mean[0, 0], std[0, 0]))


def _skin_agreement(lab: np.ndarray, reference: np.ndarray, lightness_weight: float,
                    lightness_spread: float | None = None) -> np.ndarray:
    """1 where a pixel's colour is like the reference skin, falling to 0 for colours that
    are not (hair, a hand, a frame). `lightness_spread`: at most this spread of L counts
    (cheeks in hard light spread widely, and dark hair then passed for shaded skin)."""
    ref = lab[reference > 0.5]
    if len(ref) < 20:
        return np.ones(lab.shape[:2], np.float32)
    mu = np.median(ref, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(ref - mu), axis=0), np.float32([5.0, 2.5, 2.5]))
    if lightness_spread is not None:
        spread[0] = min(spread[0], lightness_spread)
    z = (lab - mu) / spread
    dist = np.sqrt(lightness_weight * z[:, :, 0] ** 2 + z[:, :, 1] ** 2 + z[:, :, 2] ** 2)
    return np.clip((OCCLUSION_FAR - dist) / (OCCLUSION_FAR - OCCLUSION_NEAR), 0.0, 1.0).astype(np.float32)


def unoccluded(src: np.ndarray, tgt: np.ndarray, skin: np.ndarray, lms: np.ndarray, eye_dist: float,
               work: WorkScale | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(paste, trust): where the source face may be pasted, and which skin pixels of both
    faces are skin to learn light from (weights 0..1).

    Skin that does not look like the face's own skin is an occluder: the source's hair
    over its forehead must not come in, and the target's hair there must stay; neither
    face's hair or shadowed edges may bias the light transfer. Skin colour is learned below
    the eyes (rarely covered). Above the brows, where hair falls, the paste is cut where
    either face is not skin; below them only where the target is covered from outside
    (`target_occluders`): cutting the source's non-skin along the outline too lost
    identity (judge: 96 % -> 84 % of pairs moved), as its own shaded cheeks read as
    occluders there. Runs at the work scale.
    """
    h, w = skin.shape
    work = work or WorkScale((h, w), eye_dist)
    size, scale = work.size, work.scale
    sk = work.small(skin)
    _, depth, brow_depth = _face_axes(lms, size, scale)
    reference = sk * (depth > 0.15 * eye_dist)  # cheeks and nose: rarely covered
    forehead = (sk > 0.5) & (depth < brow_depth - 0.05 * eye_dist)
    # lightness counts fully on the source (hair is darker or lighter than skin), less on
    # the target, whose own light and shadow must not read as an occluder
    tgt_agree = _skin_agreement(work.lab(tgt), reference, 0.35)
    agree = _skin_agreement(work.lab(src), reference, 1.0) * tgt_agree
    strict = _skin_agreement(work.lab(src), reference, 1.0, FOREHEAD_SPREAD) * tgt_agree
    agree = np.where(forehead, strict, agree)  # the source's bangs (see FOREHEAD_SPREAD)
    below = target_occluders(tgt_agree, sk, eye_dist * scale)
    up = lambda x: np.clip(cv2.resize(cv2.GaussianBlur(x, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return up(np.where(forehead, agree, below).astype(np.float32)), up(agree)


def source_occluders(src: np.ndarray, skin: np.ndarray, lms: np.ndarray, eye_dist: float, turned: float,
                     work: WorkScale | None = None) -> np.ndarray:
    """0..1 where the warped source shows something other than its skin on the face's skin
    (a strand of hair, a hand, the background a profile's silhouette brings in): there the
    target's skin is kept, under the same light, instead of cutting the paste (cutting
    lost identity, see `unoccluded`). Two tests: patches much lighter or darker than the
    skin around them (`_foreign_patches`), on a frontal source not in the band of the eyes
    and brows (there they are eye make-up or a glasses frame, and half a frame filled left a
    ghost of it and lost the likeness: judge 96 % -> 91 %), and, on a turned source (`turned` 0..1), any
    colour unlike its skin (on a frontal one that took shaded cheeks and make-up too and
    cost the likeness). Below the nose a frontal source's beard and stubble are its own
    and stay; a turned one's mouth and chin border the background. Work scale."""
    h, w = skin.shape
    work = work or WorkScale((h, w), eye_dist)
    size, scale = work.size, work.scale
    sk = work.small(skin)
    lab = work.lab(src)
    gy = (np.arange(size[1], dtype=np.float32)[:, None] + 0.5) / scale
    above_mouth = (gy < lms[2, 1]).astype(np.float32) if turned < 0.5 else np.ones_like(gy)  # above the nose's base (upright faces)
    region = sk * above_mouth
    # the eye band counts on a turned source: its dark patches there are sunglasses or make-up
    # that, mirrored, reads as bruises (hard pair 8's lenses were pasted into the target's frames)
    band = (1.0 - turned) * _eye_band(lms, size, scale, eye_dist)
    occ = _foreign_patches(lab[:, :, 0], region * (1.0 - band), eye_dist * scale)
    if turned > 0:
        occ = np.maximum(occ, turned * (1.0 - _skin_agreement(lab, region, 1.0)) * (region > 0.5))
    if turned < 1 and STRAND_CHROMA > 0:
        outline = face_region_mask(lms * scale, (size[1], size[0]), cut_mouth=False)
        beside = _beside_the_eyes(lms, size, scale) * region
        strands = _with_covered_eyes(_strands(lab, region, outline * above_mouth, eye_dist * scale, beside),
                                     lms * scale, eye_dist * scale)
        if STRAND_FOLLOWED_DOWN and strands.any():
            strands = np.maximum(strands, _followed_down(strands, _strands(lab, region, outline, eye_dist * scale)))
        occ = np.maximum(occ, (1.0 - turned) * strands)
    # one work pixel wider: a profile's nose ridge brings a line of background thinner than that
    occ = cv2.dilate(occ, np.ones((3, 3), np.uint8))
    return np.clip(cv2.resize(cv2.GaussianBlur(occ, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _eye_frame(lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mid, across, down): the middle of the eyes and the face's own unit axes."""
    left, right = lms[mesh.RIGHT_EYE].mean(0), lms[mesh.LEFT_EYE].mean(0)
    across = (right - left) / (np.linalg.norm(right - left) + 1e-6)
    return (left + right) / 2, across, np.float32([-across[1], across[0]])


def _face_axes(lms: np.ndarray, size: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(across, depth, brow_top) on the grid of `size` (w, h) at `scale`, in ROI pixels along
    the face's own axes from the middle of the eyes: each pixel's signed distance across the
    face and down it, and the depth of the top of the brows (< 0)."""
    mid, across, down = _eye_frame(lms)
    gx, gy = np.meshgrid((np.arange(size[0]) + 0.5) / scale, (np.arange(size[1]) + 0.5) / scale)
    brows = np.concatenate([lms[mesh.RIGHT_BROW], lms[mesh.LEFT_BROW]])
    return ((gx - mid[0]) * across[0] + (gy - mid[1]) * across[1],
            (gx - mid[0]) * down[0] + (gy - mid[1]) * down[1],
            float(((brows - mid) @ down).min()))


def _beside_the_eyes(lms: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """1 beyond each eye's outer corner, toward the face's outline (along the face's own
    across direction), between the brows' top and the nose's base (grid of `size` at `scale`)."""
    a, d, top = _face_axes(lms, size, scale)
    mid, across, down = _eye_frame(lms)
    outer = max(abs(float((lms[33] - mid) @ across)), abs(float((lms[263] - mid) @ across)))
    bottom = float((lms[2] - mid) @ down)
    return ((np.abs(a) > outer) & (d > top) & (d < bottom)).astype(np.float32)


def _strands(lab: np.ndarray, region: np.ndarray, outline: np.ndarray, eye_dist: float,
             dark_where: np.ndarray | None = None) -> np.ndarray:
    """1 on hair that reaches into a source face from outside it (a strand blown across it):
    a colour unlike the skin's (a chroma step of STRAND_CHROMA: shading and shadow change the
    lightness, and dark hair's lightness step is `_foreign_patches`' test),
    thicker than STRAND_WIDTH eye distances (glasses frames, lashes and brow hairs are
    thinner), and connected to the face's outline (eye make-up, a mole, lipstick are
    not). Where `dark_where` (beside the eyes: `_beside_the_eyes`) also hair STRAND_DARK
    darker than the skin that hangs STRAND_TALL long from the outline. An eye the strand
    covers goes with it (and one it partly covers: see `_with_covered_eyes`): the target's
    eye stays there. Work scale."""
    ref = lab[region > 0.5][:, 1:]
    if len(ref) < 20:
        return np.zeros(region.shape, np.float32)
    # the skin's chroma: the median (hair over a cheek widens any spread measured here)
    chroma_step = np.sqrt(((lab[:, :, 1:] - np.median(ref, axis=0)) ** 2).sum(2))
    k = max(3, int(round(STRAND_WIDTH * eye_dist)) | 1)
    edge = (outline > 0.5) & (cv2.erode((outline > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0)

    def reaching_in(unlike: np.ndarray, tall: float = 0.0) -> np.ndarray:
        cand = cv2.morphologyEx((unlike & (outline > 0.5)).astype(np.uint8), cv2.MORPH_OPEN,
                                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
        touching = np.zeros(count, bool)
        touching[np.unique(labels[edge])] = True
        keep = touching & (stats[:, cv2.CC_STAT_AREA] >= FOREIGN_AREA * eye_dist ** 2)
        keep &= stats[:, cv2.CC_STAT_HEIGHT] >= tall * eye_dist
        keep[0] = False
        return keep[labels]

    found = reaching_in(chroma_step > STRAND_CHROMA)
    if dark_where is not None and STRAND_DARK > 0:
        dark = (lab[:, :, 0] < np.median(lab[:, :, 0][region > 0.5]) - STRAND_DARK) & (dark_where > 0.5)
        found |= reaching_in(dark, STRAND_TALL)
    return found.astype(np.float32)


# an eye and the skin STRAND_EYE_MARGIN eye distances around it go with a strand that
# covers more than STRAND_EYE_SHARE of them: what the strand leaves of the eye is not a
# usable eye (hard pair 20: a brown patch with a faint eye in it; 0.51 covered there).
# Measured: at most 0.13 on the 45 regular pairs, 0.39 on hard pair 11 (its eye cleaner)
STRAND_EYE_SHARE = 0.3
STRAND_EYE_MARGIN = 0.15
# beside the eyes (beyond their outer corners, down to the nose's base) hair darker than
# the skin's median lightness by STRAND_DARK (Lab L) that hangs at least STRAND_TALL eye
# distances long from the outline is a strand too: near-black or dark brown hair has no
# colour for the chroma test, and this is the eye band, where the dark-patch test does not
# look (regular pair 4, the README's example: a grey smudge at the eye). Eye shadow beyond
# the corners is shorter (regular pair 2's was taken without STRAND_TALL); a step of 45
# left most of pair 4's hair
STRAND_DARK = 30.0
STRAND_TALL = 0.6
# a strand found above the mouth is followed below it, where a beard is the person's own and
# no strand is looked for on its own: hard pair 20's strand across the chin; regular pair 1's
# magenta patch of the source's lighting at the jaw
STRAND_FOLLOWED_DOWN = True


def _followed_down(strands: np.ndarray, anywhere: np.ndarray) -> np.ndarray:
    """The parts of `anywhere` (strands looked for on the whole face, the chin included)
    connected to `strands` (those found above the mouth)."""
    whole = anywhere > 0.5
    _, labels = cv2.connectedComponents(whole.astype(np.uint8), connectivity=8)
    on = np.unique(labels[whole & (strands > 0.5)])
    return np.isin(labels, on[on > 0]).astype(np.float32)


def _with_covered_eyes(strands: np.ndarray, lms: np.ndarray, eye_dist: float) -> np.ndarray:
    """`strands` (0..1, work scale) with each eye the strands partly cover added whole (see
    STRAND_EYE_SHARE): the target's eye then stays there. `lms` in work-scale pixels."""
    out = strands.copy()
    k = max(3, int(2 * STRAND_EYE_MARGIN * eye_dist) | 1)
    for ring in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        m = np.zeros(strands.shape, np.uint8)
        cv2.fillConvexPoly(m, np.round(cv2.convexHull(lms[ring])).astype(np.int32), 1)
        around = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
        if strands[around].mean() > STRAND_EYE_SHARE:
            out[around] = 1.0
    return out


def _eye_band(lms: np.ndarray, size: tuple[int, int], scale: float, eye_dist: float) -> np.ndarray:
    """1 on the band across the face from the top of the brows to EYE_BAND eye distances
    below the eye line (grid of `size` at `scale`), measured along the face's own down."""
    _, depth, top = _face_axes(lms, size, scale)
    return ((depth > top - 0.1 * eye_dist) & (depth < EYE_BAND * eye_dist)).astype(np.float32)


def _foreign_patches(lightness: np.ndarray, region: np.ndarray, eye_dist: float) -> np.ndarray:
    """1 on patches of `region` that are FOREIGN_STEP (Lab L) lighter or darker than the
    skin's smooth light around them and at least FOREIGN_AREA eye distances^2 large: a
    strand of hair, a hand's edge, a stripe. Shading is smooth and pores, wrinkles, moles
    and nostrils are small or faint, so they stay the person's own."""
    m = (region > 0.5).astype(np.float32)
    sig = max(1.0, LIGHT_SIGMA * eye_dist)
    cand = np.zeros(m.shape, np.uint8)
    for _ in range(2):  # the second pass learns the light without the patches the first found
        w = m * (1 - cand)
        low = cv2.GaussianBlur(lightness * w, (0, 0), sig) / np.maximum(cv2.GaussianBlur(w, (0, 0), sig), 1e-4)
        cand = ((np.abs(lightness - low) > FOREIGN_STEP) & (m > 0)).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    big = stats[:, cv2.CC_STAT_AREA] >= FOREIGN_AREA * eye_dist ** 2
    big[0] = False
    return big[labels].astype(np.float32)


def target_occluders(tgt_agree: np.ndarray, skin: np.ndarray, eye_dist: float) -> np.ndarray:
    """Where the source may be pasted below the brows (0..1, work scale): not where the
    target's face is covered by something that reaches in from outside it (a hat brim, a
    hand, a lock of hair). Such things stay the target's.

    Occluder = not the target's skin colour, at least OCCLUDER_MIN eye distances thick
    (glasses frames and stubble are opened away), and connected to the edge of the region
    (eye make-up, a mole, a beard's inner patch are not: they are the face's own). An eye
    or the lips (holes in the skin mask) count as covered when most of the skin around
    them is: an eye under a hat brim is not pasted onto the brim."""
    k = max(3, int(round(OCCLUDER_MIN * eye_dist)) | 1)
    occ = cv2.morphologyEx((1.0 - tgt_agree).astype(np.float32), cv2.MORPH_OPEN,
                           cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    _, labels = cv2.connectedComponents((occ > 0.5).astype(np.uint8), connectivity=8)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    occ = occ * np.isin(labels, edge[edge > 0])
    m = (skin > 0.5).astype(np.float32)
    sig = max(1.0, 0.3 * eye_dist)
    around = cv2.GaussianBlur(occ * m, (0, 0), sig) / np.maximum(cv2.GaussianBlur(m, (0, 0), sig), 1e-4)
    lo, hi = HOLE_COVER
    covered = np.where(m > 0, occ, np.clip((around - lo) / (hi - lo), 0.0, 1.0))
    return np.clip(1.0 - covered, 0.0, 1.0).astype(np.float32)


class ClassicalEngine:
    name = "classical"

    def __init__(self, settings=None):
        self.settings = settings
        self._scaled: list[tuple[np.ndarray, float, np.ndarray, np.ndarray | None]] = []  # see _source_at_scale

    accepts_alpha = True  # prepare_source takes the source's opacity: transparent pixels are not face

    def prepare_source(self, image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
        """Keep only the face and a margin (what the warp can sample): a prepared source is
        cached, and a 100-MP photo must not stay in memory for a 1-MP face. `alpha` (uint8,
        the photo's opacity) is cropped alike: see `opaque_weights`."""
        lms = face.landmarks
        margin = 0.6 * max(np.ptp(lms[:, 0]), np.ptp(lms[:, 1]))
        h, w = image.shape[:2]
        x0, y0 = max(0, int(lms[:, 0].min() - margin)), max(0, int(lms[:, 1].min() - margin))
        x1, y1 = min(w, int(np.ceil(lms[:, 0].max() + margin))), min(h, int(np.ceil(lms[:, 1].max() + margin)))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        b = face.box
        moved = Face(box=(b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0), score=face.score,
                     landmarks=(lms - np.float32([x0, y0])).astype(np.float32))
        kept = None if alpha is None or alpha.min() == 255 else np.ascontiguousarray(alpha[y0:y1, x0:x1])
        return SourceFace(image=crop, face=moved, alpha=kept)

    accepts_light = True  # fuse() takes the previous frame's LightField and returns this one's
    # the result changes nothing outside the face's mask (normal mode), so a video may fuse
    # it on the smallest ROI (pipeline.Fuser.fuse_frame's tight_roi)
    tight_roi = True

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float,
             light: LightField | None = None, light_keep: float = 0.0) -> FusedFace:
        """`light`, `light_keep`: a video's previous frame's light and the share of it kept
        (see transfer_light_over_time); the result's `light` is this frame's."""
        h, w = target_roi.shape[:2]
        t_lms = target_landmarks[: mesh.N_MESH].astype(np.float32)
        s_lms = source.face.landmarks[: mesh.N_MESH].astype(np.float32)
        eye = _eye_distance(t_lms)
        face_size = float(np.sqrt(np.prod(t_lms.max(0) - t_lms.min(0))))
        tgt = target_roi.astype(np.float32)

        # 1-2: align the source to the target's pose, then mix the geometries (less of it
        # when the two poses differ: a frontal shape laid over a profile distorts it)
        s_pose, t_pose = pose.fit_pose(s_lms), pose.fit_pose(t_lms)
        align = mesh.similarity(s_lms[mesh.RIGID], t_lms[mesh.RIGID])
        share = ratio * GEOMETRY_SHARE * _pose_agreement(s_pose, t_pose) * _geometry_weights(t_lms)[:, None]
        geom = t_lms + share * shape_difference(s_lms, t_lms, s_pose, t_pose)

        # the source is sampled at about the target face's scale: shrink it first if larger
        source_scale = float(np.sqrt(abs(np.linalg.det(align[:, :2]))))  # > 1: source is enlarged
        src_img, src_alpha, s_pts, to_src = _source_at_scale(source, source_scale, align, self._scaled)

        # 3: one dense map per texture, and one remap each, drawn far to near (the target's
        # triangles facing away are never drawn); a source triangle the source photo hides
        # takes its mirror triangle's texture; per-vertex weights ride along as fields
        t_facing = pose.triangle_facing(t_lms, t_pose)
        turned = _turned(s_pose)
        own = source_weights(src_img, s_pts, s_pose, turned)
        apart = float(_ramp(np.float64(abs(s_pose.yaw - t_pose.yaw)), TURNED))
        s_facing = pose.triangle_facing(s_lms, s_pose)
        profile = _turned(s_pose, PROFILE_YAW)  # the source's
        either_profile = max(profile, _turned(t_pose, PROFILE_YAW))
        direct, mirrored = near_half_first(*unstretched(own, s_facing, t_facing, apart, either_profile), s_facing,
                                           _turned(s_pose, NEAR_HALF_TURNED))
        identity = np.float32([[1, 0, 0], [0, 1, 0]])
        t_seen = 1.0 - _turned(t_pose) * (1.0 - target_trust(t_facing))
        drawn = np.stack([np.ones(mesh.N_MESH), t_seen], 1).astype(np.float32)
        sets = [(s_pts, to_src), (t_lms, identity), (drawn, _constant(0.0, 0.0))]
        # a frontal, opaque source needs no mirror texture: skip its map
        completing = bool((direct < 0.98).any()) or source.alpha is not None
        if completing:
            weights = np.stack([direct, mirrored], 1).astype(np.float32)
            sets += [(s_pts[mesh.mirror()], to_src), (weights, _constant(1.0, 0.0))]
        maps = dense_maps((h, w), geom, sets, order=pose.drawing_order(t_facing, t_pose))
        (sx, sy), (tx, ty), (covered, t_trust) = maps[:3]
        warped_src = cv2.remap(src_img, sx, sy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        valid = np.ones((h, w), np.float32)
        if completing:
            (mx, my), (d, m) = maps[3:]
            warped_mirror = cv2.remap(src_img, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
            d, m = np.clip(d, 0, 1), np.clip(m, 0, 1)
            if src_alpha is not None:
                d, m = d * opaque_weights(src_alpha, sx, sy, eye), m * opaque_weights(src_alpha, mx, my, eye)
            warped_src, valid = complete_by_symmetry(warped_src, warped_mirror, d, m)
        base = tgt if ratio == 0 else cv2.remap(tgt, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

        # 4-5: leave hair, hands, glasses where they are, take the target's light, mix the
        # textures, keep the target's mouth opening and eye openings
        skin = face_region_mask(geom, (h, w), cut_mouth=True, skin_only=True)
        region = face_region_mask(geom, (h, w), cut_mouth=True)
        work = WorkScale((h, w), eye)
        paste, trust = unoccluded(warped_src, base, skin, geom, eye, work)
        region = region * paste
        # where neither side of the source is trusted, or the target turns edge-on, the
        # target's own texture stays: blended in the image, not cut from the mask (the
        # feather erodes every hole in the mask by 7 % of the face)
        shown = np.clip(valid * covered * t_trust, 0.0, 1.0) * (1.0 - source_occluders(warped_src, skin, geom, eye, turned, work))
        lit, field = transfer_light_over_time(warped_src, base, skin * trust * (shown > 0.5), eye,
                                              _eyes_mask(geom, (h, w), eye), anchor=geom[mesh.RIGID],
                                              previous=light, keep=light_keep, work=work)
        lit = borrow_fine_skin_texture(lit, base, skin, source_scale)
        alpha = feather(region, face_size)  # the blend's alpha too (FusedFace.alpha)
        lit = match_detail(lit, base, alpha > 0.95)
        fused = base + (ratio * shown)[:, :, None] * (lit - base)
        keep_target_eyes(fused, base, geom, t_lms, s_lms, eye, at_least=PROFILE_EYES * profile)
        return FusedFace(image=fused, base=base, mask=region, landmarks=geom, face_size=face_size, light=field,
                         overlay=target_frames(base, geom, eye), alpha=alpha)


def target_frames(img: np.ndarray, lms: np.ndarray, eye_dist: float) -> np.ndarray | None:
    """0..1 over the ROI where the target wears glasses frames (None: no frames found), to
    be laid over the blended face (FusedFace.overlay): a frame is thinner than the occluder
    rule's opening and faded where the face was pasted.

    A ridge filter, not skin colour: a frame is a line darker than a closing FRAME_WIDTH
    wide fills it with (a black-hat), looked for only in the box around the eyes and
    brows, inside the face and outside the eye openings and the nose's flanks. Only lines
    that ring an eye count (in the eye's middle column, above its upper lid and below its
    lower one): a brow joined to a lid crease hooks round the eye's corner only, and on
    the 60 dev targets only the three wearing dark frames are found, so a face without
    glasses keeps the source's eyes and brows. (Brows are not cut out: a top rim runs
    under them and was lost.) Found at an eye distance of FRAME_EYE_PX; the pixels laid over are the
    target's own at full resolution, so the frame stays as crisp as the photo."""
    h, w = img.shape[:2]
    pts = np.concatenate([lms[mesh.RIGHT_EYE], lms[mesh.LEFT_EYE], lms[mesh.RIGHT_BROW], lms[mesh.LEFT_BROW]])
    x0, y0 = (pts.min(0) - np.float32([0.35, 0.1]) * eye_dist).astype(int)
    x1, y1 = (pts.max(0) + np.float32([0.35, 0.3]) * eye_dist).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    scale = min(1.0, FRAME_EYE_PX / eye_dist)
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    luma = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA) @ LUMA
    e = eye_dist * scale
    k = max(3, int(round(FRAME_WIDTH * e)) | 1)
    ridge = cv2.morphologyEx(luma.astype(np.float32), cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    own = np.zeros((size[1], size[0]), np.uint8)  # the eye openings: not frames
    local = (pts - np.float32([x0, y0])) * scale
    n = len(mesh.RIGHT_EYE)
    for part in (local[:n], local[n:2 * n]):
        cv2.fillConvexPoly(own, np.round(cv2.convexHull(part)).astype(np.int32), 1)
    own = cv2.dilate(own, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(0.04 * e) | 1),) * 2))
    # the nose's flanks below the eye line between the eyes (their shadow is a dark line
    # too), and whatever lies outside the face (hair at the temples, the background)
    inner = local[[8, n + 8]]  # inner eye corners (133, 362)
    cv2.rectangle(own, (int(inner[:, 0].min()), int(inner[:, 1].max() + 0.1 * e)),
                  (int(inner[:, 0].max()), size[1]), 1, -1)
    face = face_region_mask((lms - np.float32([x0, y0])) * scale, (size[1], size[0]), cut_mouth=False)
    cand = ((ridge > FRAME_STEP) & (own == 0) & (face > 0.99)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    # a rim rings an eye: in the eye's middle column it passes both above the upper lid and
    # below the lower one (a brow joined to a lid crease only hooks round the corner)
    ring = (stats[:, cv2.CC_STAT_WIDTH] >= FRAME_SPAN * e) & (stats[:, cv2.CC_STAT_HEIGHT] >= FRAME_SPAN * e)
    around = np.zeros_like(ring)
    for eye_pts in (local[:n], local[n:2 * n]):
        ex, ey0, ey1 = eye_pts[:, 0].mean(), eye_pts[:, 1].min(), eye_pts[:, 1].max()
        column = labels[:, max(0, int(ex - 0.1 * e)):max(1, int(ex + 0.1 * e) + 1)]
        above = np.unique(column[:max(0, int(ey0))])
        below = np.unique(column[min(size[1], int(ey1 + 0.05 * e) + 1):])
        around[np.intersect1d(above, below)] = True
    ring &= around
    ring[0] = False
    if not ring.any():
        return None
    # a brow joined to a top rim is the person's own, not the frame: not laid over
    brows = np.zeros_like(own)
    for part in (local[2 * n:2 * n + 10], local[2 * n + 10:]):
        cv2.fillConvexPoly(brows, np.round(cv2.convexHull(part)).astype(np.int32), 1)
    # as strong as the line is dark: the rim's core in full, its soft edge partly
    frames = (ring[labels] & (brows == 0)) * np.clip(ridge / FRAME_STEP - 0.5, 0.0, 1.0)
    frames = cv2.resize(cv2.GaussianBlur(frames, (0, 0), 0.7), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), np.float32)
    out[y0:y1, x0:x1] = np.clip(frames, 0.0, 1.0)
    return out


def _constant(a: float, b: float) -> np.ndarray:
    """The 2x3 'affine map' whose value is (a, b) everywhere: the outside of a vertex field."""
    return np.float32([[0, 0, a], [0, 0, b]])


def _ramp(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    lo, hi = bounds
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def shape_difference(s_lms: np.ndarray, t_lms: np.ndarray, s_pose: pose.Pose, t_pose: pose.Pose) -> np.ndarray:
    """(468, 2) px: how the source's face shape differs from the target's, drawn in the
    target's pose. Each face's shape is what its landmarks add to the reference mesh
    projected in its own pose; the source's is carried into the target's view through
    the two poses (a frontal source's width narrows on a turned target), so a pose
    difference is not taken for a shape difference."""
    ref = mesh.reference()

    def own_shape(lms: np.ndarray, p: pose.Pose) -> np.ndarray:
        r = lms.astype(np.float64) - p.scale * ref @ p.rotation[:2].T
        return r - r[mesh.RIGID].mean(0)

    into_target = (t_pose.scale / s_pose.scale) * t_pose.rotation[:2] @ s_pose.rotation[:2].T
    return (own_shape(s_lms, s_pose) @ into_target.T - own_shape(t_lms, t_pose)).astype(np.float32)


def _pose_agreement(a: pose.Pose, b: pose.Pose) -> float:
    """1 when two faces are turned alike, falling to 0 as their yaws differ by POSE_APART."""
    return float(1.0 - _ramp(np.float64(abs(a.yaw - b.yaw)), POSE_APART))


def _turned(p: pose.Pose, bounds: tuple[float, float] | None = None) -> float:
    """0 for a face within bounds[0] degrees of frontal, 1 beyond bounds[1] (default TURNED:
    a frontal face's edge-on outline and nostrils are no reason to change how it is sampled)."""
    return float(_ramp(np.float64(abs(p.yaw)), TURNED if bounds is None else bounds))


def source_weights(image: np.ndarray, lms: np.ndarray, p: pose.Pose, turned: float) -> np.ndarray:
    """(468,) per vertex, 0..1: how much of the source's own texture to take there (the
    rest from its mirror side, or the target). 1 everywhere for a frontal source (`turned`
    0, see `_turned`): there the skin test also took shaded cheeks, make-up and beard shadow
    for occluders, and the likeness suffered (judge: 96 % -> 87 % of the regular pairs)."""
    if turned <= 0:
        return np.ones(mesh.N_MESH)
    trust = 1.0 - turned * (1.0 - source_trust(lms, p))
    # a turned source's mouth and chin border the background: no beard rule there
    return trust * (1.0 - turned * (1.0 - source_skin(image, lms, trust, keep_beard=turned < 0.5)))


def unstretched(own: np.ndarray, s_facing: np.ndarray, t_facing: np.ndarray, apart: float,
                profile: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(direct, mirrored) per-vertex weights: `own` (see `source_weights`) and the mirror
    side's, each lowered where the target shows the surface much more directly than the
    source does (a frontal source's edge-on cheek side spread over a profile target's near
    cheek comes out as smeared bands of hair and edge). Stretch is the ratio of the two
    facings, beyond the faces' overall scale (which the facings do not include). `apart`
    0..1: how differently the two faces are turned (two faces turned alike stretch
    nothing; their edge-on outlines only make noise). `profile` 0..1: how near the source
    or the target is to a profile (PROFILE_YAW): the bounds tighten to PROFILE_STRETCH.
    A profile source's near side is itself foreshortened, and its eye stretched over a
    frontal target's came out as dark, doubled sockets (hard pairs 0, 2; keep_target_eyes
    then keeps the target's eyes); a frontal source's cheek stretched over a profile
    target's near cheek came out as streaks and a glossy band (hard pairs 9, 10)."""
    s_v = pose.vertex_mean(np.clip(s_facing, 0.0, None))
    t_v = pose.vertex_mean(np.clip(t_facing, 0.0, None))
    mirror = mesh.mirror()
    bounds = tuple(a + profile * (b - a) for a, b in zip(STRETCH, PROFILE_STRETCH))
    keep = lambda s: 1.0 - apart * _ramp(t_v / np.maximum(s, 0.05), bounds)
    return own * keep(s_v), own[mirror] * keep(s_v[mirror])


def near_half_first(direct: np.ndarray, mirrored: np.ndarray, s_facing: np.ndarray,
                    turned: float) -> tuple[np.ndarray, np.ndarray]:
    """(direct, mirrored) with a turned source's far half taken from its near half's mirror
    and its near half from itself, switching over NEAR_HALF_BAND at the midline (`turned`
    0..1 scales the rule in). The far half of a turned face is foreshortened, shadowed and
    bordered by hair or background; sampled where partly trusted, it blended the two
    halves into doubled eyes, grey half-moons and dark smears (hard pairs 2, 3, 5)."""
    if turned <= 0:
        return direct, mirrored
    x = mesh.reference()[:, 0]
    facing = pose.vertex_mean(np.clip(s_facing, 0.0, None))
    near_sign = 1.0 if facing[x > 0].mean() >= facing[x < 0].mean() else -1.0
    near = np.clip(0.5 + near_sign * x / NEAR_HALF_BAND, 0.0, 1.0)  # 1 on the near half, 0 on the far
    return (direct * (1.0 - turned * (1.0 - np.clip(2.0 * near, 0.0, 1.0))),
            mirrored * (1.0 - turned * (1.0 - np.clip(2.0 * (1.0 - near), 0.0, 1.0))))


def source_trust(lms: np.ndarray, p: pose.Pose) -> np.ndarray:
    """(468,) per vertex, 0..1: how well the source photo shows the face around it. A
    triangle is trusted when it faces the camera about as well as it does in a frontal
    photo (a nose flank is edge-on in any photo) and no nearer part of the face hides it."""
    facing = pose.triangle_facing(lms, p)
    foreshortening = facing / np.maximum(pose.frontal_facing(), 0.3)
    hidden = pose.unoccluded_share(lms, facing, p) / np.maximum(pose.frontal_share(), 0.3)
    seen = _ramp(foreshortening, SOURCE_FACING) * _ramp(hidden, SOURCE_SEEN)
    return pose.vertex_mean(seen)


def source_skin(image: np.ndarray, lms: np.ndarray, trust: np.ndarray, keep_beard: bool) -> np.ndarray:
    """(468,) per vertex, 0..1: whether the source photo shows skin there, where it should
    (not at the eyes, brows or lips): a lock of hair, a hand, a glasses frame, or the
    background beside a profile's silhouette reads as not skin, and such a vertex takes
    its mirror side's texture, or the target's. The skin colour is learned from the
    triangles the photo shows well (`trust`). With `keep_beard` (a source not turned far:
    a turned one's mouth and chin lie at its silhouette, beside the background), a beard
    or stubble below the nose is the person's own and counts as skin. Runs at the work scale."""
    eye = _eye_distance(lms)
    scale = min(1.0, WORK_FACE / max(eye * 2.5, 1.0))
    h, w = image.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
    pts = lms[: mesh.N_MESH] * scale
    skin = face_region_mask(pts, (size[1], size[0]), cut_mouth=True, skin_only=True)
    shown = np.zeros_like(skin)
    tris = mesh.triangles()
    for t in tris[trust[tris].min(1) > 0.8]:
        cv2.fillConvexPoly(shown, np.round(pts[t]).astype(np.int32), 1.0)
    agree = cv2.GaussianBlur(_skin_agreement(lab, skin * shown, 1.0), (0, 0), 1.0)
    xy = np.clip(np.round(pts).astype(int), 0, [size[0] - 1, size[1] - 1])
    on_skin = skin[xy[:, 1], xy[:, 0]] > 0.5
    ref = mesh.reference()
    own_beard = (ref[:, 1] > ref[2, 1]) & (trust > 0.9) & keep_beard
    return np.where(on_skin & ~own_beard, agree[xy[:, 1], xy[:, 0]], 1.0)


def target_trust(facing: np.ndarray) -> np.ndarray:
    """(468,) per vertex, 0..1: where the target face turns edge-on (its far cheek at the
    silhouette) the source is not pasted; the target's own skin stays."""
    return pose.vertex_mean(_ramp(facing / np.maximum(pose.frontal_facing(), 0.3), TARGET_FACING))


def complete_by_symmetry(direct: np.ndarray, mirrored: np.ndarray, d: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(texture, validity): the warped source where it is trusted (`d`), its mirror-side
    texture where that is trusted instead (`m`) and clearly more than the direct one (a
    frontal face's two edge-on sides are no better than each other), blended smoothly;
    validity 0..1 is low where neither side can be trusted (the target's own texture stays
    there)."""
    take_mirror = (1.0 - d) * m * np.clip((m - d) / MIRROR_GAIN, 0.0, 1.0)
    valid = d + take_mirror
    w = (take_mirror / np.maximum(valid, 1e-3))[:, :, None]
    return direct + w * (mirrored - direct), valid


def keep_target_eyes(fused: np.ndarray, base: np.ndarray, lms: np.ndarray, t_lms: np.ndarray, s_lms: np.ndarray,
                     eye_dist: float, at_least: float = 0.0) -> None:
    """Put the target's eye back (in place: the opening, the lids and the lashes around it)
    where the target's eye is much more closed than the source's (a closed, sleepy or
    downcast eye): the source's open eye and lids squeezed into it look awake and dark.
    Where both are open the source's eye stays (its colour and look carry much of the
    likeness: keeping the target's open eyes moved identity in 11 % of the hard pairs
    instead of 46 %). `lms`: the result's geometry; the openness compared is the target's
    own (`t_lms`: the result's eye is partly the source's). `at_least`: the share kept in any
    case (a profile source, whose near eye is edge-on and far eye hidden: PROFILE_EYES)."""
    h, w = fused.shape[:2]
    for lids in (mesh.RIGHT_EYE_LIDS, mesh.LEFT_EYE_LIDS):
        keep = max(_closing(t_lms, s_lms, lids), at_least)
        if keep <= 0:
            continue
        a, b = lms[lids[2]], lms[lids[3]]
        centre, width = (a + b) / 2.0, float(np.linalg.norm(b - a)) + 1e-3
        pad = int(np.ceil(width)) + 2
        x0, y0 = max(0, int(centre[0]) - pad), max(0, int(centre[1]) - pad)
        x1, y1 = min(w, int(centre[0]) + pad), min(h, int(centre[1]) + pad)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.zeros((y1 - y0, x1 - x0), np.float32)
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        axes = (max(1, int(0.75 * width)), max(1, int(EYE_LIDS * width)))
        cv2.ellipse(m, (int(centre[0]) - x0, int(centre[1]) - y0), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
        m = cv2.GaussianBlur(m, (0, 0), max(0.5, 0.04 * eye_dist))[:, :, None] * keep
        fused[y0:y1, x0:x1] += m * (base[y0:y1, x0:x1] - fused[y0:y1, x0:x1])


def _closing(lms: np.ndarray, s_lms: np.ndarray, lids: tuple[int, int, int, int]) -> float:
    """0..1: how much more closed the target's eye (lms) is than the source's."""
    t, s = mesh.eye_openness(lms, lids), mesh.eye_openness(s_lms, lids)
    return float(_ramp(1.0 - t / max(s, 1e-3), EYE_CLOSING))


def _eyes_mask(lms: np.ndarray, shape: tuple[int, int], eye_dist: float) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Soft mask (0..1) of both eye openings at landmarks `lms`, computed only in the box
    around the eyes (a full-ROI blur cost 0.14 s at 4096): (mask, (rows, cols) of the box)."""
    pts = np.concatenate([lms[mesh.RIGHT_EYE], lms[mesh.LEFT_EYE]])
    sig = max(0.5, 0.04 * eye_dist)
    pad = int(np.ceil(3 * sig)) + 2
    h, w = shape
    x0, y0 = max(0, int(pts[:, 0].min()) - pad), max(0, int(pts[:, 1].min()) - pad)
    x1, y1 = min(w, int(np.ceil(pts[:, 0].max())) + pad), min(h, int(np.ceil(pts[:, 1].max())) + pad)
    box = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
    m = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.float32)
    if m.size:
        for region in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
            fill_poly(m, lms[region] - np.float32([x0, y0]), 1.0)
        m = cv2.GaussianBlur(m, (0, 0), sig)
    return m, box


def opaque_weights(alpha: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, eye_dist: float) -> np.ndarray:
    """0..1 per ROI pixel: the source's opacity where the map samples it (outside the photo
    counts as opaque, as its reflected border is sampled there). A semi-transparent band
    over a source face is then not face: the mirror side or the target's skin fills it,
    as an occluder's place is filled, instead of the flattened colour being pasted as skin.
    Full trust needs near-full opacity (half transparent is already mostly background), and
    the weight is pulled back from the band's edge and softened (the cubic resampling and
    the light's low frequencies carry the band's flattened colour a few pixels out: bright
    seams along it, seen)."""
    a = cv2.remap(alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
    k = max(3, int(round(0.1 * eye_dist)) | 1)
    a = cv2.erode(np.clip((a - 0.5) / 0.45, 0.0, 1.0), np.ones((k, k), np.uint8))
    return cv2.GaussianBlur(a, (0, 0), max(0.5, 0.04 * eye_dist))


SHRINK_STEP = 64  # the source's shrink factor is rounded to 1/64: a video's frames share one resize


def _source_at_scale(source: SourceFace, scale: float, align: np.ndarray,
                     cache: list | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The prepared source crop, shrunk when its face is larger than the target's (`scale`:
    source px -> ROI px), so the warp never samples below the source's own detail.

    Returns the image to sample, its alpha (None: opaque), the source landmarks in its
    pixels, and the 2x3 map from ROI pixels to its pixels used outside the mesh.
    `cache` (a list the engine keeps): the last few shrunk crops, reused while the same
    source is fused at the same rounded scale (every frame of a video: the resize of a
    large source crop cost 8 ms a frame, measured on the talking head at 720p).
    """
    image, alpha = source.image, source.alpha
    shrink = max(1, round(min(1.0, scale * 1.1) * SHRINK_STEP)) / SHRINK_STEP
    to_image = np.float32([[1, 0, 0], [0, 1, 0]])
    if shrink < 1.0:
        size = (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink)))
        hit = next((c for c in cache or () if c[0] is source.image and c[1] == shrink), None)
        if hit is not None:
            image, alpha = hit[2], hit[3]
        else:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            alpha = None if alpha is None else cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
            if cache is not None:
                cache[:] = [(source.image, shrink, image, alpha)] + cache[:3]
        to_image = np.float32([[size[0] / source.image.shape[1], 0, 0], [0, size[1] / source.image.shape[0], 0]])
    pts = mesh.apply_affine(to_image, source.face.landmarks[: mesh.N_MESH])
    inv_align = cv2.invertAffineTransform(align.astype(np.float32))  # ROI px -> source px
    full = np.vstack([to_image, [0, 0, 1]]) @ np.vstack([inv_align, [0, 0, 1]])
    return image, alpha, pts, full[:2].astype(np.float32)


register("classical", ClassicalEngine)
