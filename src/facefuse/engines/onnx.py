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

A model card is `<model>.yaml`, `<model>.yml` or `<model>.json` next to `<model>.onnx`:
    size: 256              # crop side S (optional when the model's input shape is fixed)
    mean: [0.5, 0.5, 0.5]  # model input = (pixel / 255 - mean) / std, RGB; output inverted
    std: [0.5, 0.5, 0.5]   #   the same way (a single number applies to all channels)
    template: ffhq         # arcface | ffhq | five [x, y] pairs as a share of the crop side
It is required for `onnx-unet`, optional for `onnx-swap` (defaults: mean 0, std 1,
arcface) and for the embedder (defaults: mean 0.5, std 0.5, arcface).

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

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from .. import align
from ..config import InferenceSettings
from ..faces import Face
from ..errors import ConfigError, EngineError
from ..masks import face_region_mask
from . import FusedFace, SourceFace, register

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
CARD_KEYS = {"size", "mean", "std", "template"}
TRT_CACHE = Path.home() / ".cache" / "facefuse" / "tensorrt"


# -- model cards ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelCard:
    """How a model wants its crops: side, normalisation (0..1 scale, RGB), template."""

    size: Optional[int] = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    template: align.TemplateSpec = "arcface"

    def normalise(self, crop: np.ndarray) -> np.ndarray:
        """HxWx3 float 0..255 -> 3xHxW model input."""
        x = (crop * np.float32(1 / 255.0) - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

    def denormalise(self, y: np.ndarray) -> np.ndarray:
        """3xHxW model output -> HxWx3 float32 0..255."""
        img = y.astype(np.float32).transpose(1, 2, 0) * np.float32(self.std) + np.float32(self.mean)
        return np.clip(img * 255.0, 0.0, 255.0)


def card_path(model: Path) -> Optional[Path]:
    for ext in (".yaml", ".yml", ".json"):
        p = model.with_suffix(ext)
        if p.is_file():
            return p
    return None


def load_card(model: Path, defaults: ModelCard, required: bool = False) -> ModelCard:
    """The model card beside `model`, its missing keys taken from `defaults`."""
    path = card_path(model)
    if path is None:
        if required:
            raise EngineError(f"{model}: no model card; put {model.with_suffix('.yaml').name} beside it "
                              "with size, mean, std and template (see README, Neural engines)")
        return defaults
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # YAML/JSON parse errors, unreadable file
        raise EngineError(f"{path}: model card is not valid {path.suffix[1:].upper()} ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise EngineError(f"{path}: model card must be a mapping of {', '.join(sorted(CARD_KEYS))}")
    unknown = set(data) - CARD_KEYS
    if unknown:
        raise EngineError(f"{path}: unknown model card key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(CARD_KEYS))}")
    if required:
        missing = {"mean", "std", "template"} - set(data)
        if missing:
            raise EngineError(f"{path}: model card lacks {', '.join(sorted(missing))}")
    values = {}
    try:
        if "size" in data:
            values["size"] = int(data["size"])
            if not 16 <= values["size"] <= 2048:
                raise ValueError("size must be 16-2048")
        for key in ("mean", "std"):
            if key in data:
                v = np.broadcast_to(np.asarray(data[key], np.float64), (3,))
                values[key] = tuple(float(x) for x in v)
        if any(s == 0 for s in values.get("std", (1.0,))):
            raise ValueError("std must not be 0")
        if "template" in data:
            align.template(data["template"], 112)  # validates it
            values["template"] = data["template"] if isinstance(data["template"], str) else tuple(map(tuple, data["template"]))
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{path}: {exc}") from exc
    return ModelCard(**{**defaults.__dict__, **values})


# -- sessions -------------------------------------------------------------------------------
def session_providers(settings: InferenceSettings) -> list[tuple[str, dict]]:
    """(provider, options) for ONNX Runtime from the inference settings, GPU options included.

    A provider that is asked for but missing from this onnxruntime build is an error, not a
    silent fall-back to the CPU: the user asked for a GPU and should know they got none.
    """
    available = ort.get_available_providers()
    chosen: list[tuple[str, dict]] = []
    for name in settings.providers or ["CPUExecutionProvider"]:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            hint = " (GPU providers need the onnxruntime-gpu package and an NVIDIA driver)" if full in GPU_PROVIDERS else ""
            raise EngineError(f"inference.providers: {name} is not available in this onnxruntime "
                              f"{ort.__version__} (available: {', '.join(available)}){hint}")
        chosen.append((full, _provider_options(full, settings)))
    if settings.cuda_graph and not any(p == "CUDAExecutionProvider" for p, _ in chosen):
        raise ConfigError("inference.cuda_graph: needs CUDAExecutionProvider in inference.providers")
    return chosen


def _provider_options(provider: str, settings: InferenceSettings) -> dict:
    limit = int(settings.gpu_memory_limit_gb * 1024 ** 3) if settings.gpu_memory_limit_gb else None
    if provider == "CUDAExecutionProvider":
        opts: dict = {"device_id": 0}
        if limit:
            opts.update(gpu_mem_limit=limit, arena_extend_strategy="kSameAsRequested")
        if settings.cuda_graph:
            opts["enable_cuda_graph"] = "1"
        return opts
    if provider == "TensorrtExecutionProvider":
        TRT_CACHE.mkdir(parents=True, exist_ok=True)
        opts = {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(TRT_CACHE),
                "trt_fp16_enable": settings.precision == "fp16", "trt_int8_enable": settings.precision == "int8"}
        if limit:
            opts["trt_max_workspace_size"] = limit
        return opts
    return {}


def load_model(path: Path, precision: str, what: str = "model") -> tuple[onnx.ModelProto, object]:
    """The parsed model and what to hand ONNX Runtime (the path, or converted bytes)."""
    if not path.is_file():
        raise EngineError(f"{what} {path}: file not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise EngineError(f"{what} {path}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from exc
    quantized = any(n.op_type in QUANT_OPS for n in model.graph.node)
    if precision == "int8" and not quantized:
        raise EngineError(f"{what} {path}: precision int8 needs a model quantized by `facefuse quantize` "
                          "(this one has no quantized operators)")
    if precision == "fp16":
        if quantized:
            raise EngineError(f"{what} {path}: is already quantized to int8; use precision int8 for it")
        from onnxconverter_common import float16

        for i, node in enumerate(model.graph.node):  # the converter names its casts after nodes
            node.name = node.name or f"{node.op_type}_{i}"
        try:
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
        except Exception as exc:
            raise EngineError(f"{what} {path}: fp16 conversion failed ({str(exc).splitlines()[0][:200]})") from exc
        return model, converted.SerializeToString()
    return model, str(path)


def create_session(source, settings: InferenceSettings, what: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # unused-initializer notes (inswapper's emap) are not news
    if settings.threads:
        opts.intra_op_num_threads = settings.threads
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=session_providers(settings))
    except (EngineError, ConfigError):
        raise
    except Exception as exc:
        raise EngineError(f"{what}: ONNX Runtime could not load it ({str(exc).splitlines()[0][:200]})") from exc


class Runner:
    """Runs a session on numpy inputs; with `bind_device` ("cuda" for CUDA graphs), inputs
    and output live in buffers allocated once on that device and are bound with IO binding,
    so every call reuses the same addresses (what a captured CUDA graph replays)."""

    def __init__(self, session: ort.InferenceSession, shapes: dict[str, tuple[int, ...]], bind_device: Optional[str] = None):
        self.session = session
        self.inputs = {i.name: FLOAT_TYPES[i.type] for i in session.get_inputs()}
        out = session.get_outputs()[0]
        self.output = out.name
        self.bind_device = bind_device
        self._lock = threading.Lock()
        if bind_device:
            self.binding = session.io_binding()
            self._in = {}
            for name, dtype in self.inputs.items():
                value = ort.OrtValue.ortvalue_from_shape_and_type(shapes[name], dtype, bind_device, 0)
                self.binding.bind_ortvalue_input(name, value)
                self._in[name] = value
            self._out = ort.OrtValue.ortvalue_from_shape_and_type(shapes[self.output], FLOAT_TYPES[out.type], bind_device, 0)
            self.binding.bind_ortvalue_output(self.output, self._out)

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {k: np.ascontiguousarray(v, dtype=self.inputs[k]) for k, v in feeds.items()}
        if not self.bind_device:
            return self.session.run([self.output], feeds)[0].astype(np.float32)
        with self._lock:
            for name, value in feeds.items():
                self._in[name].update_inplace(value)
            self.session.run_with_iobinding(self.binding)
            return self._out.numpy().astype(np.float32)


# -- model contracts ------------------------------------------------------------------------
def _describe(args) -> str:
    return ", ".join(f"'{a.name}' {'x'.join(str(d) for d in a.shape)} {a.type}" for a in args)


def _static(dim) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


def _image_side(arg, channels: int) -> Optional[int]:
    """S of a 1 x channels x S x S float input/output; None if the side is not fixed;
    raises ValueError when the tensor does not have that form."""
    shape = arg.shape
    if arg.type not in FLOAT_TYPES or len(shape) != 4 or shape[1] != channels or _static(shape[0]) not in (None, 1):
        raise ValueError
    h, w = _static(shape[2]), _static(shape[3])
    if h is not None and w is not None and h != w:
        raise ValueError
    return h or w


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


class _OnnxEngine:
    """What both neural engines share: one session, alignment, inference, paste-back."""

    name = ""
    card_required = False
    card_defaults = ModelCard()

    def __init__(self, settings: Optional[InferenceSettings] = None):
        self.settings = settings or InferenceSettings(engine=self.name)
        if not self.settings.model:
            raise ConfigError(f"inference.model: the {self.name} engine needs an ONNX model file (--model)")
        self.model_path = Path(self.settings.model)
        model, source = load_model(self.model_path, self.settings.precision)
        self.session = create_session(source, self.settings, f"model {self.model_path}")
        model_side = self._check_contract(model)  # before the card: a wrong model says so first
        self.card = load_card(self.model_path, self.card_defaults, self.card_required)
        self.size = self._side(model_side)
        self.template_px = align.template(self.card.template, self.size)
        self.runner = Runner(self.session, self._shapes(), "cuda" if self.settings.cuda_graph else None)

    # subclasses: _check_contract(model) -> S or None, _shapes(), prepare_source(), feeds()
    def _fail(self, expected: str) -> EngineError:
        s = self.session
        return EngineError(f"model {self.model_path}: not an {self.name} model: expected {expected}; "
                           f"it has inputs {_describe(s.get_inputs())} and outputs {_describe(s.get_outputs())}")

    def _side(self, model_side: Optional[int]) -> int:
        side = model_side or self.card.size
        if side is None:
            raise EngineError(f"model {self.model_path}: the crop size is not fixed in the model; give it as `size` in a model card")
        if model_side and self.card.size and model_side != self.card.size:
            raise EngineError(f"model {self.model_path}: the model card says size {self.card.size}, the model {model_side}")
        return side

    # the steps, public so that `facefuse quantize` builds calibration inputs exactly as here
    def aligned_crop(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(crop float32 SxSx3 0..255, 2x3 matrix image px -> crop px) of a face."""
        m = align.crop_matrix(align.keypoints(landmarks), self.template_px)
        return align.warp_crop(image, m, self.size), m

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The model's output crop, float32 SxSx3 0..255."""
        return self.card.denormalise(self.runner(feeds)[0])

    def fuse(self, source: SourceFace, target_roi: np.ndarray, target_landmarks: np.ndarray, ratio: float) -> FusedFace:
        h, w = target_roi.shape[:2]
        crop, m = self.aligned_crop(target_roi, target_landmarks)
        out = self.run(self.feeds(source, crop))
        warped, valid = align.paste_back(out, m, (h, w))
        base = target_roi.astype(np.float32)
        image = base + (ratio * valid)[:, :, None] * (warped - base)
        region = face_region_mask(target_landmarks, (h, w), cut_mouth=True) * valid
        return FusedFace(image=image, base=base, mask=region, landmarks=target_landmarks,
                         face_size=_face_size(target_landmarks))


class OnnxSwapEngine(_OnnxEngine):
    """inswapper-style: aligned target crop + source identity latent -> swapped crop."""

    name = "onnx-swap"
    card_defaults = ModelCard(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), template="arcface")
    embedder_defaults = ModelCard(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), template="arcface")
    EXPECTED = "inputs 'target' 1x3xSxS float and 'source' 1xD float (identity latent), output 1x3xSxS float"

    def __init__(self, settings: Optional[InferenceSettings] = None):
        super().__init__(settings)
        if not self.settings.embedder:
            raise ConfigError("inference.embedder: the onnx-swap engine needs an identity-embedding ONNX model (--embedder)")
        self._load_embedder(Path(self.settings.embedder))

    def _check_contract(self, model: onnx.ModelProto) -> int:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 2 or len(outs) != 1:
            raise self._fail(self.EXPECTED)
        by_rank = {len(a.shape): a for a in ins}
        image, latent = by_rank.get(4), by_rank.get(2)
        if image is None or latent is None or latent.type not in FLOAT_TYPES or _static(latent.shape[0]) not in (None, 1):
            raise self._fail(self.EXPECTED)
        try:
            side = _image_side(image, 3)
            out_side = _image_side(outs[0], 3)
        except ValueError:
            raise self._fail(self.EXPECTED) from None
        if side and out_side and side != out_side:
            raise self._fail(self.EXPECTED + " (the same S)")
        self.image_input, self.latent_input = image.name, latent.name
        self.latent_dim = _static(latent.shape[1])
        if not self.latent_dim:
            raise self._fail(self.EXPECTED + " with D fixed in the model")
        self.emap = _square_init(model, self.latent_dim)
        return side or out_side

    def _shapes(self) -> dict:
        s = self.size
        return {self.image_input: (1, 3, s, s), self.latent_input: (1, self.latent_dim),
                self.session.get_outputs()[0].name: (1, 3, s, s)}

    def _load_embedder(self, path: Path) -> None:
        model, source = load_model(path, "fp32", "embedder")
        self.embedder_card = load_card(path, self.embedder_defaults)
        session = create_session(source, self.settings.model_copy(update={"cuda_graph": False}), f"embedder {path}")
        ins, outs = session.get_inputs(), session.get_outputs()
        expected = "one input 1x3xSxS float (an aligned face, usually 112) and one output 1xD float"
        try:
            if len(ins) != 1 or len(outs) != 1:
                raise ValueError
            side = _image_side(ins[0], 3) or self.embedder_card.size
            out = outs[0]
            if out.type not in FLOAT_TYPES or len(out.shape) != 2 or _static(out.shape[0]) not in (None, 1) or not side:
                raise ValueError
        except ValueError:
            raise EngineError(f"embedder {path}: not an identity-embedding model: expected {expected}; it has inputs "
                              f"{_describe(ins)} and outputs {_describe(outs)}") from None
        dim = _static(out.shape[1])
        if dim is not None and dim != self.latent_dim:
            raise EngineError(f"embedder {path}: gives {dim}-d embeddings, the swap model expects {self.latent_dim}")
        self.embedder = Runner(session, {})
        self.embedder_input = ins[0].name
        self.embedder_size = side
        self.embedder_template = align.template(self.embedder_card.template, side)

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The L2-normalised identity embedding (1 x D) of a face."""
        m = align.crop_matrix(face.keypoints, self.embedder_template)
        crop = align.warp_crop(image, m, self.embedder_size)
        emb = self.embedder({self.embedder_input: self.embedder_card.normalise(crop)[None]}).reshape(1, -1)
        if emb.shape[1] != self.latent_dim:
            raise EngineError(f"embedder: gives {emb.shape[1]}-d embeddings, the swap model expects {self.latent_dim}")
        return emb / max(float(np.linalg.norm(emb)), 1e-12)

    def prepare_source(self, image: np.ndarray, face: Face) -> SourceFace:
        """Embed the source once: the latent is all the swap model needs of it."""
        latent = self.embed(image, face)
        if self.emap is not None:
            latent = latent @ self.emap
            latent /= max(float(np.linalg.norm(latent)), 1e-12)
        return SourceFace(image=image, face=face, prepared={"latent": latent.astype(np.float32)})

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
            side, out_side = _image_side(ins[0], 6), _image_side(outs[0], 3)
        except ValueError:
            raise self._fail(self.EXPECTED) from None
        if side and out_side and side != out_side:
            raise self._fail(self.EXPECTED + " (the same S)")
        self.input = ins[0].name
        return side or out_side

    def _shapes(self) -> dict:
        s = self.size
        return {self.input: (1, 6, s, s), self.session.get_outputs()[0].name: (1, 3, s, s)}

    def prepare_source(self, image: np.ndarray, face: Face) -> SourceFace:
        """Align and normalise the source crop once; every target reuses it."""
        crop, _ = self.aligned_crop(image, face.landmarks)
        return SourceFace(image=image, face=face, prepared={"crop": self.card.normalise(crop)})

    def feeds(self, source: SourceFace, crop: np.ndarray) -> dict[str, np.ndarray]:
        both = np.concatenate([source.prepared["crop"], self.card.normalise(crop)], axis=0)
        return {self.input: both[None]}


register("onnx-swap", OnnxSwapEngine)
register("onnx-unet", OnnxUnetEngine)
