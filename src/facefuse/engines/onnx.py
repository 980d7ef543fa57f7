"""Neural engines: face models the user supplies as ONNX files, run by ONNX Runtime.

- `onnx-swap`: the inswapper contract. Inputs: the target face crop, 1x3xSxS RGB float in
  [0, 1], aligned to the ArcFace template at S (from the model, usually 128), and the
  source latent, 1xD: the L2-normalised identity embedding of the source face (from the
  `--embedder` model, ArcFace-style, 112 x 112 aligned crop) multiplied by the model's
  embedding map (its last initializer when that is a D x D matrix) and re-normalised.
  Output: the swapped crop, 1x3xSxS in [0, 1].
- `onnx-unet`: a generic image-to-image fusion model. Input: the aligned source and target
  crops concatenated (source first), 1x6xSxS; output: the fused crop, 1x3xSxS. Crop size,
  normalisation and alignment template come from a model card beside the model.

Model cards and presets (how a model wants its crops; onnxrt.py): a card is required for
`onnx-unet` unless a preset is given, optional for `onnx-swap` (defaults: mean 0, std 1,
arcface) and for the embedder (defaults: mean 0.5, std 0.5, arcface). A swap card's `latent`
says how the source is given: `emap` (inswapper: the embedding times the model's embedding
map, when it has one), `converter` (SimSwap / GHOST / HiFiFace: the raw embedding through a
second model, `inference.converter`), `embedding` (the embedding itself, HyperSwap) or
`image` (BlendSwap / UniFace: the source face aligned to `source_template` at the model's
source side, RGB 0..1); `normalise_latent` L2-normalises the result.

Pixel boost (`inference.pixel_boost`, onnx-swap): the face is aligned at the boost size
(a multiple of the model's side S), split into n*n strided sub-images, each run at S and
interleaved back, so a 128-px model gives a 256- or 512-px face (FaceFusion's method).

Both engines align each face to the template with a 5-point similarity, run the model once
per face and map its output back into the ROI; masks, blend modes, smoothing and
adjustments are the shared ones (blend.py). `ratio` mixes the model's output with the
target (0 = target unchanged, 1 = the model's output).

Precision: fp32 runs the file as it is; fp16 converts it when loading (onnxconverter-common,
inputs and outputs stay float32); int8 expects a model quantized by `facefuse quantize`.
Providers: CPU by default; CUDA / TensorRT when listed in `inference.providers` and present
in the installed onnxruntime, with `gpu_memory_limit_gb` and `cuda_graph` (IO binding on
fixed shapes). Every session is created once, when the engine is built, and reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import onnx
from onnx import numpy_helper

from .. import align
from ..config import InferenceSettings
from ..errors import ConfigError, EngineError
from ..faces import Face
from ..masks import face_region_mask
from ..onnxrt import (  # noqa: F401
    FLOAT_TYPES,
    ModelCard,
    Runner,
    card_path,
    create_session,
    describe,
    image_side,
    load_card,
    load_model,
    preset_card,
    static,
)
from . import Engine, FusedFace, SourceFace, register


def _square_init(model: onnx.ModelProto, dim: int) -> Optional[np.ndarray]:
    """The model's last initializer when it is a dim x dim float matrix (inswapper's emap)."""
    if not model.graph.initializer:
        return None
    last = model.graph.initializer[-1]
    if tuple(last.dims) != (dim, dim) or last.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        return None
    return numpy_helper.to_array(last).astype(np.float32)


def _face_size(lms: np.ndarray) -> float:
    pts = lms[:468]
    return float(np.sqrt(np.prod(pts.max(0) - pts.min(0))))


class _OnnxEngine(Engine):
    """What the neural engines share: one session, alignment, inference, paste-back."""

    name = ""
    card_required = False
    card_defaults = ModelCard()
    boost_allowed = False

    def __init__(self, settings: Optional[InferenceSettings] = None):
        self.settings = settings or InferenceSettings(engine=self.name)
        if not self.settings.model:
            raise ConfigError(f"inference.model: the {self.name} engine needs an ONNX model file (--model)")
        self.model_path = Path(self.settings.model)
        preset = self.settings.model_preset
        defaults = preset_card(preset, self.name, self.card_defaults) if preset else self.card_defaults
        model, source = load_model(self.model_path, self.settings.precision)
        self.session = create_session(source, self.settings, f"model {self.model_path}")
        self.card = load_card(self.model_path, defaults)
        model_side = self._check_contract(model)  # before a missing card: a wrong model says so first
        if self.card_required and not preset:
            self.card = load_card(self.model_path, defaults, required=True)
        self.size = self._side(model_side)
        self.crop_size = self._boosted_side()
        self.template_px = align.template(self.card.template, self.crop_size)
        self.runner = Runner(self.session, self._shapes(), "cuda" if self.settings.cuda_graph else None)

    # subclasses: _check_contract(model) -> S or None, _shapes(), prepare_source(), feeds()
    def _fail(self, expected: str) -> EngineError:
        s = self.session
        preset = f" (preset {self.settings.model_preset})" if self.settings.model_preset else ""
        return EngineError(f"model {self.model_path}: not an {self.name} model{preset}: expected {expected}; "
                           f"it has inputs {describe(s.get_inputs())} and outputs {describe(s.get_outputs())}")

    def _side(self, model_side: Optional[int]) -> int:
        side = model_side or self.card.size
        by_preset = self.settings.model_preset and not card_path(self.model_path)
        said_by = f"preset {self.settings.model_preset}" if by_preset else "model card"
        if side is None:
            raise EngineError(f"model {self.model_path}: the crop size is not fixed in the model; "
                              "give it as `size` in a model card")
        if model_side and self.card.size and model_side != self.card.size:
            raise EngineError(f"model {self.model_path}: the {said_by} says size {self.card.size}, the model {model_side}")
        return side

    def _boosted_side(self) -> int:
        """The side faces are aligned at: the model's, or the pixel-boost size (n * S)."""
        boost = self.settings.pixel_boost
        if not boost or boost == self.size:
            return self.size
        if not self.boost_allowed:
            raise ConfigError(f"inference.pixel_boost: only for onnx-swap models, not {self.name}")
        if boost < self.size or boost % self.size:
            raise ConfigError(f"inference.pixel_boost: {boost} is not a multiple of the model's side {self.size}")
        return boost

    # the steps, public so that `facefuse quantize` builds calibration inputs exactly as here
    def aligned_crop(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(crop float32 CxCx3 0..255, 2x3 matrix image px -> crop px) of a face; C is the
        model's side S, or the pixel-boost side."""
        m = align.crop_matrix(align.keypoints(landmarks), self.template_px)
        return align.warp_crop(image, m, self.crop_size), m

    def crop_feeds(self, source: SourceFace, crop: np.ndarray, m: np.ndarray, landmarks: np.ndarray,
                   ratio: float) -> list[dict[str, np.ndarray]]:
        """The model's inputs for an aligned crop: one run, or one per pixel-boost sub-image."""
        n = self.crop_size // self.size
        return [self.feeds(source, tile) for tile in align.split_phases(crop, n)]

    def model_inputs(self, source: SourceFace, roi: np.ndarray, landmarks: np.ndarray, ratio: float = 1.0) -> list[dict]:
        """Every model input a face needs (what `fuse` runs and `facefuse quantize` calibrates on)."""
        crop, m = self.aligned_crop(roi, landmarks)
        return self.crop_feeds(source, crop, m, landmarks, ratio)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The model's output crop, float32 SxSx3 0..255."""
        return self.card.denormalise(self.runner(feeds)[0])

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float,
             light=None, light_keep: float = 0.0) -> FusedFace:
        """A still model: no state from frame to frame (`light` is not used)."""
        h, w = target_roi.shape[:2]
        crop, m = self.aligned_crop(target_roi, target_landmarks)
        outs = [self.run(f) for f in self.crop_feeds(source, crop, m, target_landmarks, ratio)]
        out = outs[0] if len(outs) == 1 else align.interleave_phases(outs, self.crop_size // self.size)
        warped, valid = align.paste_back(out, m, (h, w))
        base = target_roi.astype(np.float32)
        image = base + (ratio * valid)[:, :, None] * (warped - base)
        region = face_region_mask(target_landmarks, (h, w), cut_mouth=True) * valid
        return FusedFace(image=image, base=base, mask=region, landmarks=target_landmarks,
                         face_size=_face_size(target_landmarks))


class Embedder:
    """An ArcFace-style identity model: an aligned face crop (1x3xSxS) -> a 1xD embedding."""

    defaults = ModelCard(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), template="arcface")
    EXPECTED = "one input 1x3xSxS float (an aligned face, usually 112) and one output 1xD float"

    def __init__(self, path: Path, settings: InferenceSettings, dim: Optional[int], what: str = "embedder"):
        model, source = load_model(path, "fp32", what)
        self.card = load_card(path, self.defaults)
        session = create_session(source, settings.model_copy(update={"cuda_graph": False}), f"{what} {path}")
        ins, outs = session.get_inputs(), session.get_outputs()
        try:
            if len(ins) != 1 or len(outs) != 1:
                raise ValueError
            side = image_side(ins[0], 3) or self.card.size
            out = outs[0]
            if out.type not in FLOAT_TYPES or len(out.shape) != 2 or static(out.shape[0]) not in (None, 1) or not side:
                raise ValueError
        except ValueError:
            raise EngineError(f"{what} {path}: not an identity-embedding model: expected {self.EXPECTED}; it has inputs "
                              f"{describe(ins)} and outputs {describe(outs)}") from None
        out_dim = static(out.shape[1])
        if dim is not None and out_dim is not None and out_dim != dim:
            raise EngineError(f"{what} {path}: gives {out_dim}-d embeddings, the model expects {dim}")
        self.runner = Runner(session, {})
        self.input = ins[0].name
        self.size = side
        self.template = align.template(self.card.template, side)
        self.dim = dim or out_dim

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        """The raw (not normalised) 1 x D embedding of an aligned SxS crop."""
        emb = self.runner({self.input: self.card.normalise(crop)[None]}).reshape(1, -1)
        if self.dim is not None and emb.shape[1] != self.dim:
            raise EngineError(f"embedder: gives {emb.shape[1]}-d embeddings, the model expects {self.dim}")
        return emb


def l2_normalised(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class OnnxSwapEngine(_OnnxEngine):
    """inswapper-style: aligned target crop + source identity latent -> swapped crop."""

    name = "onnx-swap"
    boost_allowed = True
    card_defaults = ModelCard(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), template="arcface")
    EXPECTED = "inputs 'target' 1x3xSxS float and 'source' 1xD float (identity latent), output 1x3xSxS float"
    EXPECTED_IMAGE = "inputs 'target' 1x3xSxS float and 'source' 1x3xS'xS' float (aligned source face), output 1x3xSxS float"

    def __init__(self, settings: Optional[InferenceSettings] = None):
        super().__init__(settings)
        if self.card.latent == "image":
            return
        if not self.settings.embedder:
            raise ConfigError("inference.embedder: the onnx-swap engine needs an identity-embedding ONNX model (--embedder)")
        self.embedder = Embedder(Path(self.settings.embedder), self.settings,
                                 None if self.card.latent == "converter" else self.latent_dim)
        self.converter = self._load_converter() if self.card.latent == "converter" else None

    def _check_contract(self, model: onnx.ModelProto) -> int:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        image_source = self.card.latent == "image"
        expected = self.EXPECTED_IMAGE if image_source else self.EXPECTED
        if len(ins) != 2 or len(outs) != 1:
            raise self._fail(expected)
        if image_source:
            named = {a.name: a for a in ins}
            image, src = (named["target"], named["source"]) if set(named) == {"target", "source"} else ins
        else:
            by_rank = {len(a.shape): a for a in ins}
            image, src = by_rank.get(4), by_rank.get(2)
            if image is None or src is None or src.type not in FLOAT_TYPES or static(src.shape[0]) not in (None, 1):
                raise self._fail(expected)
        try:
            side = image_side(image, 3)
            out_side = image_side(outs[0], 3)
            source_side = image_side(src, 3) if image_source else None
        except ValueError:
            raise self._fail(expected) from None
        if side and out_side and side != out_side:
            raise self._fail(expected + " (the same S)")
        self.image_input, self.latent_input = image.name, src.name
        if image_source:
            self.source_size = source_side or side or out_side
            self.latent_dim = None
            self.emap = None
            return side or out_side
        self.latent_dim = static(src.shape[1])
        if not self.latent_dim:
            raise self._fail(expected + " with D fixed in the model")
        self.emap = _square_init(model, self.latent_dim) if self.card.latent == "emap" else None
        return side or out_side

    def _shapes(self) -> dict:
        s = self.size
        latent = (1, 3, self.source_size, self.source_size) if self.card.latent == "image" else (1, self.latent_dim)
        return {self.image_input: (1, 3, s, s), self.latent_input: latent,
                self.session.get_outputs()[0].name: (1, 3, s, s)}

    def _load_converter(self) -> Runner:
        """SimSwap / GHOST / HiFiFace-style: a second model maps the ArcFace embedding to the
        latent the swap model was trained with (1xD -> 1xD')."""
        if not self.settings.converter:
            raise ConfigError(f"inference.converter: preset {self.settings.model_preset or '(model card)'} needs its "
                              "embedding-converter ONNX model (--converter)")
        path = Path(self.settings.converter)
        _, source = load_model(path, "fp32", "converter")
        session = create_session(source, self.settings.model_copy(update={"cuda_graph": False}), f"converter {path}")
        ins, outs = session.get_inputs(), session.get_outputs()
        ok = (len(ins) == 1 and len(outs) == 1 and all(a.type in FLOAT_TYPES and len(a.shape) == 2 for a in (ins[0], outs[0]))
              and static(outs[0].shape[1]) in (None, self.latent_dim))
        if not ok:
            raise EngineError(f"converter {path}: not an embedding converter: expected one input 1xD float and one output "
                              f"1x{self.latent_dim} float; it has inputs {describe(ins)} and outputs {describe(outs)}")
        self.converter_input = ins[0].name
        return Runner(session, {})

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The L2-normalised identity embedding (1 x D) of a face."""
        return l2_normalised(self._raw_embedding(image, face))

    def _raw_embedding(self, image: np.ndarray, face: Face) -> np.ndarray:
        m = align.crop_matrix(face.keypoints, self.embedder.template)
        return self.embedder(align.warp_crop(image, m, self.embedder.size))

    def latent(self, image: np.ndarray, face: Face) -> np.ndarray:
        """What the swap model gets for the source, as its card's `latent` says."""
        if self.card.latent == "image":
            m = align.crop_matrix(face.keypoints, align.template(self.card.source_template, self.source_size))
            crop = align.warp_crop(image, m, self.source_size)
            return ModelCard(channels=self.card.channels).normalise(crop)[None]
        if self.card.latent == "converter":
            latent = self.converter({self.converter_input: self._raw_embedding(image, face)}).reshape(1, -1)
        else:
            latent = self.embed(image, face)
            if self.emap is not None:
                latent = latent @ self.emap
        return l2_normalised(latent) if self.card.normalise_latent else latent

    def prepare_source(self, image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
        """Embed the source once: the latent is all the swap model needs of it."""
        return SourceFace(image=image, face=face, prepared={"latent": self.latent(image, face).astype(np.float32)})

    def feeds(self, source: SourceFace, crop: np.ndarray) -> dict[str, np.ndarray]:
        return {self.image_input: self.card.normalise(crop)[None], self.latent_input: source.prepared["latent"]}


class OnnxUnetEngine(_OnnxEngine):
    """Image-to-image: aligned source and target crops (1x6xSxS) -> fused crop (1x3xSxS)."""

    name = "onnx-unet"
    card_required = True
    EXPECTED = "one input 1x6xSxS float (source then target crop, RGB) and one output 1x3xSxS float"

    def _check_contract(self, model: onnx.ModelProto) -> int:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1 or len(outs) != 1:
            raise self._fail(self.EXPECTED)
        try:
            side, out_side = image_side(ins[0], 6), image_side(outs[0], 3)
        except ValueError:
            raise self._fail(self.EXPECTED) from None
        if side and out_side and side != out_side:
            raise self._fail(self.EXPECTED + " (the same S)")
        self.input = ins[0].name
        return side or out_side

    def _shapes(self) -> dict:
        s = self.size
        return {self.input: (1, 6, s, s), self.session.get_outputs()[0].name: (1, 3, s, s)}

    def prepare_source(self, image: np.ndarray, face: Face, alpha: np.ndarray | None = None) -> SourceFace:
        """Align and normalise the source crop once; every target reuses it."""
        crop, _ = self.aligned_crop(image, face.landmarks)
        return SourceFace(image=image, face=face, prepared={"crop": self.card.normalise(crop)})

    def feeds(self, source: SourceFace, crop: np.ndarray) -> dict[str, np.ndarray]:
        both = np.concatenate([source.prepared["crop"], self.card.normalise(crop)], axis=0)
        return {self.input: both[None]}


register("onnx-swap", OnnxSwapEngine)
register("onnx-unet", OnnxUnetEngine)
