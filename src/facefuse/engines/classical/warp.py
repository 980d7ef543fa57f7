"""Dense warp maps from the mesh: every triangle of one mesh onto the other, as one remap.

The map is piecewise affine, so it is evaluated on a coarse grid and upsampled, which is
exact inside each triangle up to the grid's bilinear error and costs little at any size.
Per-vertex weights ride on the same machinery (`vertex_fields`): a field of values at the
mesh's vertices is rasterised with the same triangles, drawn in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ... import mesh
from .tuning import DEFAULT_TUNING, Warp

IDENTITY = np.float32([[1, 0, 0], [0, 1, 0]])


def constant(a: float, b: float) -> np.ndarray:
    """The 2x3 'affine map' whose value is (a, b) everywhere: the outside of a vertex field."""
    return np.float32([[0, 0, a], [0, 0, b]])


def _triangle_inverses(dst: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3) inverses of each destination triangle's homogeneous corner matrix, and
    which triangles are not degenerate: a triangle's affine map onto any source triangle
    is then one matrix product (the destination is shared by every map of a fusion)."""
    p = dst[tris].astype(np.float64)  # T x 3 corners x (x, y); each matrix's rows are (x, y, 1)
    (x0, y0), (x1, y1), (x2, y2) = p[:, 0].T, p[:, 1].T, p[:, 2].T
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    ok = np.abs(det) > 1e-6
    # the inverse as adjugate / determinant, all triangles at once (a batched LAPACK
    # inverse and determinant of 3x3 matrices cost 3x as much)
    adj = np.stack([np.stack([y1 - y2, y2 - y0, y0 - y1], 1),
                    np.stack([x2 - x1, x0 - x2, x1 - x0], 1),
                    np.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], 1)], 1)
    return np.where(ok[:, None, None], adj / np.where(ok, det, 1.0)[:, None, None], 0.0), ok


def _triangle_affines(dst: np.ndarray, srcs: list[np.ndarray], tris: np.ndarray,
                      inverses: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2 x len(srcs), 3): per source mesh of `srcs`, the 2x3 affine maps taking each
    destination triangle onto its source triangle, stacked (all in one matrix product); and
    which triangles are not degenerate."""
    inv, ok = _triangle_inverses(dst, tris) if inverses is None else inverses
    corners = np.concatenate([src[tris] for src in srcs], 2).astype(np.float64)  # T x 3 corners x (x, y) per source
    return np.transpose(inv @ corners, (0, 2, 1)).astype(np.float32), ok


def _plus_affine_row(d: np.ndarray, row: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """d (float32, overwritten) plus one row (a, b, c) of a 2x3 affine map evaluated at the
    grid of columns xs and rows ys (the fallback's exact value at every pixel, in float32);
    without making that grid where the row is a constant (a vertex field's outside) or a
    plain coordinate (the identity): the same sums, for less."""
    a, b, c = (float(v) for v in row)
    if a == 0.0 and b == 0.0:
        return np.add(d, np.float32(c), out=d)
    if b == 0.0 and c == 0.0 and a == 1.0:
        return np.add(d, xs[None, :], out=d)
    if a == 0.0 and c == 0.0 and b == 1.0:
        return np.add(d, ys[:, None], out=d)
    return cv2.add(np.ascontiguousarray((row[0] * xs + row[2]) + row[1] * ys[:, None], np.float32), d)


def dense_maps(
    shape: tuple[int, int],
    dst_pts: np.ndarray,
    src_sets: list[tuple[np.ndarray, np.ndarray]],
    order: np.ndarray | None = None,
    grid: Warp = DEFAULT_TUNING.warp,
    coarse: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dense remap tables for an image of `shape` (h, w) whose mesh is at `dst_pts`.

    For each (src_pts, fallback 2x3) pair, returns (map_x, map_y) such that
    cv2.remap(source, map_x, map_y) moves every mesh triangle of src_pts onto dst_pts;
    pixels outside the mesh follow the fallback affine transform. The mesh's displacement
    is evaluated on a grid of at most `grid.grid` pixels a side and upsampled.

    `order`: the triangles to draw, far to near (pose.drawing_order): where a turned face's
    mesh overlaps itself the near triangle wins, and triangles facing away are not drawn.
    Default: all, in index order.

    `coarse`: the last this many sets are returned on the coarse grid itself (what reads a
    smooth mask needs no more; it is resized to `shape` after the remap).
    """
    h, w = shape
    c = min(grid.grid_share, grid.grid / max(h, w))
    gw, gh = max(2, round(w * c)), max(2, round(h * c))
    cx, cy = gw / w, gh / h
    tris = mesh.triangles()
    # triangle ids on the coarse grid (cv2 grid pixel j <-> full-res x = (j + .5) / c - .5)
    grid_pts = (dst_pts + 0.5) * np.float32([cx, cy]) - 0.5
    ids = np.zeros((gh, gw), np.int32)
    drawn = np.arange(len(tris)) if order is None else order
    fill, corners = cv2.fillConvexPoly, list(np.round(grid_pts * 16).astype(np.int32)[tris[drawn]])  # 4 fractional bits
    for triangle, i in zip(corners, (drawn + 1).tolist(), strict=True):  # (one call each: most of the cost is the call's)
        fill(ids, triangle, i, cv2.LINE_8, 4)
    gx = (np.arange(gw, dtype=np.float32) + 0.5) / cx - 0.5
    gy = (np.arange(gh, dtype=np.float32) + 0.5) / cy - 0.5
    inverses = _triangle_inverses(dst_pts, tris)
    _onto_their_triangles(ids, gx, gy, dst_pts, tris, inverses, order, grid.reach)
    affines, ok = _triangle_affines(dst_pts, [src_pts for src_pts, _ in src_sets], tris, inverses)
    # per set and triangle, how its map differs from the fallback (0 outside the mesh, id 0,
    # and for degenerate triangles): only this displacement is upsampled; the fallback itself
    # is evaluated exactly at full size, so pixels outside the face map exactly, also at the
    # ROI's border, where bilinear upsampling of the whole map would clamp instead of
    # extrapolating (a 1.4 px shift, seen in a test)
    fallbacks = np.concatenate([fallback.astype(np.float32) for _, fallback in src_sets])  # (2 x sets, 3)
    delta = np.zeros((len(src_sets) * 6, len(tris) + 1), np.float32)  # per id, each map's six terms (rows of the 2x3)
    delta[:, 1:] = np.where(ok[:, None, None], affines - fallbacks, np.float32(0)).reshape(len(tris), -1).T
    # each grid pixel's triangle's terms, every set's in one gather (a quarter of the cost of one per term)
    terms = np.take(delta, ids.astype(np.intp), axis=1).reshape(len(src_sets), 2, 3, gh, gw)
    out = []
    for k, (_, fallback) in enumerate(src_sets):
        on_grid = k >= len(src_sets) - coarse
        coords = []
        xs, ys = (gx, gy) if on_grid else (np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        # (the fallback as given, in float64 where it is: as the full grid was evaluated before)
        for (d, dy, d0), fixed in zip(terms[k], fallback.astype(np.float32) if on_grid else fallback, strict=True):
            # the grid pixel's triangle's row of the map, applied to the pixel's (x, y, 1)
            d *= gx[None, :]
            dy *= gy[:, None]
            d += dy
            d += d0
            if (gw, gh) != (w, h) and not on_grid:
                d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
            coords.append(_plus_affine_row(d, fixed, xs, ys))
        out.append((coords[0], coords[1]))
    return out


def _largest_of_three(x: np.ndarray) -> np.ndarray:
    """x.max(1) for x of shape (n, 3, ...), a triangle's three corners: as two elementwise
    maxima, a tenth of the reduction's cost over so short an axis."""
    return np.maximum(np.maximum(x[:, 0], x[:, 1]), x[:, 2])


@lru_cache(maxsize=1)
def nearby_triangles() -> np.ndarray:
    """(T, 13): each triangle, the triangles across its three edges and theirs across
    their other edges (-1 where an edge is the mesh's border): where to look for the
    triangle a pixel lies in when the one drawn on it does not hold it."""
    tris = mesh.triangles()
    across: dict[tuple[int, int], list[int]] = {}
    for t, corners in enumerate(tris.tolist()):
        for j in range(3):
            across.setdefault(tuple(sorted((corners[j - 1], corners[j - 2]))), []).append(t)
    first = np.full((len(tris), 3), -1, np.int64)
    for t, corners in enumerate(tris.tolist()):
        for j in range(3):
            first[t, j] = next((u for u in across[tuple(sorted((corners[j - 1], corners[j - 2])))] if u != t), -1)
    second = np.where(first[:, :, None] >= 0, first[np.maximum(first, 0)], -1).reshape(len(tris), 9)
    return np.concatenate([np.arange(len(tris))[:, None], first, second], 1)


def _onto_their_triangles(ids: np.ndarray, gx: np.ndarray, gy: np.ndarray, dst_pts: np.ndarray, tris: np.ndarray,
                          inverses: tuple[np.ndarray, np.ndarray], order: np.ndarray | None, reach: float) -> None:
    """Each grid pixel whose centre lies beyond the triangle drawn on it (a rasterised edge
    reaches past its triangle) by more than `reach` of the triangle's height (Warp.reach)
    takes, in place, a drawn triangle that holds it (the one drawn last where several do,
    as drawing would), or where none does the nearest of the triangles around its own. Its
    own triangle's affine map would extrapolate that far: harmless for a plain triangle (a
    grid pixel is often larger than the small triangles at the mouth's corners, whose maps
    stay as they are), not for a sliver: in the README example a 0.02 px^2 sliver mapped a
    pixel at barycentric -372, both faces' textures taken from far away (a 3x3 dot beside
    the nose)."""
    inv, ok = inverses
    # the centre of a pixel a triangle's fill drew lies less than one grid px beyond it (half
    # a pixel's diagonal and the 1/16-px rounding: 0.8; measured on the dev pairs and clips:
    # 0.63), so only on a triangle less than 1 / reach grid px high (a sliver: about 2 % of
    # the drawn pixels) can it lie `reach` heights beyond: only those pixels are tested
    per_grid_px = np.float64([gx[1] - gx[0] if len(gx) > 1 else 1.0, gy[1] - gy[0] if len(gy) > 1 else 1.0])
    steepest = _largest_of_three(np.hypot(inv[:, 0, :] * per_grid_px[0], inv[:, 1, :] * per_grid_px[1]))  # 1 / least height
    thin = np.zeros(len(ok) + 1, bool)
    thin[1:] = ok & (steepest > reach)
    tested = np.flatnonzero(thin[ids.ravel()])
    if tested.size == 0:
        return
    # their least barycentric weight in their own triangle
    coef = np.transpose(inv.astype(np.float32), (1, 2, 0))  # (x / y / 1 term, weight j, triangle)
    own = ids.ravel()[tested] - 1
    x, y = gx[tested % ids.shape[1]], gy[tested // ids.shape[1]]
    least = None
    for j in range(3):
        w = np.take(coef[0, j], own) * x + np.take(coef[1, j], own) * y + np.take(coef[2, j], own)
        least = w if least is None else np.minimum(least, w)
    where = tested[least < -reach]
    if where.size == 0:
        return
    p = np.stack([gx[where % ids.shape[1]], gy[where // ids.shape[1]]], 1).astype(np.float64)[:, None, :]  # (n, 1, 2)
    candidates = nearby_triangles()[ids.ravel()[where] - 1]  # (n, 13), the drawn triangle first
    rank = np.full(len(ok) + 1, -1)  # the drawing order (near last); one more: index -1 (no triangle) reads -1
    drawn_order = np.arange(len(ok)) if order is None else order
    rank[drawn_order] = np.arange(len(drawn_order))
    usable = (candidates >= 0) & ok[candidates] & (rank[candidates] >= 0)
    corners = dst_pts[tris[np.maximum(candidates, 0)]].astype(np.float64)  # (n, 13, 3, 2)
    distance = np.full(candidates.shape, np.inf)
    for a, b in ((0, 1), (1, 2), (2, 0)):  # to the nearest edge ...
        e = corners[:, :, b] - corners[:, :, a]
        t = np.clip(((p - corners[:, :, a]) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-12), 0.0, 1.0)
        distance = np.minimum(distance, np.hypot(*np.moveaxis(p - corners[:, :, a] - t[..., None] * e, -1, 0)))
    m = inv[np.maximum(candidates, 0)]  # ... or none, inside the triangle
    weights = p[..., 0, None] * m[..., 0, :] + p[..., 1, None] * m[..., 1, :] + m[..., 2, :]
    # the nearest; of several that hold it (a turned face's mesh overlaps itself), the one drawn last, as drawing does
    score = np.where(weights.min(-1) >= 0, -1.0 - rank[candidates], distance)
    score = np.where(usable, score, np.inf)
    best = candidates[np.arange(len(where)), score.argmin(1)]
    # a drawn triangle that holds the pixel but is not near its own (along a turned face's
    # silhouette, the far cheek beside the nose's ridge) is what drawing would have shown there
    holder = _last_drawn_holder(p[:, 0], dst_pts, tris, inv, ok, rank)
    ids.ravel()[where] = np.where(holder >= 0, holder, best) + 1


def _last_drawn_holder(p: np.ndarray, dst_pts: np.ndarray, tris: np.ndarray, inv: np.ndarray, ok: np.ndarray,
                       rank: np.ndarray) -> np.ndarray:
    """For each point (n, 2), of the drawn triangles that hold it the one drawn last (-1: none)."""
    corners = dst_pts[tris]
    lo, hi = -_largest_of_three(-corners), _largest_of_three(corners)
    point, tri = np.nonzero((p[:, None, 0] >= lo[:, 0]) & (p[:, None, 0] <= hi[:, 0]) & (p[:, None, 1] >= lo[:, 1])
                            & (p[:, None, 1] <= hi[:, 1]) & (ok & (rank[:-1] >= 0))[None, :])
    m = inv[tri]
    holds = (p[point, 0, None] * m[:, 0] + p[point, 1, None] * m[:, 1] + m[:, 2]).min(1) >= 0
    last = np.full(len(p), -1)
    np.maximum.at(last, point[holds], rank[tri[holds]])
    order_of = np.full(len(ok), -1)
    order_of[rank[:-1][rank[:-1] >= 0]] = np.flatnonzero(rank[:-1] >= 0)  # rank -> triangle
    return np.where(last >= 0, order_of[np.maximum(last, 0)], -1)


def vertex_fields(pair: np.ndarray, outside: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A (src_pts, fallback) entry of `dense_maps` that rasterises two per-vertex values
    instead of a mapping: `pair` (468, 2) holds the two values at each vertex, `outside`
    their value beyond the mesh. The two "coordinates" that come back are the two fields,
    interpolated across each triangle exactly as the texture maps are."""
    return pair.astype(np.float32), constant(*outside)


@dataclass
class Warped:
    """The stage's output: the source, its mirror side and the target, each in the
    result's geometry, and the per-pixel weights the vertex fields gave."""

    source: np.ndarray  # float32 RGB, the source face warped onto the result's geometry
    base: np.ndarray  # float32 RGB, the target re-shaped to the same geometry
    drawn: np.ndarray  # 1 where a target triangle was drawn (those facing away are not)
    target_seen: np.ndarray  # 0..1: where the target's own surface turns edge-on, less
    valid: np.ndarray  # 0..1: where the source (or its mirror side) is usable
    maps: tuple[np.ndarray, np.ndarray]  # the source's remap tables (x, y)
    source_not_skin: np.ndarray | None = None  # 0..1: the source's hair, glasses, hands (labels.py), warped
    # on dense_maps' coarse grid: what was found on the source's pixels on a video's earlier
    # frame (engine.SourceFinds.masks; None: not carried)
    source_finds: np.ndarray | None = None
    source_hands: np.ndarray | None = None  # 0..1: the source's hands in front of its face (labels.py), warped
    target_frames: np.ndarray | None = None  # 0..1: the target's glasses frames (glasses.target_frames), warped
