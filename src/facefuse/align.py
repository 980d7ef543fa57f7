"""5-point similarity alignment: face crops for neural models, and the way back.

Neural face models (ArcFace embedders, inswapper-style swappers, restoration UNets) are
trained on crops where five key points (eyes, nose tip, mouth corners) sit at fixed spots
of a template. `crop_matrix` fits the similarity (rotation, uniform scale, shift) taking a
face's key points onto the template at the model's crop size, `warp_crop` cuts the crop
and `paste_back` maps a model's output crop back into the image it came from, together
with the region where it is valid. Pure functions on arrays; float32 RGB inside.
"""

from __future__ import annotations

from typing import Sequence, Union

import cv2
import numpy as np

from . import mesh

KEYPOINT_INDICES = mesh.KEYPOINTS  # the 5 key points' mesh indices (Face.keypoints uses the same)

# insightface's ArcFace template for a 112 x 112 crop (pixels), the reference of most
# swap and recognition models.
ARCFACE_112 = np.float32([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041],
])
# FFHQ alignment (GFPGAN, GPEN, CodeFormer and most face restoration / fusion UNets),
# as a share of the crop side.
FFHQ = np.float32([
    [0.37691676, 0.46864664], [0.62285697, 0.46912813], [0.50123859, 0.61331904],
    [0.39308822, 0.72541100], [0.61150205, 0.72490465],
])
# FaceFusion's other 5-point templates, as a share of the crop side: arcface_112_v1 (the
# older ArcFace reference SimSwap and GHOST were trained on) and MTCNN's (HiFiFace).
ARCFACE_112_V1 = np.float32([
    [39.7300, 51.1380], [72.2700, 51.1380], [56.0000, 68.4930], [42.4630, 87.0100], [69.5370, 87.0100],
]) / 112.0
MTCNN = np.float32([
    [0.36562865, 0.46733799], [0.63305391, 0.46585885], [0.50019127, 0.61942959],
    [0.39032951, 0.77598822], [0.61178945, 0.77476328],
])
# The seed's (ModelScope cv_unet-image-face-fusion_damo) template: the ArcFace-112 points
# contracted by 0.85 about the crop centre (56, 56), as a share of the side (used at 256).
DAMO = ((ARCFACE_112 - 56.0) * 0.85 + 56.0) / 112.0
TEMPLATES = ("arcface", "arcface_112", "arcface_128", "arcface_112_v1", "ffhq", "mtcnn", "damo")
TemplateSpec = Union[str, Sequence[Sequence[float]]]
_SHARES = {"ffhq": FFHQ, "arcface_112": ARCFACE_112 / 112.0, "arcface_128": (ARCFACE_112 + np.float32([8.0, 0.0])) / 128.0,
           "arcface_112_v1": ARCFACE_112_V1, "mtcnn": MTCNN, "damo": DAMO}


def keypoints(landmarks: np.ndarray) -> np.ndarray:
    """The 5 key points (5 x 2) of a 478-point mesh. A 468-point mesh (no iris points, as
    the classical engine's result geometry) uses the centres of the eye contours instead."""
    lms = np.asarray(landmarks, np.float32)
    if len(lms) > max(KEYPOINT_INDICES):
        return lms[list(KEYPOINT_INDICES)]
    eyes = [lms[mesh.RIGHT_EYE].mean(0), lms[mesh.LEFT_EYE].mean(0)]
    return np.vstack([eyes, lms[list(KEYPOINT_INDICES[2:])]]).astype(np.float32)


def template(spec: TemplateSpec, size: int) -> np.ndarray:
    """The 5 template points in pixels of a `size` x `size` crop.

    spec: "arcface" (insightface's rule: the 112 template scaled for sizes that are a
    multiple of 112, and for other sizes scaled by size/128 with the 8 px shift insightface
    uses for 128-px crops such as inswapper_128's), one of the fixed-share templates
    ("arcface_112", "arcface_128", "arcface_112_v1", "ffhq", "mtcnn", "damo": the same
    shares at every size), or five [x, y] pairs given as a share of the crop side (0..1).
    """
    if isinstance(spec, str):
        if spec == "arcface":
            if size % 112 == 0:
                return ARCFACE_112 * (size / 112.0)
            ratio = size / 128.0
            return ARCFACE_112 * ratio + np.float32([8.0 * ratio, 0.0])
        if spec in _SHARES:
            return _SHARES[spec] * np.float32(size)
        raise ValueError(f"unknown template {spec!r}; use one of {', '.join(TEMPLATES)} or five [x, y] pairs")
    pts = np.asarray(spec, np.float32)
    if pts.shape != (5, 2) or not np.all((pts >= 0) & (pts <= 1)):
        raise ValueError("a template must be five [x, y] pairs between 0 and 1 (share of the crop side)")
    return pts * size


def crop_matrix(kps: np.ndarray, tmpl_px: np.ndarray) -> np.ndarray:
    """2x3 similarity taking image pixels to crop pixels (least squares on the 5 points)."""
    return mesh.similarity(np.asarray(kps, np.float64), np.asarray(tmpl_px, np.float64)).astype(np.float64)


def _scale(m: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_crop(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The `size` x `size` crop of `image` under m (image px -> crop px), float32.

    When the face is much larger than the crop, the part of the image the crop covers is
    first shrunk with area averaging, so the crop is not aliased (warpAffine alone samples
    a big face like a nearest-neighbour downscale). Pixels outside the image repeat its edge.
    """
    img = image.astype(np.float32, copy=False)
    m = np.asarray(m, np.float64)
    scale = _scale(m)
    if scale < 0.75:
        inv = cv2.invertAffineTransform(m)
        corners = np.float64([[0, 0], [size, 0], [0, size], [size, size]]) @ inv[:, :2].T + inv[:, 2]
        h, w = img.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)) - 2, 0, [w - 1, h - 1]).astype(int)
        x1, y1 = np.clip(np.ceil(corners.max(0)) + 2, [x0 + 1, y0 + 1], [w, h]).astype(int)
        part = img[y0:y1, x0:x1]
        pw, ph = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        part = cv2.resize(part, (pw, ph), interpolation=cv2.INTER_AREA)
        # shrunk-part px -> original px, then original px -> crop px
        sx, sy = (x1 - x0) / pw, (y1 - y0) / ph
        to_orig = np.float64([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5], [0, 0, 1]])
        m = (np.vstack([m, [0, 0, 1]]) @ to_orig)[:2]
        img = part
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def paste_back(crop: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map a model's output crop back through m (image px -> crop px) into an image of
    `shape` (h, w). Returns (image float32, valid float32 0..1): `valid` is 1 where the
    crop covers the image, anti-aliased at the crop's border, 0 elsewhere.

    Only the bounding box of the crop's footprint is warped, so the cost follows the face,
    not the ROI. Upscaling uses cubic interpolation (a 128-px crop usually grows 2-4x).
    """
    h, w = shape
    size = crop.shape[0]
    m = np.asarray(m, np.float64)
    inv = cv2.invertAffineTransform(m)
    corners = np.float64([[0, 0], [size, 0], [0, size], [size, size]]) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.clip(np.floor(corners.min(0)) - 1, 0, [w, h]).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(0)) + 1, 0, [w, h]).astype(int)
    out = np.zeros((h, w, crop.shape[2]), np.float32)
    valid = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return out, valid
    # box px -> crop px
    mb = m.copy()
    mb[:, 2] += m[:, :2] @ np.float64([x0, y0])
    interp = cv2.INTER_CUBIC if _scale(m) < 1.0 else cv2.INTER_LINEAR
    flags = interp | cv2.WARP_INVERSE_MAP
    box = (x1 - x0, y1 - y0)
    out[y0:y1, x0:x1] = cv2.warpAffine(crop.astype(np.float32, copy=False), mb, box, flags=flags,
                                       borderMode=cv2.BORDER_REPLICATE).reshape(box[1], box[0], -1)
    ones = np.ones((size, size), np.float32)
    valid[y0:y1, x0:x1] = cv2.warpAffine(ones, mb, box, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, valid


def split_phases(crop: np.ndarray, n: int) -> list[np.ndarray]:
    """Pixel boost: the n*n strided sub-images of a crop, tile (i, j)[y, x] = crop[y*n + i, x*n + j],
    row-major in (i, j). Each is a whole face at 1/n the resolution, sampled at its own
    sub-pixel phase, so a model of side S sees every pixel of an n*S crop exactly once."""
    return [crop[i::n, j::n] for i in range(n) for j in range(n)]


def interleave_phases(tiles: list[np.ndarray], n: int) -> np.ndarray:
    """The inverse of split_phases: every tile's pixel back at its place in the n*S crop."""
    s = tiles[0].shape[0]
    out = np.empty((s * n, s * n) + tiles[0].shape[2:], tiles[0].dtype)
    for k, tile in enumerate(tiles):
        i, j = divmod(k, n)
        out[i::n, j::n] = tile
    return out
