"""Face enhancers: a second model run on every fused face, after the engine and before
`compose`, whatever the engine (the classical one included).

An enhancer takes an engine's `FusedFace` and returns it with a sharper `image` inside the
face: it aligns the fused face to its own template, runs its model and pastes the result
back, mixed by `blend` (0 = the fused face unchanged, 1 = the enhancer's output) and only
inside the face's region (`FusedFace.mask`), so the masks, modes and everything outside the
face stay what the engine made them. GFPGAN, GPEN, CodeFormer and RestoreFormer are such
models; FaceFusion, Deep-Live-Cam and roop run one after their swap.

Adding an enhancer is one module whose factory is registered with `register("name", factory)`
when imported, plus one line naming that module in the registry's table below. The enhancer
used is the one registered for the model file's format (its suffix: `.onnx` -> "onnx").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from ..faces import FusedFace
from ..registry import Registry


class Enhancer(Protocol):
    name: str

    def enhance(self, fused: FusedFace, blend: float, weight: float) -> FusedFace: ...


def mix_into_face(fused: FusedFace, enhanced: np.ndarray, valid: np.ndarray, blend: float) -> FusedFace:
    """`fused` with `enhanced` (ROI-sized, float32 RGB 0..255) mixed in by `blend`, where the
    enhancer's crop reached (`valid`) and only inside the face region (`fused.mask`): outside
    it the fused image is left exactly as it was."""
    weight = (np.float32(blend) * valid * fused.mask)[:, :, None]
    return replace(fused, image=fused.image + weight * (enhanced - fused.image))


_REGISTRY: Registry[Enhancer] = Registry("enhancer", "inference.enhancer", __name__, {"onnx": ".onnx"})
register = _REGISTRY.register
available = _REGISTRY.available


def create_enhancer(name: str, settings=None) -> Enhancer:
    """Build the enhancer called `name` (inference settings passed to its factory)."""
    return _REGISTRY.create(name, settings)


def enhancer_for(settings) -> Optional[Enhancer]:
    """The enhancer for the model file the inference settings name (by its format), or None."""
    if not settings.enhancer:
        return None
    return create_enhancer(Path(str(settings.enhancer)).suffix.lower().lstrip(".") or "onnx", settings)
