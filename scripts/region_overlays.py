"""Contact sheet of region maps: each photo's largest face at work scale (face about 128 px),
beside it the labels laid over it (skin green, hair red, glasses blue, hand yellow, other
grey), and the time region_map took. For looking at what the region map does.

    python scripts/region_overlays.py OUT.png PHOTO [PHOTO ...]
"""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np

from facefuse.config import Settings
from facefuse.detect import FaceDetector
from facefuse.hands import find_hands
from facefuse.io import read_image
from facefuse.regions import region_map

COLOURS = np.float32([[40, 200, 40], [230, 30, 30], [40, 90, 255], [255, 220, 0], [128, 128, 128]])
WORK_FACE = 128  # the engine's work scale: eye distance x 2.5 = 128 px


def work_crop(img: np.ndarray, lms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The face and an eye distance around it, at work scale, and its landmarks there."""
    eye = float(np.linalg.norm(lms[33] - lms[263]))
    x0, y0 = np.maximum(lms.min(0) - eye, 0).astype(int)
    x1, y1 = np.minimum(lms.max(0) + eye, [img.shape[1], img.shape[0]]).astype(int)
    scale = min(1.0, WORK_FACE / (2.5 * eye))
    crop = cv2.resize(img[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return crop, (lms - [x0, y0]) * scale, eye * scale


def tile(path: str, detector: FaceDetector) -> np.ndarray:
    img = read_image(path)
    faces = detector.detect(img).faces
    if not faces:
        return np.zeros((64, 256, 3), np.uint8)
    crop, lms, eye = work_crop(img, faces[0].landmarks)
    hands = find_hands(crop)
    t = time.perf_counter()
    regions = region_map(crop, lms, eye, hands)
    ms = (time.perf_counter() - t) * 1000
    colour = np.tensordot(np.moveaxis(regions.maps, 0, -1), COLOURS, axes=1)
    over = (0.55 * crop + 0.45 * colour).astype(np.uint8)
    pair = cv2.resize(np.hstack([crop, over]), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    label = f"{path.rsplit('/', 1)[-1][:28]} {ms:.1f} ms hands {len(hands)}"
    cv2.putText(pair, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    print(label, regions.shares(), flush=True)
    return pair


def main(out: str, paths: list[str]) -> None:
    detector = FaceDetector.from_settings(Settings())
    tiles = [tile(p, detector) for p in paths]
    side = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    padded = [cv2.copyMakeBorder(t, 0, side[0] - t.shape[0], 0, side[1] - t.shape[1], cv2.BORDER_CONSTANT) for t in tiles]
    rows = [np.hstack(padded[i:i + 3] + [np.zeros_like(padded[0])] * (3 - len(padded[i:i + 3])))
            for i in range(0, len(padded), 3)]
    cv2.imwrite(out, cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
