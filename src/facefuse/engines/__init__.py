"""Fusion engines: one small contract, chosen by name from a registry.

An engine turns (a prepared source face, the target's ROI with its landmarks, the fusion
ratio) into a `FusedFace`: the fused ROI, the region where it is valid, the picture it is
blended onto, and the face geometry the mask and skin smoothing follow. Masks, blend modes,
smoothing and adjustments are shared (blend.py), so every engine gets them.

Adding an engine is adding one module that calls `register("name", factory)`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..errors import ConfigError
from ..detect import Face


@dataclass
class SourceFace:
    """A source image and its chosen face, plus whatever an engine prepared from it once."""

    image: np.ndarray  # RGB uint8, the whole source photo
    face: Face
    prepared: dict = field(default_factory=dict)


@dataclass
class FusedFace:
    """An engine's output for one face, in ROI coordinates (float32 RGB 0..255)."""

    image: np.ndarray  # the fused face; meaningful where `mask` > 0
    base: np.ndarray  # what it is blended onto (the target ROI, possibly re-shaped)
    mask: np.ndarray  # float32 0..1, hard region where `image` may be used
    landmarks: np.ndarray  # (468+, 2) face geometry of the result, ROI pixels
    face_size: float  # pixels, sets feathering and smoothing radii
    light: object = None  # an engine's per-face state for the next video frame (classical: LightField)


class Engine(Protocol):
    name: str

    def prepare_source(self, image: np.ndarray, face: Face) -> SourceFace: ...

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float) -> FusedFace: ...


_FACTORIES: dict[str, Callable[..., Engine]] = {}
# engines living in modules that are imported only when asked for (heavy dependencies)
_LAZY_MODULES = {"classical": ".classical", "onnx-swap": ".onnx", "onnx-unet": ".onnx"}


def register(name: str, factory: Callable[..., Engine]) -> None:
    _FACTORIES[name] = factory


def available() -> list[str]:
    return sorted(set(_FACTORIES) | set(_LAZY_MODULES))


def create_engine(name: str, settings=None) -> Engine:
    """Build the engine called `name` (inference settings passed to its factory)."""
    if name not in _FACTORIES and name in _LAZY_MODULES:
        try:
            importlib.import_module(_LAZY_MODULES[name], __name__)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"inference.engine: '{name}' is not installed in this build ({exc})") from exc
    if name not in _FACTORIES:
        raise ConfigError(f"inference.engine: unknown engine '{name}'; choose one of {', '.join(available())}")
    return _FACTORIES[name](settings)
