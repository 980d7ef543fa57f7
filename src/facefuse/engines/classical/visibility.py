"""Turned faces: which parts of each face the photo shows well, and where a turned source's
hidden side takes the texture of its mirrored visible side.

All weights are per mesh vertex (0..1) and reach the image through warp.vertex_fields.
"""

from __future__ import annotations

import cv2
import numpy as np

from ... import mesh, pose
from ...imaging import scale_for
from ...masks import face_region_mask
from .occlusion import skin_agreement
from .tuning import ClassicalTuning, Visibility, ramp


def turned(p: pose.Pose, bounds: tuple[float, float]) -> float:
    """0 for a face within bounds[0] degrees of frontal, 1 beyond bounds[1] (with
    Visibility.turned: a frontal face's edge-on outline and nostrils are no reason to change
    how it is sampled)."""
    return float(ramp(np.float64(abs(p.yaw)), bounds))


def source_weights(image: np.ndarray, lms: np.ndarray, p: pose.Pose, turned_by: float,
                   tuning: ClassicalTuning) -> np.ndarray:
    """(468,) per vertex, 0..1: how much of the source's own texture to take there (the
    rest from its mirror side, or the target). 1 everywhere for a frontal source
    (`turned_by` 0): there the skin test also took shaded cheeks, make-up and beard shadow
    for occluders, and the likeness suffered (judge: 96 % -> 87 % of the regular pairs)."""
    if turned_by <= 0:
        return np.ones(mesh.N_MESH)
    trust = 1.0 - turned_by * (1.0 - source_trust(lms, p, tuning.visibility))
    # a turned source's mouth and chin border the background: no beard rule there
    return trust * (1.0 - turned_by * (1.0 - source_skin(image, lms, trust, turned_by < 0.5, tuning)))


def unstretched(own: np.ndarray, s_facing: np.ndarray, t_facing: np.ndarray, apart: float,
                tuning: Visibility, profile: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(direct, mirrored) per-vertex weights: `own` (see `source_weights`) and the mirror
    side's, each lowered where the target shows the surface much more directly than the
    source does (a frontal source's edge-on cheek side spread over a profile target's near
    cheek comes out as smeared bands of hair and edge). Stretch is the ratio of the two
    facings, beyond the faces' overall scale. `apart` 0..1: how differently the two faces
    are turned (two faces turned alike stretch nothing). `profile` 0..1: how near the source
    or the target is to a profile: the bounds tighten to `profile_stretch` (a profile's near
    eye stretched over a frontal target came out as dark doubled sockets, cases.md V1; a
    frontal cheek over a profile target's as streaks and a glossy band, V4)."""
    s_v = pose.vertex_mean(np.clip(s_facing, 0.0, None))
    t_v = pose.vertex_mean(np.clip(t_facing, 0.0, None))
    mirror = mesh.mirror()
    bounds = tuple(a + profile * (b - a) for a, b in zip(tuning.stretch, tuning.profile_stretch, strict=True))

    def keep(s):
        return 1.0 - apart * ramp(t_v / np.maximum(s, 0.05), bounds)

    return own * keep(s_v), own[mirror] * keep(s_v[mirror])


def near_half_first(direct: np.ndarray, mirrored: np.ndarray, s_facing: np.ndarray,
                    turned_by: float, tuning: Visibility) -> tuple[np.ndarray, np.ndarray]:
    """(direct, mirrored) with a turned source's far half taken from its near half's mirror
    and its near half from itself, switching over `near_half_band` at the midline
    (`turned_by` 0..1 scales the rule in). The far half of a turned face is foreshortened,
    shadowed and bordered by hair or background; sampled where partly trusted, it blended
    the two halves into doubled eyes, grey half-moons and dark smears (cases.md V2)."""
    if turned_by <= 0:
        return direct, mirrored
    x = mesh.reference()[:, 0]
    facing = pose.vertex_mean(np.clip(s_facing, 0.0, None))
    near_sign = 1.0 if facing[x > 0].mean() >= facing[x < 0].mean() else -1.0
    near = np.clip(0.5 + near_sign * x / tuning.near_half_band, 0.0, 1.0)  # 1 on the near half, 0 on the far
    return (direct * (1.0 - turned_by * (1.0 - np.clip(2.0 * near, 0.0, 1.0))),
            mirrored * (1.0 - turned_by * (1.0 - np.clip(2.0 * (1.0 - near), 0.0, 1.0))))


def source_trust(lms: np.ndarray, p: pose.Pose, tuning: Visibility) -> np.ndarray:
    """(468,) per vertex, 0..1: how well the source photo shows the face around it. A
    triangle is trusted when it faces the camera about as well as it does in a frontal
    photo (a nose flank is edge-on in any photo) and no nearer part of the face hides it."""
    facing = pose.triangle_facing(lms, p)
    foreshortening = facing / np.maximum(pose.frontal_facing(), 0.3)
    hidden = pose.unoccluded_share(lms, facing, p) / np.maximum(pose.frontal_share(), 0.3)
    seen = ramp(foreshortening, tuning.source_facing) * ramp(hidden, tuning.source_seen)
    return pose.vertex_mean(seen)


def source_skin(image: np.ndarray, lms: np.ndarray, trust: np.ndarray, keep_beard: bool,
                tuning: ClassicalTuning) -> np.ndarray:
    """(468,) per vertex, 0..1: whether the source photo shows skin there, where it should
    (not at the eyes, brows or lips): a lock of hair, a hand, a glasses frame, or the
    background beside a profile's silhouette reads as not skin, and such a vertex takes
    its mirror side's texture, or the target's. The skin colour is learned from the
    triangles the photo shows well (`trust`). With `keep_beard` (a source not turned far),
    a beard or stubble below the nose is the person's own and counts as skin."""
    vis = tuning.visibility
    scale = scale_for(mesh.eye_distance(lms) * tuning.work.face_span, tuning.work.face_px)
    h, w = image.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
    pts = lms[: mesh.N_MESH] * scale
    skin = face_region_mask(pts, (size[1], size[0]), cut_mouth=True, skin_only=True)
    shown = np.zeros_like(skin)
    tris = mesh.triangles()
    for t in tris[trust[tris].min(1) > vis.source_shown_trust]:
        cv2.fillConvexPoly(shown, np.round(pts[t]).astype(np.int32), 1.0)
    agree = cv2.GaussianBlur(skin_agreement(lab, skin * shown, 1.0, tuning.occlusion), (0, 0), 1.0)
    xy = np.clip(np.round(pts).astype(int), 0, [size[0] - 1, size[1] - 1])
    on_skin = skin[xy[:, 1], xy[:, 0]] > 0.5
    ref = mesh.reference()
    own_beard = (ref[:, 1] > ref[mesh.NOSE_BASE, 1]) & (trust > vis.source_beard_trust) & keep_beard
    return np.where(on_skin & ~own_beard, agree[xy[:, 1], xy[:, 0]], 1.0)


def target_trust(facing: np.ndarray, tuning: Visibility) -> np.ndarray:
    """(468,) per vertex, 0..1: where the target face turns edge-on (its far cheek at the
    silhouette) the source is not pasted; the target's own skin stays."""
    return pose.vertex_mean(ramp(facing / np.maximum(pose.frontal_facing(), 0.3), tuning.target_facing))


def complete_by_symmetry(direct: np.ndarray, mirrored: np.ndarray, d: np.ndarray, m: np.ndarray,
                         tuning: Visibility) -> tuple[np.ndarray, np.ndarray]:
    """(texture, validity): the warped source where it is trusted (`d`), its mirror-side
    texture where that is trusted instead (`m`) and clearly more than the direct one (a
    frontal face's two edge-on sides are no better than each other), blended smoothly;
    validity 0..1 is low where neither side can be trusted (the target's own texture stays)."""
    take_mirror = (1.0 - d) * m * np.clip((m - d) / tuning.mirror_gain, 0.0, 1.0)
    valid = d + take_mirror
    w = (take_mirror / np.maximum(valid, 1e-3))[:, :, None]
    return direct + w * (mirrored - direct), valid


def opaque_weights(alpha: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, eye_dist: float,
                   tuning: ClassicalTuning) -> np.ndarray:
    """0..1 per ROI pixel: the source's opacity where the map samples it (outside the photo
    counts as opaque, as its reflected border is sampled there). A semi-transparent band
    over a source face is then not face: the mirror side or the target's skin fills it.
    Full trust needs near-full opacity, and the weight is pulled back from the band's edge
    and softened (the cubic resampling and the light's low frequencies carry the band's
    flattened colour a few pixels out: bright seams along it, seen)."""
    vis = tuning.visibility
    a = cv2.remap(alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
    k = max(3, int(round(vis.opaque_pullback * eye_dist)) | 1)
    a = cv2.erode(ramp(a, vis.opaque_full), np.ones((k, k), np.uint8))
    return cv2.GaussianBlur(a, (0, 0), max(0.5, tuning.eyes.soft_edge * eye_dist))
