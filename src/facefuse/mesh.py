"""The 478-point face mesh: named regions, its triangles, and similarity alignment.

Index lists follow mediapipe's canonical face mesh (face_mesh_connections), ordered as
closed contours so they can be drawn as polygons.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
INNER_MOUTH = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
OUTER_LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
RIGHT_EYE = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]
LEFT_EYE = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]
RIGHT_BROW = [70, 63, 105, 66, 107, 55, 65, 52, 53, 46]
LEFT_BROW = [300, 293, 334, 296, 336, 285, 295, 282, 283, 276]
NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 129, 358, 64, 294, 48, 278, 115, 344]
# Points that move rigidly with the skull (forehead, nose bridge, eye corners, cheekbones):
# used to align one face to another without letting the jaw or mouth pull the fit.
RIGID = [10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 263, 362, 234, 454, 127, 356,
         116, 345, 117, 346, 50, 280, 67, 297, 109, 338, 103, 332]
N_MESH = 468  # the iris points 468-477 are not part of the tessellation

# single points, named (image-left is the person's right)
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER = 33, 133, 263, 362
NOSE_TIP, NOSE_BASE, MOUTH_R, MOUTH_L = 1, 2, 61, 291
RIGHT_IRIS, LEFT_IRIS = 468, 473  # iris centres (478-point meshes only)
# the 5 key points alignment templates use, image-left first: iris centres, nose tip, mouth corners
KEYPOINTS = (RIGHT_IRIS, LEFT_IRIS, NOSE_TIP, MOUTH_R, MOUTH_L)


def eye_distance(lms: np.ndarray) -> float:
    """Distance between the outer eye corners (px, never 0): the unit of every length on a face."""
    return float(np.linalg.norm(lms[RIGHT_EYE_OUTER] - lms[LEFT_EYE_OUTER])) + 1e-3


@lru_cache(maxsize=1)
def mirror() -> np.ndarray:
    """(468,) for each vertex the one mirroring it across the face's midline (MIRROR[MIRROR[i]]
    == i; midline vertices map to themselves). Lets a turned face's hidden half be completed
    from its visible half. Built by scripts/build_mesh_reference.py."""
    from .mesh_reference import MIRROR

    return np.array(MIRROR, np.int32)


@lru_cache(maxsize=1)
def reference() -> np.ndarray:
    """(468, 3) frontal, left-right symmetric reference mesh: x across the face, y down,
    z away from the camera, eye-corner distance 1 (see mesh_reference.py)."""
    from .mesh_reference import REFERENCE

    return np.array(REFERENCE, np.float64)


@lru_cache(maxsize=1)
def triangles() -> np.ndarray:
    """(T, 3) vertex indices: the mesh tessellation plus fans closing the eyes and mouth.

    mediapipe publishes the tessellation as edges; its triangles are the 3-cliques. The
    eyes and the mouth are holes in that mesh: they are closed here so the source's eyes
    are warped like the rest of the face (the mouth is masked separately).
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adj: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = set()
    for a, b in FACEMESH_TESSELATION:
        for c in adj[a] & adj[b]:
            tris.add(tuple(sorted((a, b, c))))
    return np.array(sorted(tris | set(_hole_fans())), dtype=np.int32)


def _hole_fans() -> list[tuple[int, int, int]]:
    return [tuple(sorted((loop[0], loop[i], loop[i + 1])))
            for loop in (RIGHT_EYE, LEFT_EYE, INNER_MOUTH) for i in range(1, len(loop) - 1)]


@lru_cache(maxsize=1)
def fan_triangles() -> np.ndarray:
    """(T,) bool: the triangles closing the eyes and the mouth (not skin: a fan across a
    concave lip line overlaps the lips, so it must not hide them in a depth test)."""
    fans = set(_hole_fans())
    return np.array([tuple(t) in fans for t in triangles().tolist()])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity transform (rotation, uniform scale, shift) taking src points onto dst
    in the least-squares sense (Umeyama's, which in the plane is a closed form: the points
    as complex numbers, scale and rotation are one complex factor)."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    # sum(d * conj(s)) / sum(|s|^2), written out in reals
    norm = max(float((s * s).sum()), 1e-12)
    a = float((d * s).sum()) / norm
    b = float((d[:, 1] * s[:, 0] - d[:, 0] * s[:, 1]).sum()) / norm
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


RIGHT_EYE_LIDS = (159, 145, 33, 133)  # upper lid, lower lid, outer and inner corner
LEFT_EYE_LIDS = (386, 374, 263, 362)


def eye_openness(lms: np.ndarray, lids: tuple[int, int, int, int]) -> float:
    """Lid gap / eye width: ~0.3 open, < 0.1 closed."""
    up, low, a, b = lids
    return float(np.linalg.norm(lms[up] - lms[low]) / (np.linalg.norm(lms[a] - lms[b]) + 1e-6))


def mouth_openness(lms: np.ndarray) -> float:
    """Inner-lip gap / mouth width: ~0 closed, > 0.1 visibly open."""
    gap = np.linalg.norm(lms[13] - lms[14])
    width = np.linalg.norm(lms[78] - lms[308]) + 1e-6
    return float(gap / width)
