"""An ONNX face-restoration model as an enhancer (GFPGAN, GPEN-BFR, CodeFormer, RestoreFormer).

Contract, by default (no model card): one input 1x3xSxS, RGB, (pixel / 255 - 0.5) / 0.5,
the face aligned to the FFHQ 5-point template at S; one output 1x3xSxS in the same range.
A CodeFormer-style model has a second, scalar input (`weight`, float or double): it gets
`enhancer_weight`. A model card beside the model (or `inference.enhancer_preset`) changes
the template, normalisation, channel order or size exactly as for the engines (onnxrt.py):
GPEN-BFR-256, for one, wants the ArcFace-128 template at 256 (preset gpen_bfr_256).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .. import align
from ..config import InferenceSettings
from ..errors import ConfigError, EngineError
from ..faces import FusedFace
from ..onnxrt import (
    INPUT_TYPES,
    ModelCard,
    Runner,
    card_path,
    create_session,
    describe,
    image_side,
    load_card,
    load_model,
    preset_card,
)
from . import mix_into_face, register


class OnnxEnhancer:
    """Align the fused face at S, run the model, paste back inside the face, mix by blend."""

    name = "onnx"
    card_defaults = ModelCard(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), template="ffhq")
    EXPECTED = ("one input 1x3xSxS float (an aligned face), optionally a scalar float 'weight' input, "
                "and one output 1x3xSxS float")

    def __init__(self, settings: InferenceSettings):
        if not settings.enhancer:
            raise ConfigError("inference.enhancer: the onnx enhancer needs an ONNX model file (--enhancer)")
        self.settings = settings
        self.path = Path(settings.enhancer)
        preset = settings.enhancer_preset
        defaults = preset_card(preset, "enhancer", self.card_defaults) if preset else self.card_defaults
        _, source = load_model(self.path, settings.precision, "enhancer")
        self.session = create_session(source, settings, f"enhancer {self.path}")
        model_side = self._check_contract()
        self.card = load_card(self.path, defaults)
        self.size = model_side or self.card.size
        if self.size is None:
            raise EngineError(f"enhancer {self.path}: the crop size is not fixed in the model; give it as `size` in a model card")
        if model_side and self.card.size and model_side != self.card.size:
            said_by = f"preset {preset}" if preset and not card_path(self.path) else "model card"
            raise EngineError(f"enhancer {self.path}: the {said_by} says size {self.card.size}, the model {model_side}")
        self.template_px = align.template(self.card.template, self.size)
        s = self.size
        shapes = {self.input: (1, 3, s, s), self.session.get_outputs()[0].name: (1, 3, s, s)}
        if self.weight_input:
            shapes[self.weight_input] = self.weight_shape
        self.runner = Runner(self.session, shapes, "cuda" if settings.cuda_graph else None)

    def _check_contract(self) -> Optional[int]:
        """The model's side (None if not fixed); the image and weight inputs found by shape."""
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        preset = f" (preset {self.settings.enhancer_preset})" if self.settings.enhancer_preset else ""
        fail = EngineError(f"enhancer {self.path}: not a face-enhancer model{preset}: expected {self.EXPECTED}; "
                           f"it has inputs {describe(ins)} and outputs {describe(outs)}")
        images = [a for a in ins if len(a.shape) == 4]
        others = [a for a in ins if len(a.shape) != 4]
        if len(outs) != 1 or len(images) != 1 or len(others) > 1:
            raise fail
        if others and (others[0].type not in INPUT_TYPES
                       or any(d not in (1, None) and not isinstance(d, str) for d in others[0].shape)
                       or len(others[0].shape) > 2):
            raise fail
        try:
            side, out_side = image_side(images[0], 3), image_side(outs[0], 3)
        except ValueError:
            raise fail from None
        if side and out_side and side != out_side:
            raise fail
        self.input = images[0].name
        self.weight_input = others[0].name if others else None
        self.weight_shape = (1,) * len(others[0].shape) if others else ()
        return side or out_side

    # the steps, public so that `facefuse quantize` and the benchmark build inputs exactly as here
    def aligned_crop(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(crop float32 SxSx3 0..255, 2x3 matrix image px -> crop px) of a face."""
        m = align.crop_matrix(align.keypoints(landmarks), self.template_px)
        return align.warp_crop(image, m, self.size), m

    def feeds(self, crop: np.ndarray, weight: float) -> dict[str, np.ndarray]:
        feeds = {self.input: self.card.normalise(crop)[None]}
        if self.weight_input:
            feeds[self.weight_input] = np.full(self.weight_shape, weight, np.float64)
        return feeds

    def model_inputs(self, roi: np.ndarray, landmarks: np.ndarray, weight: float) -> list[dict]:
        return [self.feeds(self.aligned_crop(roi, landmarks)[0], weight)]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The model's output crop, float32 SxSx3 RGB 0..255."""
        return self.card.denormalise(self.runner(feeds)[0])

    def enhance(self, fused: FusedFace, blend: float, weight: float) -> FusedFace:
        if blend <= 0:
            return fused
        crop, m = self.aligned_crop(fused.image, fused.landmarks)
        out = self.run(self.feeds(crop, weight))
        warped, valid = align.paste_back(out, m, fused.mask.shape)
        return mix_into_face(fused, warped, valid, blend)


register("onnx", OnnxEnhancer)
