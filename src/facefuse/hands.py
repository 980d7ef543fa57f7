"""Hands in front of a face: mediapipe's bundled palm detector and hand landmark model
(`mediapipe/modules/palm_detection`, `hand_landmark`, run through `mediapipe.solutions.hands`),
and the mask a hand's 21 landmarks cover.

A hand over a face has the face's own skin colour, so no colour rule can tell it from the
cheek it covers; its shape can. The landmark model places the 21 joints (wrist, four per
finger); the hand is the palm polygon and a thick stroke along each finger.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import cv2
import numpy as np

from .detect import quiet_native_logs

HAND_CONFIDENCE = 0.5  # mediapipe palm detection and landmark presence score (0..1) a hand needs
PALM = [0, 1, 5, 9, 13, 17]  # wrist, thumb base and the four knuckles: the palm's outline
FINGERS = [[0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]


class HandFinder:
    """mediapipe's hand graph, created once and reused. A graph runs one image at a time,
    so calls are serialised by a lock (the face detector's own graphs are separate)."""

    def __init__(self, max_hands: int = 2):
        import mediapipe as mp  # heavy: imported only when hands are looked for

        with quiet_native_logs():
            self._graph = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=max_hands,
                                                   model_complexity=1, min_detection_confidence=HAND_CONFIDENCE)
        self._lock = threading.Lock()
        self._started = False

    def find(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(21, 2) float32 landmarks in `rgb`'s pixels for each hand found (uint8 RGB in)."""
        h, w = rgb.shape[:2]
        with self._lock:
            if self._started:
                result = self._graph.process(np.ascontiguousarray(rgb))
            else:  # the first image logs a notice to fd 2 once per process (the CLI promises one line)
                with quiet_native_logs():
                    result = self._graph.process(np.ascontiguousarray(rgb))
                self._started = True
        return [np.float32([[p.x * w, p.y * h] for p in hand.landmark])
                for hand in (result.multi_hand_landmarks or [])]


@lru_cache(maxsize=1)
def _finder() -> HandFinder:
    return HandFinder()


def find_hands(rgb: np.ndarray) -> list[np.ndarray]:
    """The hands in `rgb` (the frame, or a crop around a face), as (21, 2) landmark arrays."""
    return _finder().find(rgb)


def hand_mask(hands: list[np.ndarray], shape: tuple[int, int], finger_width: float) -> np.ndarray:
    """float32 0/1 mask over an image of `shape` covering each hand: its palm polygon and
    each finger as a stroke through its joints, `finger_width` palm widths (index to little
    finger knuckle, landmarks 5-17) thick: joints are the finger's centre line, so the
    stroke's width is what reaches its sides."""
    mask = np.zeros(shape, np.uint8)
    for pts in hands:
        width = max(1, int(round(finger_width * float(np.linalg.norm(pts[5] - pts[17])))))
        fixed = np.round(pts * 16).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(fixed[PALM]), 1, lineType=cv2.LINE_8, shift=4)
        for finger in FINGERS:
            cv2.polylines(mask, [fixed[finger]], False, 1, thickness=width, lineType=cv2.LINE_8, shift=4)
            cv2.circle(mask, tuple(fixed[finger[-1]]), 16 * width // 2, 1, -1, lineType=cv2.LINE_8, shift=4)
        cv2.polylines(mask, [fixed[PALM]], True, 1, thickness=width, lineType=cv2.LINE_8, shift=4)
    return mask.astype(np.float32)


# eye distances: the least palm width (knuckles 5 to 17) of a hand in front of a face. The
# hand model also takes an ear or a fold at the face's edge for a small hand: on four dev
# photos those measured 0.13-0.19, real hands on a chin or cheeks 0.32-0.5
MIN_PALM = 0.25


def hands_in_front(hands: list[np.ndarray], shape: tuple[int, int], eye_dist: float,
                   finger_width: float) -> np.ndarray | None:
    """float32 0/1 mask over an image of `shape` (a face's region) of the `hands` (landmarks
    in its pixels, from find_hands) large enough to be in front of a face whose eye distance
    is `eye_dist` (MIN_PALM), or None when there are none."""
    near = [p for p in hands if float(np.linalg.norm(p[5] - p[17])) >= MIN_PALM * eye_dist]
    return hand_mask(near, shape, finger_width) if near else None
