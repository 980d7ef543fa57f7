"""`onnx-damo`: the seed's own generator (ModelScope cv_unet-image-face-fusion_damo) exported
to ONNX, run with its contract.

Inputs (names read from the model when they differ; by shape, the contours in model order):
- `input_1`: 1x3x256x256, the target face crop at the seed's template, (pixel / 255 - 0.5) / 0.5,
  RGB as ModelScope feeds it (a card's `channels: bgr` serves exports that expect BGR);
- `input_2`: 1x512, the source identity: an ArcFace / CurricularFace-style embedder
  (`inference.embedder`) run on the source face cropped the same way at 256 and resized to
  the embedder's side (112), L2-normalised. That is the seed's crop, not a standard ArcFace one;
- `input_3` / `input_4`: 1x17x2, the fused and the target face contour (the 68-point
  scheme's jaw line, 17 points) in [-1, 1] of the crop, x right, y down.
Output `output_1`: 1x3x256x256 in [-1, 1], in the channel order of `input_1`.

Alignment is the seed's: insightface's ArcFace-112 five points contracted by 0.85 about
(56, 56), scaled by 256/112 (align.DAMO), fitted by a least-squares similarity from the
face's pupils, nose tip and mouth corners. With the plain ArcFace template every face would
land about 8 % of the eye distance off.

Contour: the seed takes the fused contour from a 3D face model (the two faces' identity
coefficients averaged, pose and expression from the target). Here it comes from the mesh:
the jaw line's 17 points in each face's own aligned crop, and the fused contour is the
target's moved toward the source's by CONTOUR_SHARE * ratio, so at ratio 1 it lies half way,
as the seed's average does; at ratio 0 it is the target's. The output is then mixed with the
target by `ratio` like every engine's, and pasted back under facefuse's feathered face mask
and modes (the seed used a fixed alpha mask).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import onnx

from .. import mesh
from ..config import InferenceSettings
from ..errors import ConfigError
from ..faces import Face
from ..onnxrt import FLOAT_TYPES, ModelCard, image_side, static
from . import SourceFace, register
from .onnx import Embedder, _OnnxEngine, l2_normalised

# mediapipe mesh points standing for the 68-point scheme's jaw line 0..16: from the
# image-left temple down to the chin (152) and up to the image-right temple, symmetric pairs.
JAW_17 = [162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389]
CONTOUR_SHARE = 0.5  # how far toward the source's contour the fused one moves at ratio 1
NAMES = ("input_1", "input_2", "input_3", "input_4")


def contour_in_crop(landmarks: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The 17 jaw-line points of a face, in [-1, 1] of its aligned crop (x right, y down)."""
    pts = mesh.apply_affine(m, np.asarray(landmarks, np.float64)[JAW_17])
    return (pts / size * 2.0 - 1.0).astype(np.float32)


def fused_contour(target: np.ndarray, source: np.ndarray, ratio: float) -> np.ndarray:
    """The target's contour moved toward the source's: half way at ratio 1 (CONTOUR_SHARE)."""
    return (target + np.float32(CONTOUR_SHARE * ratio) * (source - target)).astype(np.float32)


class OnnxDamoEngine(_OnnxEngine):
    """Template crop + identity + fused / target contour -> fused crop (the seed's generator)."""

    name = "onnx-damo"
    card_defaults = ModelCard(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), template="damo")
    EXPECTED = ("inputs 'input_1' 1x3x256x256 float (face crop), 'input_2' 1x512 float (identity), 'input_3' and "
                "'input_4' 1x17x2 float (fused and target contour), and one output 'output_1' 1x3x256x256 float")

    def __init__(self, settings: Optional[InferenceSettings] = None):
        super().__init__(settings)
        if not self.settings.embedder:
            raise ConfigError("inference.embedder: the onnx-damo engine needs an identity-embedding ONNX model (--embedder)")
        self.embedder = Embedder(Path(self.settings.embedder), self.settings, self.id_dim)

    def _check_contract(self, model: onnx.ModelProto) -> int:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 4 or len(outs) != 1 or any(a.type not in FLOAT_TYPES for a in ins):
            raise self._fail(self.EXPECTED)
        named = {a.name: a for a in ins}
        if set(named) == set(NAMES):
            image, ident, fused, target = (named[n] for n in NAMES)
        else:  # other names: by shape, the two contours in the model's order
            by_rank: dict[int, list] = {}
            for a in ins:
                by_rank.setdefault(len(a.shape), []).append(a)
            if [len(by_rank.get(r, [])) for r in (4, 2, 3)] != [1, 1, 2]:
                raise self._fail(self.EXPECTED)
            (image,), (ident,), (fused, target) = by_rank[4], by_rank[2], by_rank[3]
        try:
            side, out_side = image_side(image, 3), image_side(outs[0], 3)
        except ValueError:
            raise self._fail(self.EXPECTED) from None
        contour_ok = all(len(c.shape) == 3 and static(c.shape[0]) in (None, 1) and c.shape[1] == 17 and c.shape[2] == 2
                         for c in (fused, target))
        if (side and out_side and side != out_side) or len(ident.shape) != 2 or not static(ident.shape[1]) or not contour_ok:
            raise self._fail(self.EXPECTED)
        self.image_input, self.id_input, self.fused_input, self.target_input = image.name, ident.name, fused.name, target.name
        self.id_dim = static(ident.shape[1])
        return side or out_side

    def _shapes(self) -> dict:
        s = self.size
        return {self.image_input: (1, 3, s, s), self.id_input: (1, self.id_dim), self.fused_input: (1, 17, 2),
                self.target_input: (1, 17, 2), self.session.get_outputs()[0].name: (1, 3, s, s)}

    def identity(self, crop: np.ndarray) -> np.ndarray:
        """The seed's identity: the 256 template crop resized to the embedder's side, embedded, L2-normalised."""
        small = cv2.resize(crop, (self.embedder.size, self.embedder.size), interpolation=cv2.INTER_AREA)
        return l2_normalised(self.embedder(small)).astype(np.float32)

    def prepare_source(self, image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
        """The source's identity and its contour in its own aligned crop, once per source."""
        crop, m = self.aligned_crop(image, face.landmarks)
        return SourceFace(image=image, face=face, prepared={
            "identity": self.identity(crop), "contour": contour_in_crop(face.landmarks, m, self.size)})

    def crop_feeds(self, source: SourceFace, crop: np.ndarray, m: np.ndarray, landmarks: np.ndarray,
                   ratio: float) -> list[dict[str, np.ndarray]]:
        target = contour_in_crop(landmarks, m, self.size)
        fused = fused_contour(target, source.prepared["contour"], ratio)
        return [{self.image_input: self.card.normalise(crop)[None], self.id_input: source.prepared["identity"],
                 self.fused_input: fused[None], self.target_input: target[None]}]


register("onnx-damo", OnnxDamoEngine)
