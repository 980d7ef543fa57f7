"""Region planning: where in the output frame a face's work happens.

Everything after planning touches only the ROI; the rest of the output is the target
resized once, so the cost of a fusion follows the face's area, not the frame's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .faces import Face


@dataclass(frozen=True)
class ROI:
    """Integer pixel rectangle [x0, x1) x [y0, y1) in the output frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def offset(self) -> np.ndarray:
        return np.float32([self.x0, self.y0])

    def to_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


MIN_MARGIN = 0.1  # share of the face size: room for the feathered mask edge


def plan_roi(face: "Face", frame_width: int, frame_height: int, padding: float) -> ROI:
    """The face box grown by `padding` x its size on every side, clipped to the frame.

    A minimum margin of 10 % keeps room for the feathered mask edge even at padding 0.
    """
    pad = max(padding, MIN_MARGIN) * face.size
    x0, y0, x1, y1 = face.box
    return ROI(
        x0=max(0, int(np.floor(x0 - pad))),
        y0=max(0, int(np.floor(y0 - pad))),
        x1=min(frame_width, int(np.ceil(x1 + pad))),
        y1=min(frame_height, int(np.ceil(y1 + pad))),
    )
