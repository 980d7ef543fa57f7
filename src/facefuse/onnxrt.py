"""ONNX Runtime, shared by the neural engines and the face enhancers: model cards, presets,
providers, precision, sessions and a runner.

A model card is `<model>.yaml`, `<model>.yml` or `<model>.json` next to `<model>.onnx`; it
says how the model wants its crops (side, template, normalisation, channel order) and, for
swap models, how the source identity is given. A preset (`inference.model_preset`) is a card
shipped in the package (facefuse/presets/NAME.yaml) for a known public model: it gives the
defaults, a card beside the model overrides them key by key. Keys:

    size: 256                     # crop side S (optional when fixed in the model)
    mean: [0.5, 0.5, 0.5]         # model input = (pixel / 255 - mean) / std, in RGB order
    std: [0.5, 0.5, 0.5]          #   (a single number applies to all channels)
    output_mean / output_std      # how the output is inverted, when not like the input
    template: ffhq                # a name of align.TEMPLATES or five [x, y] shares of the side
    channels: rgb                 # or bgr: the model's channel order (input and output)
    latent: emap                  # swap models: emap | converter | embedding | image
    normalise_latent: true        # swap models: L2-normalise the latent the model gets
    source_template: arcface_112  # swap models with an image source: its alignment
    engine: onnx-swap             # presets only: which engine (or `enhancer`) it is for

Precision: fp32 runs the file as it is; fp16 converts it when loading (onnxconverter-common,
inputs and outputs stay float32); int8 expects a model quantized by `facefuse quantize`.
Providers: CPU by default; CUDA / TensorRT when listed in `inference.providers` and present
in the installed onnxruntime, with `gpu_memory_limit_gb` and `cuda_graph` (IO binding on
fixed shapes). Every session is created once, when the engine is built, and reused.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort

from . import align
from .config import InferenceSettings
from .errors import ConfigError, EngineError

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# what a runner may feed: images are float, a CodeFormer-style `weight` is often double
INPUT_TYPES = {**FLOAT_TYPES, "tensor(double)": np.float64}
LATENTS = ("emap", "converter", "embedding", "image")
CHANNELS = ("rgb", "bgr")
TRT_CACHE = Path.home() / ".cache" / "facefuse" / "tensorrt"


# -- model cards ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelCard:
    """How a model wants its crops: side, normalisation (0..1 scale, RGB), template, channel
    order, and (swap models) how the source identity is given."""

    size: Optional[int] = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output_mean: Optional[tuple[float, float, float]] = None
    output_std: Optional[tuple[float, float, float]] = None
    template: align.TemplateSpec = "arcface"
    channels: str = "rgb"
    latent: str = "emap"
    normalise_latent: bool = True
    source_template: align.TemplateSpec = "arcface"
    engine: Optional[str] = None

    def normalise(self, crop: np.ndarray) -> np.ndarray:
        """HxWx3 float RGB 0..255 -> 3xHxW model input (in the model's channel order)."""
        x = (crop * np.float32(1 / 255.0) - np.float32(self.mean)) / np.float32(self.std)
        if self.channels == "bgr":
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

    def denormalise(self, y: np.ndarray) -> np.ndarray:
        """3xHxW model output -> HxWx3 float32 RGB 0..255."""
        img = y.astype(np.float32).transpose(1, 2, 0)
        if self.channels == "bgr":
            img = img[:, :, ::-1]
        std = self.std if self.output_std is None else self.output_std
        mean = self.mean if self.output_mean is None else self.output_mean
        return np.clip((img * np.float32(std) + np.float32(mean)) * 255.0, 0.0, 255.0)


CARD_KEYS = {f.name for f in fields(ModelCard)}
PRESET_DIR = "presets"


def card_path(model: Path) -> Optional[Path]:
    for ext in (".yaml", ".yml", ".json"):
        p = model.with_suffix(ext)
        if p.is_file():
            return p
    return None


def _read_mapping(text: str, suffix: str, where: str) -> dict:
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # YAML/JSON parse errors
        raise EngineError(f"{where}: model card is not valid {suffix[1:].upper()} ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise EngineError(f"{where}: model card must be a mapping of {', '.join(sorted(CARD_KEYS))}")
    return data


def _triple(value) -> tuple[float, float, float]:
    return tuple(float(x) for x in np.broadcast_to(np.asarray(value, np.float64), (3,)))


def _template_value(value) -> align.TemplateSpec:
    align.template(value, 112)  # validates it
    return value if isinstance(value, str) else tuple(map(tuple, value))


def card_values(data: dict, where: str) -> dict:
    """Validated ModelCard fields from a card's mapping; errors name the card and the key."""
    unknown = set(data) - CARD_KEYS
    if unknown:
        raise EngineError(f"{where}: unknown model card key(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(sorted(CARD_KEYS))}")
    values: dict = {}
    try:
        for key, value in data.items():
            if key == "size":
                values[key] = int(value)
                if not 16 <= values[key] <= 2048:
                    raise ValueError("size must be 16-2048")
            elif key in ("mean", "std", "output_mean", "output_std"):
                values[key] = _triple(value)
                if key.endswith("std") and 0 in values[key]:
                    raise ValueError(f"{key} must not be 0")
            elif key in ("template", "source_template"):
                values[key] = _template_value(value)
            elif key == "channels":
                if value not in CHANNELS:
                    raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, got {value!r}")
                values[key] = value
            elif key == "latent":
                if value not in LATENTS:
                    raise ValueError(f"latent must be one of {', '.join(LATENTS)}, got {value!r}")
                values[key] = value
            elif key == "normalise_latent":
                if not isinstance(value, bool):
                    raise ValueError("normalise_latent must be true or false")
                values[key] = value
            else:  # engine
                values[key] = str(value)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{where}: {exc}") from exc
    return values


def presets() -> list[str]:
    """The names of the model presets shipped in the package."""
    folder = resources.files("facefuse") / PRESET_DIR
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_card(name: str, engine: str, defaults: ModelCard) -> ModelCard:
    """The shipped card `name` over `defaults`; it must be one made for `engine`."""
    if name not in presets():
        raise ConfigError(f"inference.model_preset: unknown preset '{name}'; choose one of {', '.join(presets())}")
    text = (resources.files("facefuse") / PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    card = ModelCard(**{**defaults.__dict__, **card_values(_read_mapping(text, ".yaml", f"preset {name}"), f"preset {name}")})
    if card.engine != engine:
        raise ConfigError(f"inference.model_preset: '{name}' is a preset for {card.engine}, not for {engine}")
    return card


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
    except OSError as exc:
        raise EngineError(f"{path}: model card is not readable ({exc})") from exc
    data = _read_mapping(text, path.suffix, str(path))
    values = card_values(data, str(path))
    if required:
        missing = {"mean", "std", "template"} - set(data)
        if missing:
            raise EngineError(f"{path}: model card lacks {', '.join(sorted(missing))}")
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
        self.inputs = {i.name: INPUT_TYPES[i.type] for i in session.get_inputs()}
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


# -- describing and checking a model's inputs / outputs ---------------------------------------
def describe(args) -> str:
    return ", ".join(f"'{a.name}' {'x'.join(str(d) for d in a.shape)} {a.type}" for a in args)


def static(dim) -> Optional[int]:
    return dim if isinstance(dim, int) and dim > 0 else None


def image_side(arg, channels: int) -> Optional[int]:
    """S of a 1 x channels x S x S float input/output; None if the side is not fixed;
    raises ValueError when the tensor does not have that form."""
    shape = arg.shape
    if arg.type not in FLOAT_TYPES or len(shape) != 4 or shape[1] != channels or static(shape[0]) not in (None, 1):
        raise ValueError
    h, w = static(shape[2]), static(shape[3])
    if h is not None and w is not None and h != w:
        raise ValueError
    return h or w
