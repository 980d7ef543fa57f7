"""One region map per face: skin, hair, glasses, hand and other, learned per image.

What is skin is not a colour threshold: hair as light as the skin (blonde on fair) or as
dark (black on dark brown) passes any fixed one. Each face teaches its own:
- the mesh says where skin surely is (discs on the cheeks, the forehead's centre and the
  nose: seeds unlike the other seeds are dropped, so a strand over a cheek is no seed) and
  where it surely is not (beyond the outline, the eyes, the brows);
- OpenCV's grabCut fits a colour model (Lab Gaussian mixtures) to both and cuts the face
  along the likeliest boundary: everything inside the outline unlike the skin is hair (a
  beard, bangs, a dark or coloured strand; an object in front takes the same policy);
- the structure tensor finds what colour cannot: strands are oriented fine texture, and
  coherent energy well above the face's own, in pieces reaching in from the outline, is
  hair even where its colour is the skin's (grabCut alone misses such a strand);
- glasses are thin ridges (a black-hat for dark rims, a top-hat for bright ones) ringing
  an eye, stronger than the seeds' own fine texture;
- hands come from mediapipe's hand models (hands.py) as landmarks; their mask wins;
- eyes, brows, lips and the inner mouth are "other", as the mesh gives them, and so is
  whatever lies outside the face and is not skin (background, hair beyond the outline).

All lengths are in eye distances (outer eye corners, landmarks 33-263), so the map is the
same at any scale; it is meant to run at work scale (face about 128 px, eye distance about
51 px). There it costs about 30 ms of CPU, 26 of them grabCut's (2 iterations on a
140x144 box; RegionTuning.grabcut_eye_px trades quality for it): video should carry a map
over from the previous frame of a track while the face has not changed much.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import mesh
from .hands import hand_mask
from .masks import fill_poly

LABELS = ("skin", "hair", "glasses", "hand", "other")
SKIN, HAIR, GLASSES, HAND, OTHER = range(len(LABELS))


@dataclass(frozen=True)
class RegionTuning:
    """Every constant of the region map, with its unit and why it has its value."""

    roi_margin: float = 0.6  # eye distances around the mesh's box grabCut sees: enough hair and background to model
    seed_radius: float = 0.1  # eye distances: the discs of surely-skin on the cheeks, forehead centre and nose
    seed_z: float = 3.0  # robust z (MADs) from the seeds' median colour beyond which a seed is dropped
    surely_out: float = 0.15  # eye distances beyond the outline where surely-not-skin starts (jaw and temple wobble)
    grabcut_iterations: int = 2  # iterations: the cut settles in 2 on a 128 px face
    work_eye_px: float = 51.0  # eye distance (px) of work scale (face about 128 px); a face over 1.25 times it is shrunk to it
    grabcut_eye_px: float = 51.0  # eye distance (px) grabCut runs at: 26 px costs 10 ms instead of 27 but loses hair
    strand_width: float = 0.015  # eye distances: detail finer than this is strand texture (a fold or a shadow is broader)
    texture_sigma: float = 0.06  # eye distances: the structure tensor's window, a few strands wide
    strand_z: float = 1.5  # robust z (MADs) of oriented fine texture over the face's own above which a pixel is a strand
    strand_coherence: float = 0.6  # 0..1: how one-directional that texture is (pores and stubble are not)
    outline_band: float = 0.12  # eye distances inside the outline a strand must reach (hair grows from outside)
    frame_width: float = 0.16  # eye distances: ridges thinner than this (rims, the bridge) are frame candidates
    frame_z: float = 8.0  # robust z (MADs) of a ridge over the seeds' own ridges
    frame_contrast: float = 0.06  # share of the skin's median luma a ridge must at least reach (noise-free skin)
    frame_reach: float = 0.55  # eye distances from an eye's centre a rim may lie
    # share of the directions round an eye one connected ridge must cover (glasses 0.79-1.0, none 0.5-0.75)
    frame_cover: float = 0.77
    frame_directions: int = 24  # directions round an eye a rim's cover is counted in (15 degrees each)
    feature_margin: float = 0.04  # eye distances round the mesh's eyes and brows where no rim is looked for (lashes, brow hairs)
    lightness_weight: float = 0.5  # weight of Lab L against a and b in grabCut's colours: shading is no change of material
    finger_width: float = 0.3  # palm widths (index to little-finger knuckle): a finger's width round its joints
    soft_edge: float = 0.02  # eye distances: the maps' soft edge (Gaussian sigma)


TUNING = RegionTuning()


@dataclass(frozen=True)
class RegionMap:
    """Soft label maps over one image: `maps[i]` is the float32 0..1 share of LABELS[i] at
    each pixel; the five sum to 1."""

    maps: np.ndarray  # (5, H, W) float32

    def __getitem__(self, label: str) -> np.ndarray:
        return self.maps[LABELS.index(label)]

    @property
    def shape(self) -> tuple[int, int]:
        return self.maps.shape[1:]

    def share(self, label: str, within: np.ndarray | None = None) -> float:
        """The share of `label` over the image, or over a 0..1 weight mask `within`."""
        m = self[label]
        if within is None:
            return float(m.mean())
        weight = float(within.sum())
        return float((m * within).sum() / weight) if weight > 0 else 0.0

    def shares(self, within: np.ndarray | None = None) -> dict[str, float]:
        """Every label's share (for `--report` and the named masks)."""
        return {label: round(self.share(label, within), 4) for label in LABELS}

    def labels(self) -> np.ndarray:
        """(H, W) uint8: the index in LABELS of the likeliest label at each pixel."""
        return np.argmax(self.maps, axis=0).astype(np.uint8)

    def resized(self, shape: tuple[int, int]) -> RegionMap:
        """The same map over an image of `shape` (h, w): the ROI at full resolution, say."""
        h, w = shape
        up = [cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in self.maps]
        return RegionMap(np.stack(up).astype(np.float32))


def region_map(rgb: np.ndarray, landmarks: np.ndarray, eye_dist: float, hands: list[np.ndarray] | None = None,
               tuning: RegionTuning = TUNING, off: frozenset[str] = frozenset()) -> RegionMap:
    """The region map of the face at `landmarks` (478 mesh points in `rgb`'s pixels) in uint8
    RGB `rgb`. `hands`: (21, 2) landmarks from hands.find_hands on the same pixels (None: no
    hands looked for). `off` names detectors left out ("hair", "glasses", "hand"): what they
    would find stays skin, to show what each one is for.

    A face larger than work scale is mapped on a copy shrunk to it and the map enlarged
    back: the texture tests compare pixel statistics, and at several times that scale
    smooth skin's tiny spread let pores and brow hairs ring an eye like a frame."""
    if eye_dist > tuning.work_eye_px * 1.25:
        scale = tuning.work_eye_px / eye_dist
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = [p * scale for p in hands] if hands else hands
        return _region_map(small, landmarks * scale, tuning.work_eye_px, found, tuning, off).resized(rgb.shape[:2])
    return _region_map(rgb, landmarks, eye_dist, hands, tuning, off)


def _region_map(rgb: np.ndarray, landmarks: np.ndarray, eye_dist: float, hands: list[np.ndarray] | None,
                tuning: RegionTuning, off: frozenset[str]) -> RegionMap:
    h, w = rgb.shape[:2]
    lms = landmarks.astype(np.float32)
    labels = np.full((h, w), OTHER, np.uint8)
    oval = np.zeros((h, w), np.float32)
    fill_poly(oval, lms[mesh.FACE_OVAL], 1.0)
    inside = oval > 0.5
    parts = mesh_parts(lms, (h, w))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    seeds = _skin_seeds(lab, lms, eye_dist, tuning) & inside & (parts == 0)
    skin = _grabcut_skin(lab, lms, eye_dist, inside, parts, seeds, tuning) if "hair" not in off else inside.copy()
    labels[skin] = SKIN
    if "hair" not in off:
        labels[inside & ~skin] = HAIR
        labels[_strands(lab[:, :, 0], inside & (parts == 0), eye_dist, tuning)] = HAIR
    labels[parts > 0] = OTHER
    if "glasses" not in off:
        labels[_glasses(lab[:, :, 0], lms, eye_dist, seeds, parts, tuning)] = GLASSES
    if hands and "hand" not in off:
        labels[hand_mask(hands, (h, w), tuning.finger_width) > 0] = HAND
    return _soft(labels, eye_dist, tuning)


def mesh_parts(lms: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 over the image: 1 in the eyes, 2 in the brows, 3 in the lips and inner mouth, 0
    elsewhere, as the mesh draws them."""
    parts = np.zeros(shape, np.float32)
    for value, regions in ((2.0, (mesh.RIGHT_BROW, mesh.LEFT_BROW)), (1.0, (mesh.RIGHT_EYE, mesh.LEFT_EYE)),
                           (3.0, (mesh.OUTER_LIPS,))):
        for region in regions:
            fill_poly(parts, lms[region], value)
    return np.round(parts).astype(np.uint8)


SEED_POINTS = [50, 280, 101, 330, 151, 108, 337, 195, 5]  # cheekbones, forehead centre, nose (not the lower cheek: a beard)


def _skin_seeds(lab: np.ndarray, lms: np.ndarray, eye_dist: float, t: RegionTuning) -> np.ndarray:
    """bool: discs of surely-skin around SEED_POINTS, less the pixels whose colour is an
    outlier among them (a strand or a shadow over a cheek is no seed)."""
    discs = np.zeros(lab.shape[:2], np.uint8)
    r = max(1, int(round(t.seed_radius * eye_dist)))
    for p in lms[SEED_POINTS]:
        cv2.circle(discs, (int(round(p[0])), int(round(p[1]))), r, 1, -1)
    seeds = discs > 0
    return seeds & _like_seeds(lab, seeds, t.seed_z)


def _like_seeds(lab: np.ndarray, seeds: np.ndarray, z: float, channels: slice = slice(0, 3)) -> np.ndarray:
    """bool: pixels within `z` robust deviations of the seeds' median in each of the Lab
    `channels` (all three to prune the seeds; the chroma alone where grabCut's first skin
    model starts from, since shading moves the lightness of skin far more than its hue)."""
    values = lab[seeds][:, channels].astype(np.float32)
    if len(values) < 8:
        return np.ones(lab.shape[:2], bool)
    dev = np.abs(lab[:, :, channels].astype(np.float32) - np.median(values, 0)) / (_mad(values) + 1.0)
    return dev.max(axis=2) < z


def _mad(values: np.ndarray) -> np.ndarray:
    """Robust spread (median absolute deviation, scaled to a Gaussian's sigma)."""
    return 1.4826 * np.median(np.abs(values - np.median(values, 0)), 0)


def _grabcut_skin(lab: np.ndarray, lms: np.ndarray, eye_dist: float, inside: np.ndarray, parts: np.ndarray,
                  seeds: np.ndarray, t: RegionTuning) -> np.ndarray:
    """bool: skin as grabCut cuts it in a box around the face, seeded by the mesh: the seeds
    are surely skin; the eyes, the brows and what lies surely_out beyond the outline above
    the eyes (hair, background) surely not; the rest of the face probably skin where its
    colour is like the seeds', probably not elsewhere. Beside and below the face lie ears,
    the neck and shadowed jaw, skin that is no part of this face: they are painted one
    colour no face has, so grabCut's non-skin model spends one component on them and
    learns no skin."""
    h, w = inside.shape
    e = eye_dist
    x0, y0 = np.maximum(lms.min(0) - t.roi_margin * e, 0).astype(int)
    x1 = int(min(w, lms[:, 0].max() + t.roi_margin * e))
    y1 = int(min(h, lms[:, 1].max() + t.surely_out * e))
    k = 2 * max(1, int(round(t.surely_out * e))) + 1
    near = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    eye_line = int(max(lms[33, 1], lms[263, 1]))
    unmodelled = ~inside.copy()
    unmodelled[:eye_line] &= near[:eye_line]
    mask = np.full((h, w), cv2.GC_BGD, np.uint8)
    mask[inside] = np.where(_like_seeds(lab, seeds, t.seed_z, slice(1, 3))[inside], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    mask[(parts == 1) | (parts == 2)] = cv2.GC_BGD
    mask[parts == 3] = cv2.GC_PR_BGD
    mask[seeds] = cv2.GC_FGD
    colour = lab.copy()
    colour[:, :, 0] = np.round(128 + (lab[:, :, 0].astype(np.float32) - 128) * t.lightness_weight).astype(np.uint8)
    colour[unmodelled] = (0, 255, 0)
    box = (slice(y0, y1), slice(x0, x1))
    scale = min(1.0, t.grabcut_eye_px / eye_dist)
    size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
    sub = cv2.resize(mask[box], size, interpolation=cv2.INTER_NEAREST)
    if not (sub == cv2.GC_FGD).any():
        return inside & (parts == 0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    small = cv2.resize(colour[box], size, interpolation=cv2.INTER_AREA)
    cv2.grabCut(small, sub, None, bgd, fgd, t.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    cut = ((sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)).astype(np.float32)
    skin = np.zeros((h, w), bool)
    skin[box] = cv2.resize(cut, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) > 0.5
    return skin


def _oriented_texture(lightness: np.ndarray, eye_dist: float, t: RegionTuning) -> tuple[np.ndarray, np.ndarray]:
    """The structure tensor of the fine detail (the lightness less its blur, so shading and
    the nose's flanks drop out): its oriented energy (lambda1 - lambda2) and coherence
    ((lambda1 - lambda2) / (lambda1 + lambda2)) over a window texture_sigma eye distances wide."""
    luma = lightness.astype(np.float32)
    fine = luma - cv2.GaussianBlur(luma, (0, 0), max(0.7, t.strand_width * eye_dist))
    gx = cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)
    sigma = max(1.0, t.texture_sigma * eye_dist)
    jxx, jyy, jxy = (cv2.GaussianBlur(g, (0, 0), sigma) for g in (gx * gx, gy * gy, gx * gy))
    oriented = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy ** 2)
    return oriented, oriented / (jxx + jyy + 1e-6)


def _strands(lightness: np.ndarray, inside: np.ndarray, eye_dist: float,
             t: RegionTuning) -> np.ndarray:
    """bool: strands of hair, whatever their colour: coherent fine texture strand_z MADs
    above the face's own (its median: hair covers less than half a face), in pieces that
    reach the band inside the outline."""
    oriented, coherence = _oriented_texture(lightness, eye_dist, t)
    own = oriented[inside]
    limit = np.median(own) + t.strand_z * (_mad(own) + 1e-3)
    cand = ((oriented > limit) & (coherence > t.strand_coherence) & inside).astype(np.uint8)
    k = 2 * max(1, int(round(t.outline_band * eye_dist))) + 1
    band = inside & ~(cv2.erode(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0)
    count, comps = cv2.connectedComponents(cand, connectivity=8)
    reaching = np.zeros(count, bool)
    reaching[np.unique(comps[band & (cand > 0)])] = True
    reaching[0] = False
    return reaching[comps]


def _glasses(lightness: np.ndarray, lms: np.ndarray, eye_dist: float, seeds: np.ndarray, parts: np.ndarray,
             t: RegionTuning) -> np.ndarray:
    """bool: glasses frames: ridges thinner than frame_width, darker (black-hat) or brighter
    (top-hat) than around them by frame_z MADs of the seeds' own ridges, in one connected
    piece that covers frame_cover of the directions round an eye within frame_reach of it.
    A brow, a lid crease or an eye bag covers one side only."""
    luma = lightness.astype(np.float32)
    k = max(3, int(round(t.frame_width * eye_dist)) | 1)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    ridge = np.maximum(cv2.morphologyEx(luma, cv2.MORPH_BLACKHAT, element),
                       cv2.morphologyEx(luma, cv2.MORPH_TOPHAT, element))
    if seeds.sum() < 8:
        return np.zeros(luma.shape, bool)
    own = ridge[seeds]
    limit = max(np.median(own) + t.frame_z * (_mad(own) + 1e-3), t.frame_contrast * float(np.median(luma[seeds])))
    near = max(1, int(round(t.feature_margin * eye_dist))) * 2 + 1
    features = cv2.dilate(((parts == 1) | (parts == 2)).astype(np.uint8),
                          cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (near, near)))
    centres = [lms[mesh.RIGHT_EYE].mean(0), lms[mesh.LEFT_EYE].mean(0)]
    yy, xx = np.mgrid[:luma.shape[0], :luma.shape[1]].astype(np.float32)
    reach = np.zeros(luma.shape, bool)
    for c in centres:
        reach |= np.hypot(xx - c[0], yy - c[1]) < t.frame_reach * eye_dist
    cand = ((ridge > limit) & reach & (features == 0)).astype(np.uint8)
    count, comps = cv2.connectedComponents(cand, connectivity=8)
    ringing = np.zeros(count, bool)
    for c in centres:
        ringing |= _directions_covered(comps, count, c, t.frame_reach * eye_dist, t.frame_directions) >= t.frame_cover
    ringing[0] = False
    return ringing[comps]


def _directions_covered(comps: np.ndarray, count: int, centre: np.ndarray, reach: float, directions: int) -> np.ndarray:
    """(count,) the share of `directions` round `centre` each component has a pixel in, within `reach`."""
    ys, xs = np.nonzero(comps)
    dx, dy = xs - centre[0], ys - centre[1]
    near = np.hypot(dx, dy) < reach
    sector = ((np.arctan2(dy[near], dx[near]) + np.pi) / (2 * np.pi) * directions).astype(int) % directions
    hit = np.zeros((count, directions), bool)
    hit[comps[ys[near], xs[near]], sector] = True
    return hit.mean(1)


def _soft(labels: np.ndarray, eye_dist: float, t: RegionTuning) -> RegionMap:
    """Hard labels to soft maps (a Gaussian soft_edge wide) that sum to 1."""
    sigma = max(0.5, t.soft_edge * eye_dist)
    maps = np.stack([cv2.GaussianBlur((labels == i).astype(np.float32), (0, 0), sigma) for i in range(len(LABELS))])
    return RegionMap((maps / np.maximum(maps.sum(0), 1e-6)).astype(np.float32))
