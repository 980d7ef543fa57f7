"""The result's geometry: the target's face with its inner shape moved toward the source's.

Each face's own shape is what its landmarks add to the reference mesh seen in its pose, so a
pose difference is not taken for a shape difference; the outline stays the target's, so the
new face fits the head, hair and background exactly.
"""

from __future__ import annotations

import numpy as np

from ... import mesh, pose
from .tuning import Geometry, ramp


def result_geometry(s_lms: np.ndarray, t_lms: np.ndarray, s_pose: pose.Pose, t_pose: pose.Pose,
                    ratio: float, tuning: Geometry) -> np.ndarray:
    """(468, 2): the target's landmarks with their inner points moved `ratio` x `share` of
    the way to the source's shape, less when the two faces are turned differently (a frontal
    shape laid over a profile distorts it)."""
    share = ratio * tuning.share * pose_agreement(s_pose, t_pose, tuning) * geometry_weights(t_lms, tuning)[:, None]
    return t_lms + share * shape_difference(s_lms, t_lms, s_pose, t_pose)


def geometry_weights(lms: np.ndarray, tuning: Geometry) -> np.ndarray:
    """0 on the face outline rising to 1 `outline_depth` eye distances inside, per vertex."""
    oval = lms[mesh.FACE_OVAL].astype(np.float64)
    depth = tuning.outline_depth * mesh.eye_distance(lms)
    return np.clip(inside_distance(lms[: mesh.N_MESH].astype(np.float64), oval) / depth, 0.0, 1.0).astype(np.float32)


def inside_distance(pts: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance of each point to the closed polygon's outline, 0 for points outside it
    (what cv2.pointPolygonTest measures, for all points at once)."""
    a, b = polygon, np.roll(polygon, -1, axis=0)  # the edges a -> b
    ab = b - a
    x, y = pts[:, :1], pts[:, 1:2]
    rx, ry = x - a[:, 0], y - a[:, 1]  # (P, E): each point from each edge's start, per axis
    t = np.clip((rx * ab[:, 0] + ry * ab[:, 1]) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
    dx, dy = rx - t * ab[:, 0], ry - t * ab[:, 1]
    dist = np.sqrt((dx * dx + dy * dy).min(1))
    # even-odd rule: a ray to the right crosses the outline an odd number of times from inside
    spans = (a[:, 1] > y) != (b[:, 1] > y)
    x_cross = a[:, 0] + (y - a[:, 1]) * ab[:, 0] / np.where(ab[:, 1] == 0, 1e-12, ab[:, 1])
    inside = (spans & (x < x_cross)).sum(1) % 2 == 1
    return np.where(inside, dist, 0.0)


def shape_difference(s_lms: np.ndarray, t_lms: np.ndarray, s_pose: pose.Pose, t_pose: pose.Pose) -> np.ndarray:
    """(468, 2) px: how the source's face shape differs from the target's, drawn in the
    target's pose. Each face's shape is what its landmarks add to the reference mesh
    projected in its own pose; the source's is carried into the target's view through
    the two poses (a frontal source's width narrows on a turned target)."""
    ref = mesh.reference()

    def own_shape(lms: np.ndarray, p: pose.Pose) -> np.ndarray:
        r = lms.astype(np.float64) - p.scale * ref @ p.rotation[:2].T
        return r - r[mesh.RIGID].mean(0)

    into_target = (t_pose.scale / s_pose.scale) * t_pose.rotation[:2] @ s_pose.rotation[:2].T
    return (own_shape(s_lms, s_pose) @ into_target.T - own_shape(t_lms, t_pose)).astype(np.float32)


def pose_agreement(a: pose.Pose, b: pose.Pose, tuning: Geometry) -> float:
    """1 when two faces are turned alike, falling to 0 as their yaws differ by `pose_apart`."""
    return float(1.0 - ramp(np.float64(abs(a.yaw - b.yaw)), tuning.pose_apart))
