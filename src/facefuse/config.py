"""Settings: one typed object, loaded from config.yaml, overridden by flags / UI / API fields.

The same names are used everywhere: a config key `fusion.ratio` is the CLI flag `--ratio`,
the Python keyword `ratio=` and the REST form field `ratio`. `FusionParams` is the per-call
subset; `Settings` holds everything, including the defaults of `FusionParams`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
        raise ValueError(f"must be 'original' or an integer {MIN_RESOLUTION}-{MAX_RESOLUTION}, got {value!r}")
    if not MIN_RESOLUTION <= side <= MAX_RESOLUTION:
        raise ValueError(f"must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}, got {side}")
    return side


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FaceDetectionSettings(_Section):
    max_side: int = Field(1280, ge=256, le=4096, description="long side of the copy detection runs on")
    padding_ratio: float = Field(0.2, ge=0.0, le=1.0, description="ROI padding around the face box")
    threshold: float = Field(0.6, ge=0.0, le=1.0, description="face detection confidence")
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


class FusionSettings(_Section):
    ratio: float = Field(0.8, ge=0.0, le=1.0)
    mode: FusionMode = "normal"
    smoothing: float = Field(0.4, ge=0.0, le=1.0)
    brightness: float = Field(0.0, ge=-1.0, le=1.0)
    contrast: float = Field(0.0, ge=-1.0, le=1.0)
    saturation: float = Field(0.0, ge=-1.0, le=1.0)
    enhancer_blend: float = Field(0.8, ge=0.0, le=1.0, description="share of the face enhancer's output (0 = off)")


class OutputSettings(_Section):
    default_resolution: Union[int, str] = "original"
    dir: str = "outputs"
    quality: int = Field(95, ge=1, le=100)
    max_pixels: int = Field(100_000_000, ge=1_000_000, le=1_000_000_000, description="input pixel limit")

    _res = field_validator("default_resolution", mode="before")(classmethod(lambda cls, v: _parse_resolution(v)))


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
    pixel_boost: Optional[Literal[256, 512]] = Field(None, description="align at this side and run the swap model on its sub-images")
    enhancer: Optional[str] = Field(None, description="face-enhancer ONNX model run on every fused face")
    enhancer_preset: Optional[str] = Field(None, description="a shipped model card for --enhancer")
    enhancer_weight: float = Field(0.5, ge=0.0, le=1.0, description="default `weight` input of CodeFormer-style enhancers")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    max_upload_mb: float = Field(25, gt=0, le=1024)
    api_key: Optional[str] = None
    workers: int = Field(0, ge=0, le=64, description="fusion workers, 0 = the usable cores, at most 8")
    queue_size: int = Field(32, ge=1, le=10_000)


class Settings(_Section):
    face_detection: FaceDetectionSettings = Field(default_factory=FaceDetectionSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    def fusion_params(self, **overrides: Any) -> "FusionParams":
        """The per-call parameters: these settings' defaults with the given overrides."""
        base = dict(
            ratio=self.fusion.ratio,
            mode=self.fusion.mode,
            smoothing=self.fusion.smoothing,
            brightness=self.fusion.brightness,
            contrast=self.fusion.contrast,
            saturation=self.fusion.saturation,
            enhancer_blend=self.fusion.enhancer_blend,
            enhancer_weight=self.inference.enhancer_weight,
            resolution=self.output.default_resolution,
            threshold=self.face_detection.threshold,
            padding=self.face_detection.padding_ratio,
        )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return FusionParams.build(**base)


class FusionParams(BaseModel):
    """What one fusion call may change; the names are the CLI flags without dashes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float = Field(0.8, ge=0.0, le=1.0)
    mode: FusionMode = "normal"
    smoothing: float = Field(0.4, ge=0.0, le=1.0)
    brightness: float = Field(0.0, ge=-1.0, le=1.0)
    contrast: float = Field(0.0, ge=-1.0, le=1.0)
    saturation: float = Field(0.0, ge=-1.0, le=1.0)
    resolution: Union[int, str] = "original"
    face_index: int = Field(0, ge=0)
    all_faces: bool = False
    source_face_index: int = Field(0, ge=0)
    threshold: float = Field(0.6, ge=0.0, le=1.0)
    padding: float = Field(0.2, ge=0.0, le=1.0)
    enhancer_blend: float = Field(0.8, ge=0.0, le=1.0)
    enhancer_weight: float = Field(0.5, ge=0.0, le=1.0)

    _res = field_validator("resolution", mode="before")(classmethod(lambda cls, v: _parse_resolution(v)))

    @classmethod
    def build(cls, **values: Any) -> "FusionParams":
        """Validate, turning pydantic's report into one ConfigError naming the field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_first_error(exc)) from exc


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{prefix}{key}: {msg}"


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
