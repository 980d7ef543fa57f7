"""What every command shares: exit codes, the fusion options, settings loading.

The command modules (cli's own fuse / detect / start, batch, bench, server, quantize) build
their parsers from these; cli.py imports each of them by name and dispatches. The fusion
flags are derived from `FusionParams`' fields (name, type, range, default, help), so a new
fusion parameter is a new flag without an edit here.
"""

from __future__ import annotations

import argparse
import typing
from importlib import resources
from pathlib import Path

from .config import FusionParams, Settings, load_config
from .errors import ConfigError

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_NOFACE, EXIT_ENGINE = 0, 2, 3, 4, 5
# the bundled sample photos: package data, so an installed wheel has them too (a wheel
# installs as plain files, so the resource folder is a real path that commands can pass on)
SAMPLES = Path(str(resources.files("facefuse") / "samples"))
# flags of the `inference` section (the models a Fuser loads once)
ENGINE_FLAGS = ("engine", "model", "model_preset", "embedder", "converter", "precision", "pixel_boost",
                "enhancer", "enhancer_preset")


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_fusion_options(p: argparse.ArgumentParser) -> None:
    """The fusion flags (one per FusionParams field) and the engine flags, shared by every
    command that fuses. Defaults stay None, so config.yaml fills what a flag does not say."""
    g = p.add_argument_group("fusion")
    for name, info in FusionParams.model_fields.items():
        help_text = f"{info.description} (default {_shown(info.default)})"
        kind = info.annotation
        if kind is bool:
            g.add_argument(flag(name), action="store_true", default=None, help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            g.add_argument(flag(name), choices=list(typing.get_args(kind)), help=help_text)
        else:
            g.add_argument(flag(name), type={float: number, int: whole_number}.get(kind, str), help=help_text)
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present); flags override it")
    add_engine_options(p)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    from .engines import available

    g = p.add_argument_group("models (optional ONNX files you supply; nothing is downloaded)")
    g.add_argument("--engine", help=f"fusion engine: {', '.join(available())} (default classical)")
    g.add_argument("--model", help="ONNX model file for the onnx engines")
    g.add_argument("--model-preset", help=f"a shipped model card for --model: {', '.join(_preset_names(enhancer=False))}")
    g.add_argument("--embedder", help="ONNX identity-embedding model (onnx-swap, onnx-damo)")
    g.add_argument("--converter", help="ONNX embedding converter, for presets that need one")
    g.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="ONNX model precision (default fp32)")
    g.add_argument("--pixel-boost", type=int, choices=[256, 512], help="run a small swap model on sub-images of "
                   "a crop this large (onnx-swap)")
    g.add_argument("--enhancer", help="face-enhancer ONNX model (GFPGAN / GPEN / CodeFormer style) run on every "
                   "fused face")
    g.add_argument("--enhancer-preset", help=f"a shipped model card for --enhancer: "
                   f"{', '.join(_preset_names(enhancer=True))}")


def _preset_names(enhancer: bool) -> list[str]:
    """The model cards shipped in facefuse/presets, for engines or for enhancers (read as text:
    the parser must not import ONNX Runtime)."""
    names = []
    for card in sorted((Path(__file__).parent / "presets").glob("*.yaml")):
        is_enhancer = "engine: enhancer" in card.read_text(encoding="utf-8")
        if is_enhancer == enhancer:
            names.append(card.stem)
    return names


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def fusion_overrides(args: argparse.Namespace) -> dict:
    """The fusion flags given on the command line, by FusionParams name."""
    if getattr(args, "all_faces", None) and getattr(args, "face_index", None) is not None:
        raise ConfigError("--face-index and --all-faces: give one, not both")
    return {k: getattr(args, k) for k in FusionParams.model_fields if getattr(args, k, None) is not None}


def load_settings(args: argparse.Namespace) -> Settings:
    """config.yaml (or --config) with the engine flags given on the command line applied."""
    overrides: dict = {}
    for key in ENGINE_FLAGS:
        if getattr(args, key, None):
            overrides.setdefault("inference", {})[key] = getattr(args, key)
    return load_config(getattr(args, "config", None), overrides)


def parse_face_map(text: str) -> dict[int, str]:
    """'0=alice.jpg,2=bob.jpg' -> {0: 'alice.jpg', 2: 'bob.jpg'}: target face (or track)
    index -> source photo. ConfigError (exit 2) for anything else."""
    mapping: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        index, sep, path = item.partition("=")
        if not sep or not index.strip().isdigit() or not path.strip():
            raise ConfigError(f"--map: expected INDEX=PHOTO[,INDEX=PHOTO...], got {item!r}")
        if int(index) in mapping:
            raise ConfigError(f"--map: face {int(index)} is mapped twice")
        mapping[int(index)] = path.strip()
    if not mapping:
        raise ConfigError("--map: no face mapped")
    return mapping
