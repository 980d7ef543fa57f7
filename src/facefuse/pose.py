"""Head pose and per-triangle visibility of a face mesh, from its 2-D landmarks.

The 478-point mesh covers the whole face also where the camera does not see it: on a
turned face the far cheek's triangles fold behind the nose (their winding flips) or are
squeezed into slivers. Warping such a triangle samples whatever lies at its place in the
photo (the cheek's edge, hair, background). Compared with a frontal 3-D reference mesh
(mesh.reference()), each observed triangle's signed area says how directly it faces the
camera, and a weak-perspective fit of the reference gives the head's rotation, hence the
triangles' depth order. Pure functions on landmark arrays; costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from . import mesh

HEAD_CENTRE = np.float64([0.0, 0.0, 1.0])  # reference units: behind the face, for outward normals
OCCLUSION_GRID = 160  # px: the face's long side in the depth test's raster
SOURCE_WELL, TARGET_WELL = 50.0, 65.0  # |yaw| (degrees) beyond which the result gets a pose note


@dataclass(frozen=True)
class Pose:
    """Rotation from the reference's axes to the camera's (x right, y down, z away from
    the camera), and the image pixels per reference unit (eye-corner distance 1)."""

    rotation: np.ndarray
    scale: float

    @property
    def yaw(self) -> float:
        """Degrees the head is turned about its vertical axis: 0 frontal, +-90 profile
        (positive: the face looks toward the image's left)."""
        r = self.rotation
        return float(np.degrees(np.arctan2(r[0, 2], r[0, 0])))


def fit_pose(lms: np.ndarray) -> Pose:
    """The weak-perspective pose that best projects the reference's rigid points (forehead,
    nose, eye corners, cheekbones) onto `lms` (least squares, then the nearest rotation)."""
    sol = _rigid_solver() @ np.asarray(lms, np.float64)[mesh.RIGID, :2]
    u, s, vt = np.linalg.svd(sol[:3].T, full_matrices=False)
    (a1, a2, a3), (b1, b2, b3) = rows = u @ vt
    return Pose(rotation=np.vstack([rows, [a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1]]), scale=float(s.mean()))


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees of the rotation taking head rotation `a` to `b` (3x3 each): a turn, a nod or
    a tilt, whichever way."""
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0))))


@lru_cache(maxsize=1)
def _rigid_solver() -> np.ndarray:
    """The least-squares solver of fit_pose: the pseudo-inverse of the reference's rigid
    points with a column of ones (the same for every face)."""
    ref = mesh.reference()[mesh.RIGID]
    return np.linalg.pinv(np.hstack([ref, np.ones((len(ref), 1))]))


@lru_cache(maxsize=1)
def _reference_triangles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per triangle of the reference: area (x2), the winding that faces outward (+-1), centroid."""
    ref = mesh.reference()
    t = mesh.triangles()
    cross = np.cross(ref[t[:, 1]] - ref[t[:, 0]], ref[t[:, 2]] - ref[t[:, 0]])
    centroid = ref[t].mean(1)
    winding = np.sign((cross * (centroid - HEAD_CENTRE)).sum(1))
    return np.linalg.norm(cross, axis=1), np.where(winding == 0, 1.0, winding), centroid


def triangle_facing(lms: np.ndarray, pose: Pose) -> np.ndarray:
    """(T,) per mesh triangle, how directly it faces the camera: its observed signed area
    over its reference area at the pose's scale, about the cosine between its normal and
    the view (1 frontal, ~0 edge-on, < 0 facing away: folded behind the nearer surface)."""
    area, winding, _ = _reference_triangles()
    p = np.asarray(lms, np.float64)[:, :2]
    t = mesh.triangles()
    e1, e2 = p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]]
    observed = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    # image axes x right, y down (z away): an outward winding seen from the camera has a
    # negative z component, hence the minus
    return np.clip(-winding * observed / np.maximum(pose.scale ** 2 * area, 1e-9), -1.0, 1.5)


@lru_cache(maxsize=1)
def frontal_facing() -> np.ndarray:
    """(T,) triangle_facing of the reference itself, seen from the front: a nose flank or
    the jaw's underside is edge-on even in a frontal photo, which is no reason to distrust it."""
    ref = mesh.reference()
    return triangle_facing(ref[:, :2], Pose(rotation=np.eye(3), scale=1.0))


@lru_cache(maxsize=1)
def frontal_share() -> np.ndarray:
    """(T,) unoccluded_share of the reference seen from the front (inner lips, nostrils and
    eye corners are partly hidden in any photo)."""
    ref = mesh.reference()[:, :2] * 100.0
    front = Pose(rotation=np.eye(3), scale=100.0)
    return unoccluded_share(ref, triangle_facing(ref, front), front)


def triangle_depth(pose: Pose) -> np.ndarray:
    """(T,) distance of each triangle's centre from the camera (reference units, larger = farther)."""
    return _reference_triangles()[2] @ pose.rotation[2]


def drawing_order(facing: np.ndarray, pose: Pose) -> np.ndarray:
    """Triangle indices far to near, without those facing away: painted in this order, the
    near surface wins wherever the projected mesh overlaps itself (a depth test)."""
    depth = triangle_depth(pose)
    front = np.flatnonzero(facing > 0)
    return front[np.argsort(-depth[front], kind="stable")]


def unoccluded_share(lms: np.ndarray, facing: np.ndarray, pose: Pose) -> np.ndarray:
    """(T,) share of each triangle's projected area that no nearer triangle covers (a far
    cheek behind the nose), from a depth-ordered raster of about OCCLUSION_GRID px."""
    t = mesh.triangles()
    p = np.asarray(lms, np.float64)[: mesh.N_MESH, :2]
    lo = p.min(0)
    scale = OCCLUSION_GRID / max(float(np.ptp(p, axis=0).max()), 1.0)
    grid = (p - lo) * scale + 1.0
    size = tuple(int(v) + 3 for v in grid.max(0))
    ids = np.zeros((size[1], size[0]), np.int32)
    fixed = np.round(grid * 16).astype(np.int32)
    fans = mesh.fan_triangles()
    order = drawing_order(np.where(fans, -1.0, facing), pose)
    for i in order:
        cv2.fillConvexPoly(ids, fixed[t[i]], int(i) + 1, lineType=cv2.LINE_8, shift=4)
    owned = np.bincount(ids.ravel(), minlength=len(t) + 1)[1:].astype(np.float64)
    e1, e2 = grid[t[:, 1]] - grid[t[:, 0]], grid[t[:, 2]] - grid[t[:, 0]]
    expected = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    share = np.where((expected >= 2.0) & ~fans, np.clip(owned / np.maximum(expected, 1e-6), 0.0, 1.0), 1.0)
    share[facing <= 0] = 0.0
    return share


def vertex_mean(per_triangle: np.ndarray) -> np.ndarray:
    """(468,) the mean of a per-triangle value over each vertex's triangles (a smooth
    per-vertex field the warp can interpolate)."""
    t = mesh.triangles()
    total = np.zeros(mesh.N_MESH)
    count = np.zeros(mesh.N_MESH)
    for k in range(3):
        np.add.at(total, t[:, k], per_triangle)
        np.add.at(count, t[:, k], 1.0)
    return total / np.maximum(count, 1.0)


def pose_notes(source_yaw: float, target_yaw: float) -> list[str]:
    """What to tell the user when a face is turned beyond what the classical engine renders
    well: the fusion completes, but completes the hidden half by symmetry or keeps the
    target's own skin there."""
    notes = []
    if abs(source_yaw) > SOURCE_WELL:
        notes.append(f"the source face is turned {abs(source_yaw):.0f} degrees (renders well up to {SOURCE_WELL:.0f}); "
                     "its hidden side is completed from the visible one: a more frontal source photo gives a closer likeness")
    if abs(target_yaw) > TARGET_WELL:
        notes.append(f"the target face is turned {abs(target_yaw):.0f} degrees (renders well up to {TARGET_WELL:.0f}); "
                     "its far side keeps the target's own skin: a more frontal target photo takes more of the source")
    return notes
