"""The default engine: a dense landmark warp of the source face onto the target geometry.

No model download, CPU only. For each target face:
1. the source mesh is aligned to the target by a similarity on rigid points (forehead,
   nose bridge, eye corners), so the source's pose no longer matters;
2. the result's geometry starts from the target's and moves its inner points a share of
   the way to the aligned source (`ratio` x GEOMETRY_SHARE); the face outline stays the
   target's, so the new face fits the head, hair and background exactly, and pose and
   expression stay the target's;
3. one dense map per image, built from the mesh triangles on a coarse grid and upsampled
   (the map is piecewise affine, so this is almost exact) drives one `cv2.remap` each for
   the source texture and the re-shaped target;
4. hair over the forehead (the source's or the target's) is left out of the paste, and so
   is whatever covers the target's face from outside it (a hat brim over the eyes, a
   hand, a lock of hair); hair or shadow anywhere is left out of the light statistics;
5. the source's low frequencies (tone, light, shading) are replaced by the target's
   (masked Gaussian, width tied to the eye distance; the eyes keep the source's colour and
   only take the light's strength), its colourfulness matched, and its
   finest detail matched to the target's crispness (borrowing the target's skin grain
   where a small source face is enlarged);
6. the textures mix by `ratio`; the target's inner mouth is kept, so an open mouth shows
   the target's teeth and a closed one never gets a ghost of the source's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import mesh
from ..faces import Face
from ..masks import face_region_mask, feather, fill_poly
from . import FusedFace, SourceFace, register

GEOMETRY_SHARE = 0.25  # at ratio 1 the inner face shape moves half way to the source's
MAP_GRID = 320  # long side of the grid the warp maps are evaluated on
LIGHT_SIGMA = 0.22  # Gaussian sigma of the light transfer, in eye distances
WORK_FACE = 128  # face size (px) at which the light transfer and occlusions are computed
DETAIL_GAIN = (0.6, 2.5)  # bounds of the fine-detail gain that matches the target's crispness
OCCLUSION_NEAR, OCCLUSION_FAR = 3.0, 5.0  # skin-colour distance (robust z) kept / dropped
OCCLUDER_MIN = 0.25  # eye distances: target occluders thinner than this (glasses frames, stubble) are ignored
HOLE_COVER = (0.6, 0.9)  # share of an eye's / the lips' skin ring covered: pasted below, kept above


def _eye_distance(lms: np.ndarray) -> float:
    return float(np.linalg.norm(lms[33] - lms[263])) + 1e-3


def _geometry_weights(lms: np.ndarray) -> np.ndarray:
    """0 on the face outline rising to 1 a fifth of the face inside, per mesh vertex."""
    oval = lms[mesh.FACE_OVAL].astype(np.float32).reshape(-1, 1, 2)
    depth = 0.2 * _eye_distance(lms) * 2.0
    dist = np.array([cv2.pointPolygonTest(oval, (float(x), float(y)), True) for x, y in lms[: mesh.N_MESH]])
    return np.clip(dist / depth, 0.0, 1.0).astype(np.float32)


def _triangle_affines(dst: np.ndarray, src: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affine maps taking each destination triangle onto its source triangle."""
    d = dst[tris].astype(np.float64)  # T x 3 x 2
    s = src[tris].astype(np.float64)
    ones = np.ones((len(tris), 3, 1))
    dh = np.concatenate([d, ones], axis=2)  # T x 3 x 3
    det = np.linalg.det(dh)
    ok = np.abs(det) > 1e-6
    aff = np.zeros((len(tris), 2, 3))
    aff[ok] = np.transpose(np.linalg.solve(dh[ok], s[ok]), (0, 2, 1))
    return aff.astype(np.float32), ok


def dense_maps(
    shape: tuple[int, int],
    dst_pts: np.ndarray,
    src_sets: list[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dense remap tables for an image of `shape` (h, w) whose mesh is at `dst_pts`.

    For each (src_pts, fallback 2x3) pair, returns (map_x, map_y) such that
    cv2.remap(source, map_x, map_y) moves every mesh triangle of src_pts onto dst_pts;
    pixels outside the mesh follow the fallback affine transform. The mesh's displacement
    is evaluated on a grid of at most MAP_GRID pixels a side and upsampled, which is exact
    inside each triangle up to the grid's bilinear error and costs little at any size.
    """
    h, w = shape
    c = min(1.0, MAP_GRID / max(h, w))
    gw, gh = max(2, round(w * c)), max(2, round(h * c))
    cx, cy = gw / w, gh / h
    tris = mesh.triangles()
    # triangle ids on the coarse grid (cv2 grid pixel j <-> full-res x = (j + .5) / c - .5)
    grid_pts = (dst_pts + 0.5) * np.float32([cx, cy]) - 0.5
    ids = np.zeros((gh, gw), np.int32)
    fixed = np.round(grid_pts * 16).astype(np.int32)
    for i, t in enumerate(tris):
        cv2.fillConvexPoly(ids, fixed[t], i + 1, lineType=cv2.LINE_8, shift=4)
    gx = (np.arange(gw, dtype=np.float32) + 0.5) / cx - 0.5
    gy = (np.arange(gh, dtype=np.float32) + 0.5) / cy - 0.5
    px, py = np.meshgrid(gx, gy)
    inside = ids > 0
    tid = ids[inside] - 1
    xin, yin = px[inside], py[inside]
    out = []
    for src_pts, fallback in src_sets:
        aff, ok = _triangle_affines(dst_pts, src_pts, tris)
        a, use = aff[tid], ok[tid]
        # only the mesh's displacement from the fallback is upsampled (it is 0 outside the
        # mesh); the fallback itself is evaluated exactly at full size, so pixels outside
        # the face map exactly, also at the ROI's border, where bilinear upsampling of the
        # whole map would clamp instead of extrapolating (a 1.4 px shift, seen in a test)
        disp = []
        for r in (0, 1):
            inner = a[:, r, 0] * xin + a[:, r, 1] * yin + a[:, r, 2]
            outer = fallback[r, 0] * xin + fallback[r, 1] * yin + fallback[r, 2]
            d = np.zeros((gh, gw), np.float32)
            d[inside] = np.where(use, inner - outer, 0.0)
            disp.append(d if (gw, gh) == (w, h) else cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR))
        fx, fy = _affine_grid(fallback, w, h)
        out.append((cv2.add(fx, disp[0]), cv2.add(fy, disp[1])))
    return out


def _affine_grid(m: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The 2x3 affine map m evaluated at every pixel of a w x h image (float32)."""
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    fx = (m[0, 0] * xs + m[0, 2]) + m[0, 1] * ys
    fy = (m[1, 0] * xs + m[1, 2]) + m[1, 1] * ys
    return np.ascontiguousarray(fx, np.float32), np.ascontiguousarray(fy, np.float32)


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
                             keep: float = 0.0) -> tuple[np.ndarray, LightField | None]:
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
    """
    h, w = mask.shape
    scale = min(1.0, WORK_FACE / max(eye_dist * 2.5, 1.0))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = lambda x: cv2.resize(x, (sw, sh), interpolation=cv2.INTER_AREA)
    up = lambda x: cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)
    ms, ss, ts = small(mask), small(src), small(tgt)
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
    ref_detail = cv2.subtract(ref, cv2.GaussianBlur(ref, (0, 0), 1.0))
    gain = float(np.clip(_luma_rms(ref_detail, m) / max(_luma_rms(detail, m), 1e-3), DETAIL_GAIN[0], DETAIL_GAIN[1]))
    return cv2.scaleAdd(detail, gain, blur_img)


def _luma_rms(img: np.ndarray, mask: np.ndarray) -> float:
    luma = cv2.transform(img, LUMA[None, :])
    mean, std = cv2.meanStdDev(luma, mask=mask)
    return float(np.hypot(mean[0, 0], std[0, 0]))


def _skin_agreement(lab: np.ndarray, reference: np.ndarray, lightness_weight: float) -> np.ndarray:
    """1 where a pixel's colour is like the reference skin, falling to 0 for colours that
    are not (hair, a hand, a frame)."""
    ref = lab[reference > 0.5]
    if len(ref) < 20:
        return np.ones(lab.shape[:2], np.float32)
    mu = np.median(ref, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(ref - mu), axis=0), np.float32([5.0, 2.5, 2.5]))
    z = (lab - mu) / spread
    dist = np.sqrt(lightness_weight * z[:, :, 0] ** 2 + z[:, :, 1] ** 2 + z[:, :, 2] ** 2)
    return np.clip((OCCLUSION_FAR - dist) / (OCCLUSION_FAR - OCCLUSION_NEAR), 0.0, 1.0).astype(np.float32)


def unoccluded(src: np.ndarray, tgt: np.ndarray, skin: np.ndarray, lms: np.ndarray, eye_dist: float) -> tuple[np.ndarray, np.ndarray]:
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
    scale = min(1.0, WORK_FACE / max(eye_dist * 2.5, 1.0))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = lambda x: cv2.resize(x, size, interpolation=cv2.INTER_AREA)
    sk = small(skin)
    # signed distance along the face's own "down" direction, from the eye line
    left, right = lms[mesh.RIGHT_EYE].mean(0), lms[mesh.LEFT_EYE].mean(0)
    across = (right - left) / (np.linalg.norm(right - left) + 1e-6)
    down = np.float32([-across[1], across[0]])
    gx, gy = np.meshgrid((np.arange(size[0]) + 0.5) / scale, (np.arange(size[1]) + 0.5) / scale)
    depth = (gx - (left[0] + right[0]) / 2) * down[0] + (gy - (left[1] + right[1]) / 2) * down[1]
    brows = np.concatenate([lms[mesh.RIGHT_BROW], lms[mesh.LEFT_BROW]])
    brow_depth = float(((brows - (left + right) / 2) @ down).min())  # top of the brows (< 0)
    reference = sk * (depth > 0.15 * eye_dist)  # cheeks and nose: rarely covered
    forehead = (sk > 0.5) & (depth < brow_depth - 0.05 * eye_dist)
    lab = lambda x: cv2.cvtColor(np.clip(small(x) / 255.0, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)
    # lightness counts fully on the source (hair is darker or lighter than skin), less on
    # the target, whose own light and shadow must not read as an occluder
    tgt_agree = _skin_agreement(lab(tgt), reference, 0.35)
    agree = _skin_agreement(lab(src), reference, 1.0) * tgt_agree
    below = target_occluders(tgt_agree, sk, eye_dist * scale)
    up = lambda x: np.clip(cv2.resize(cv2.GaussianBlur(x, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return up(np.where(forehead, agree, below).astype(np.float32)), up(agree)


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

    def prepare_source(self, image: np.ndarray, face: Face) -> SourceFace:
        """Keep only the face and a margin (what the warp can sample): a prepared source is
        cached, and a 100-MP photo must not stay in memory for a 1-MP face."""
        lms = face.landmarks
        margin = 0.6 * max(np.ptp(lms[:, 0]), np.ptp(lms[:, 1]))
        h, w = image.shape[:2]
        x0, y0 = max(0, int(lms[:, 0].min() - margin)), max(0, int(lms[:, 1].min() - margin))
        x1, y1 = min(w, int(np.ceil(lms[:, 0].max() + margin))), min(h, int(np.ceil(lms[:, 1].max() + margin)))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        b = face.box
        moved = Face(box=(b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0), score=face.score,
                     landmarks=(lms - np.float32([x0, y0])).astype(np.float32))
        return SourceFace(image=crop, face=moved)

    accepts_light = True  # fuse() takes the previous frame's LightField and returns this one's

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

        # 1-2: align the source to the target's pose, then mix the geometries
        align = mesh.similarity(s_lms[mesh.RIGID], t_lms[mesh.RIGID])
        s_aligned = mesh.apply_affine(align, s_lms)
        share = ratio * GEOMETRY_SHARE * _geometry_weights(t_lms)[:, None]
        geom = t_lms + share * (s_aligned - t_lms)

        # the source is sampled at about the target face's scale: shrink it first if larger
        source_scale = float(np.sqrt(abs(np.linalg.det(align[:, :2]))))  # > 1: source is enlarged
        src_img, s_pts, to_src = _source_at_scale(source, source_scale, align)

        # 3: one dense map per texture, and one remap each
        identity = np.float32([[1, 0, 0], [0, 1, 0]])
        (sx, sy), (tx, ty) = dense_maps((h, w), geom, [(s_pts, to_src), (t_lms, identity)])
        warped_src = cv2.remap(src_img, sx, sy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        base = tgt if ratio == 0 else cv2.remap(tgt, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

        # 4-5: leave hair, hands, glasses where they are, take the target's light, mix the
        # textures, keep the target's mouth opening
        skin = face_region_mask(geom, (h, w), cut_mouth=True, skin_only=True)
        region = face_region_mask(geom, (h, w), cut_mouth=True)
        paste, trust = unoccluded(warped_src, base, skin, geom, eye)
        region = region * paste
        lit, field = transfer_light_over_time(warped_src, base, skin * trust, eye, _eyes_mask(geom, (h, w), eye),
                                              anchor=geom[mesh.RIGID], previous=light, keep=light_keep)
        lit = borrow_fine_skin_texture(lit, base, skin, source_scale)
        lit = match_detail(lit, base, feather(region, face_size) > 0.95)
        fused = base + ratio * (lit - base)
        return FusedFace(image=fused, base=base, mask=region, landmarks=geom, face_size=face_size, light=field)


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


def _source_at_scale(source: SourceFace, scale: float, align: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The prepared source crop, shrunk when its face is larger than the target's (`scale`:
    source px -> ROI px), so the warp never samples below the source's own detail.

    Returns the image to sample, the source landmarks in its pixels, and the 2x3 map from
    ROI pixels to its pixels used outside the mesh.
    """
    image = source.image
    shrink = min(1.0, scale * 1.1)
    to_image = np.float32([[1, 0, 0], [0, 1, 0]])
    if shrink < 1.0:
        size = (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        to_image = np.float32([[size[0] / source.image.shape[1], 0, 0], [0, size[1] / source.image.shape[0], 0]])
    pts = mesh.apply_affine(to_image, source.face.landmarks[: mesh.N_MESH])
    inv_align = cv2.invertAffineTransform(align.astype(np.float32))  # ROI px -> source px
    full = np.vstack([to_image, [0, 0, 1]]) @ np.vstack([inv_align, [0, 0, 1]])
    return image, pts, full[:2].astype(np.float32)


register("classical", ClassicalEngine)
