"""Fusion engines: one small contract, chosen by name from a registry.

An engine turns (a prepared source face, the target's ROI with its landmarks, the fusion
ratio) into a `FusedFace`: the fused ROI, the region where it is valid, the picture it is
blended onto, and the face geometry the mask and skin smoothing follow. Masks, blend modes,
smoothing and adjustments are shared (blend.py), so every engine gets them.

Adding an engine is adding one module that calls `register("name", factory)`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..faces import Face, FusedFace, SourceFace  # the contract's data (re-exported for engines)
from ..registry import Registry


class Engine(Protocol):
    name: str

    def prepare_source(self, image: np.ndarray, face: Face) -> SourceFace: ...

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float) -> FusedFace: ...


# engines living in modules that are imported only when asked for (heavy dependencies)
_REGISTRY: Registry[Engine] = Registry("engine", "inference.engine", __name__, {
    "classical": ".classical", "onnx-swap": ".onnx", "onnx-unet": ".onnx", "onnx-damo": ".damo"})
register = _REGISTRY.register
available = _REGISTRY.available


def create_engine(name: str, settings=None) -> Engine:
    """Build the engine called `name` (inference settings passed to its factory)."""
    return _REGISTRY.create(name, settings)
