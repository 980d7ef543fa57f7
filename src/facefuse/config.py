"""Settings: one typed object, loaded from config.yaml, overridden by flags / UI / API fields.

The same names are used everywhere: a config key `fusion.ratio` is the CLI flag `--ratio`,
the Python keyword `ratio=` and the REST form field `ratio`. `FusionParams` is the per-call
subset and the one list of fusion parameters; `Settings` holds everything, including
their defaults.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .errors import ConfigError

FusionMode = Literal["normal", "blend", "overlay"]
RESOLUTION_CHOICES = ("original", "512", "1024", "2048", "4096")
MIN_RESOLUTION, MAX_RESOLUTION = 64, 8192


MAX_DEFAULT_WORKERS = 8  # each worker holds its own face models (~200 MB)


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Workers when the settings say 0: the usable cores, at most MAX_DEFAULT_WORKERS."""
    return max(1, min(usable_cores(), MAX_DEFAULT_WORKERS))


def _parse_resolution(value: Any) -> Union[str, int]:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("original", "")):
        return "original"
    try:
        side = int(str(value).strip())
    except ValueError:
        raise ValueError(f"must be 'original' or a whole number {MIN_RESOLUTION}-{MAX_RESOLUTION}, got {value!r}") from None
    if not MIN_RESOLUTION <= side <= MAX_RESOLUTION:
        raise ValueError(f"must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}, got {side}")
    return side


Resolution = Annotated[Union[int, str], BeforeValidator(_parse_resolution)]


def _parse_faces(value: Any) -> Union[int, tuple[int, ...]]:
    """A face number (3, "3") or several ("0,2", [0, 2]): an int for one, a tuple for more."""
    if isinstance(value, bool):
        raise ValueError(f"must be a face number or numbers like 0,2, got {value!r}")
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = [p for p in value.replace(" ", "").split(",") if p]
    else:
        items = [value]
    try:
        numbers = [int(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"must be a face number or numbers like 0,2, got {value!r}") from None
    if not numbers or min(numbers) < 0:
        raise ValueError(f"must be a face number (0 or more) or numbers like 0,2, got {value!r}")
    numbers = list(dict.fromkeys(numbers))  # each face once, in the order given
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


FaceIndex = Annotated[Union[int, tuple[int, ...]], BeforeValidator(_parse_faces)]


def _param(default: Any, title: str, help: str, config: str | None = None, **bounds: Any) -> Any:
    """A fusion parameter: its default, label, help text, config key and range, in one place."""
    return Field(default, title=title, description=help,
                 json_schema_extra={"config": config} if config else None, **bounds)


class FusionParams(BaseModel):
    """What one fusion call may change: the one list of fusion parameters.

    The CLI flags (`--face-index`), the REST form fields, the WebUI controls and the config
    keys are all derived from these fields: name, type, range, default, title and help. A
    field with a `config` key takes its default from that key of config.yaml; a field whose
    key is in the `fusion` section gets that section's entry made for it (see
    `FusionSettings`). Adding a parameter is adding a field here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float = _param(0.8, "Fusion ratio", "0-1: how far the face moves from the target toward the source "
                          "(shape and texture)", "fusion.ratio", ge=0.0, le=1.0)
    mode: FusionMode = _param("normal", "Mode", "normal (feathered alpha), blend (gradient-domain, Poisson-style), "
                              "overlay (multi-band, Laplacian pyramid)", "fusion.mode")
    smoothing: float = _param(0.4, "Skin smoothing", "skin smoothing 0-1 (edge-preserving, skin only)",
                              "fusion.smoothing", ge=0.0, le=1.0)
    brightness: float = _param(0.0, "Brightness", "-1..1 brightness of the fused face", "fusion.brightness",
                               ge=-1.0, le=1.0)
    contrast: float = _param(0.0, "Contrast", "-1..1 contrast of the fused face", "fusion.contrast", ge=-1.0, le=1.0)
    saturation: float = _param(0.0, "Saturation", "-1..1 saturation of the fused face", "fusion.saturation",
                               ge=-1.0, le=1.0)
    resolution: Resolution = _param("original", "Output resolution (long side)",
                                    "'original' or the output's long side (512, 1024, 2048, 4096; any 64-8192)",
                                    "output.default_resolution")
    face_index: FaceIndex = _param(0, "Target face", "which target face, 0 = largest (see `facefuse detect`); "
                                   "several as 0,2")
    all_faces: bool = _param(False, "All faces", "fuse every face of the target")
    source_face_index: int = _param(0, "Source face", "which face of the source, 0 = largest", ge=0)
    threshold: float = _param(0.6, "Detection threshold", "face detection confidence 0-1; lower finds more "
                              "(and less certain) faces", "face_detection.threshold", ge=0.0, le=1.0)
    padding: float = _param(0.2, "ROI padding", "ROI margin around the face box, share of the face size",
                            "face_detection.padding_ratio", ge=0.0, le=1.0)
    enhancer_blend: float = _param(0.8, "Enhancer blend", "share of the face enhancer's output, 0-1 (0 = off; "
                                   "only with an enhancer model)", "fusion.enhancer_blend", ge=0.0, le=1.0)
    enhancer_weight: float = _param(0.5, "Enhancer weight", "the `weight` input of CodeFormer-style enhancers, 0-1",
                                    "fusion.enhancer_weight", ge=0.0, le=1.0)

    @property
    def face_indices(self) -> tuple[int, ...]:
        """The target faces asked for by face_index (all_faces aside), in order."""
        return self.face_index if isinstance(self.face_index, tuple) else (self.face_index,)

    @model_validator(mode="after")
    def _one_face_choice(self) -> "FusionParams":
        if self.all_faces and self.face_indices != (0,):
            raise ValueError(f"face_index {self.face_index} and all_faces ask for different faces; give one of them")
        return self

    @classmethod
    def build(cls, **values: Any) -> "FusionParams":
        """Validate, turning pydantic's report into one ConfigError naming the field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_first_error(exc)) from exc

    @classmethod
    def config_keys(cls) -> dict[str, str]:
        """Field name -> its config key ("section.key"), for the fields that have one."""
        return {name: info.json_schema_extra["config"] for name, info in cls.model_fields.items()
                if info.json_schema_extra and "config" in info.json_schema_extra}


def param_field(name: str) -> Any:
    """A copy of FusionParams' field `name`, for the config section that holds its default."""
    return copy.copy(FusionParams.model_fields[name])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FaceDetectionSettings(_Section):
    max_side: int = Field(1280, ge=256, le=4096, description="long side of the copy detection runs on")
    padding_ratio: float = param_field("padding")
    threshold: float = param_field("threshold")
    tiles: bool = Field(True, description="also detect on overlapping tiles to find small faces")
    min_face_px: int = Field(
        40, ge=0, le=1000,
        description="smallest face (photo px) searched for in large photos, on full-resolution tiles; "
                    "0 = off, else at least 16 (the tile count grows with 1 / min_face_px^2)",
    )

    @field_validator("min_face_px")
    @classmethod
    def _min_face_floor(cls, v: int) -> int:
        if 0 < v < 16:
            raise ValueError("must be 0 (off) or at least 16: smaller faces need thousands of tiles per photo")
        return v


# the `fusion` section: one entry per FusionParams field whose config key is fusion.<name>
FusionSettings = create_model(
    "FusionSettings", __base__=_Section,
    **{key.split(".", 1)[1]: (FusionParams.model_fields[name].annotation, param_field(name))
       for name, key in FusionParams.config_keys().items() if key.startswith("fusion.")},
)


class OutputSettings(_Section):
    default_resolution: Resolution = param_field("resolution")
    dir: str = Field("outputs", description="where the servers keep results and video jobs")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality 1-100")
    max_pixels: int = Field(100_000_000, ge=1_000_000, le=1_000_000_000, description="input pixel limit")
    keep_days: float = Field(0, ge=0, description="results the WebUI saved in dir are removed after this many days "
                                                  "(0 = kept for ever)")

    @field_validator("dir")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a folder (\"\" would put results in the working folder)")
        return v


class InferenceSettings(_Section):
    engine: str = "classical"
    model: Optional[str] = None
    embedder: Optional[str] = None
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    gpu_memory_limit_gb: Optional[float] = Field(None, gt=0)
    cuda_graph: bool = False
    threads: int = Field(0, ge=0, le=256, description="OpenCV/ONNX threads, 0 = library default")
    model_preset: Optional[str] = Field(None, description="a shipped model card for --model (facefuse/presets)")
    converter: Optional[str] = Field(None, description="embedding converter ONNX model, for presets that need one")
    pixel_boost: Optional[Literal[256, 512]] = Field(
        None, description="align at this side and run the swap model on its sub-images")
    enhancer: Optional[str] = Field(None, description="face-enhancer ONNX model run on every fused face")
    enhancer_preset: Optional[str] = Field(None, description="a shipped model card for --enhancer")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    max_upload_mb: float = Field(25, gt=0, le=1024)
    api_key: Optional[str] = None
    workers: int = Field(0, ge=0, le=64, description="fusion workers, 0 = the usable cores, at most 8")
    queue_size: int = Field(32, ge=1, le=10_000)
    max_video_mb: float = Field(500, gt=0, le=100_000, description="video uploads (REST /video) over this are refused")
    max_video_seconds: float = Field(600, gt=0, description="clips longer than this are refused")
    max_video_jobs: int = Field(4, ge=1, le=1000, description="video jobs queued or running at once")
    job_keep_hours: float = Field(24, gt=0, description="finished video jobs and their results are removed after this")
    ui_cache_minutes: float = Field(60, gt=0, description="the WebUI's uploads and result copies (Gradio's cache) "
                                                          "are removed after this many minutes, all at shutdown")
    live_sessions: int = Field(0, ge=0, le=64, description="live webcam sessions at once, 0 = one per 2 usable cores "
                                                          "(at least 1); more are refused as busy")
    live_idle_seconds: float = Field(60, gt=0, description="a live session that sends nothing for this long is closed")
    live_processes: Optional[int] = Field(None, ge=0, le=64, description="worker processes that fuse live frames, "
                                          "shared by the sessions; 0 = threads of the server's process; unset = the "
                                          "usable cores (at most 8) with the classical engine on 2 or more cores, else 0")


class Settings(_Section):
    face_detection: FaceDetectionSettings = Field(default_factory=FaceDetectionSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    def fusion_params(self, **overrides: Any) -> FusionParams:
        """The per-call parameters: these settings' defaults with the given overrides."""
        base = {}
        for name, key in FusionParams.config_keys().items():
            section, field = key.split(".", 1)
            base[name] = getattr(getattr(self, section), field)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return FusionParams.build(**base)

    def output_quality(self, override: int | None = None) -> int:
        """`override` (a --quality flag or a form field) checked against output.quality's range."""
        return self._checked("output", "quality", override, "quality")

    def detection_threshold(self, override: float | None = None) -> float:
        return self._checked("face_detection", "threshold", override, "threshold")

    def _checked(self, section: str, key: str, override: Any, name: str) -> Any:
        if override is None:
            return getattr(getattr(self, section), key)
        try:
            getattr(self, section).model_validate({**getattr(self, section).model_dump(), key: override})
        except ValidationError as exc:
            raise ConfigError(f"{name}: {readable_error(exc.errors()[0])}") from exc
        return override


def readable_error(err: dict) -> str:
    """pydantic's message for one error, as a person would write it, with the value given."""
    kind, ctx, given = err["type"], err.get("ctx", {}), err.get("input")
    shown = f", got {given!r}" if given is not None and not isinstance(given, (dict, list)) else ""
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}{shown}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}{shown}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}{shown}".replace("'", "")
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{shown}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{shown}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{shown}"
    if kind == "missing":
        return "missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][:1].lower() + err["msg"][1:]


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    return f"{prefix}{key}: {readable_error(err)}" if key else f"{prefix}{readable_error(err)}"


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> Settings:
    """Load settings from a YAML file (or ./config.yaml if present, or defaults).

    `overrides` is a nested dict applied on top (e.g. {"server": {"port": 8000}}).
    Any unknown key or bad value raises ConfigError naming the key.
    """
    import yaml

    data: dict = {}
    source = "defaults"
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
        source = str(p)
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, prefix=f"{source}: ")) from exc


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value is not None:
            out[key] = value
    return out
