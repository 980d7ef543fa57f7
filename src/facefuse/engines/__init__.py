"""Fusion engines: one small contract, chosen by name from a registry.

An engine turns (a prepared source face, the target's ROI with its landmarks, the fusion
ratio) into a `FusedFace`: the fused ROI, the region where it is valid, the picture it is
blended onto, and the face geometry the mask and skin smoothing follow. Masks, blend modes,
smoothing and adjustments are shared (blend.py), so every engine gets them.

Adding an engine is one module with a subclass of `Engine` that calls
`register("name", factory)` when imported, plus one line naming that module in the
registry's table below (so it is imported only when asked for).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..faces import Face, FusedFace, SourceFace  # the contract's data (re-exported for engines)
from ..registry import Registry


class Engine:
    """The contract every engine fulfils (subclass it and override the two methods).

    Capabilities the pipeline reads, all off by default:
    - `tight_roi`: the result changes nothing outside `FusedFace.mask` in the normal mode, so
      a video may fuse it on the smallest ROI (pipeline.Fuser._frame_padding).
    An engine that cannot use the source's opacity ignores `alpha`; one that keeps no state
    from frame to frame ignores `light` and returns `FusedFace.light` None.
    """

    name: str = ""
    tight_roi: bool = False

    def prepare_source(self, image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
        """What the engine needs of a source once (cached and reused for every target):
        `image` RGB uint8, `face` its chosen face, `alpha` its uint8 opacity (None: opaque;
        transparent pixels are not face)."""
        raise NotImplementedError

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float,
             light: Any = None, light_keep: float = 0.0) -> FusedFace:
        """The fused face on `target_roi` (RGB uint8; its landmarks in ROI pixels) at `ratio`.
        `light`: this face's state from the previous video frame (the `FusedFace.light` this
        engine returned then; None at first), of which `light_keep` is carried over."""
        raise NotImplementedError

    def next_state(self, kept: Any, finished: Any) -> Any:
        """The state a track keeps when a frame's fusion returns `finished` while the track
        holds `kept` (None: none yet): frames fused side by side each start from the state of
        the frame `in_flight` before them, and what they return reaches the track in the
        order they finish. Default: the newest."""
        return finished

    def warm_up(self) -> None:
        """Do now, once per process, the set-up a first fusion would otherwise do on its way
        (tables, caches): a live stream's first frame must not wait for it. Default: none."""


# each engine's module, imported when its name is asked for (heavy dependencies stay unloaded)
_REGISTRY: Registry[Engine] = Registry("engine", "inference.engine", __name__, {
    "classical": ".classical", "onnx-swap": ".onnx", "onnx-unet": ".onnx", "onnx-damo": ".damo"})
register = _REGISTRY.register
available = _REGISTRY.available


def create_engine(name: str, settings=None) -> Engine:
    """Build the engine called `name` (inference settings passed to its factory)."""
    return _REGISTRY.create(name, settings)
