"""Safe image decoding and atomic encoding: the only place facefuse touches image files.

Conventions (as in scikit-image): images are NumPy arrays, RGB (or RGBA where asked),
uint8, H x W x C. Inputs are only ever read; outputs are written to a temporary file in
the destination folder and renamed into place, so a reader never sees a partial file.
"""

from __future__ import annotations

import errno
import io as _io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, InputError, OutputExistsError

# We check the pixel count ourselves, from the header, before decoding.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class ImageFormat:
    """An output format: PIL's name for it, its media type, its usual file extension."""

    pil: str
    media_type: str
    ext: str


# the one table of output formats: format names (--format, the REST `format` field, file
# extensions without the dot) -> format
FORMATS = {
    "jpg": ImageFormat("JPEG", "image/jpeg", "jpg"),
    "jpeg": ImageFormat("JPEG", "image/jpeg", "jpg"),
    "png": ImageFormat("PNG", "image/png", "png"),
    "webp": ImageFormat("WEBP", "image/webp", "webp"),
}
FORMAT_NAMES = ("jpg", "png", "webp")  # what users choose from (jpeg is jpg)
WRITABLE_SUFFIXES = {f".{name}": fmt.pil for name, fmt in FORMATS.items()}

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


@dataclass
class DecodedImage:
    """Pixels plus what a writer may want to keep (alpha, colour profile, EXIF)."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    name: str = "image"
    meta: dict = field(default_factory=dict)

    def flattened(self, background: float = 255.0) -> np.ndarray:
        """RGB with any alpha composited onto `background` (white: what a target is fused
        on; a source takes NEUTRAL, see there)."""
        return self.rgb if self.alpha is None else flatten_alpha(self.rgb, self.alpha, background)


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return "array"
    return "uploaded image"


def read_bytes(source: ImageSource, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{name}: file not found", "not_found")
    if not path.is_file():
        raise InputError(f"{name}: not a file", "not_found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})", "unreadable") from exc


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InputError(f"{name}: arrays must be uint8, got {array.dtype}")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 4:
        return flatten_alpha(array[:, :, :3], array[:, :, 3])
    raise InputError(f"{name}: expected an H x W x 3 RGB array, got shape {array.shape}")


NEUTRAL = 128.0  # grey a source's transparency is flattened onto: white over a face read as skin to the detector and the paste


def flatten_alpha(rgb: np.ndarray, alpha: np.ndarray, background: float = 255.0) -> np.ndarray:
    """Composite onto `background` (white by default: transparent areas of portraits are
    usually meant as paper)."""
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    out = rgb.astype(np.float32) * a + background * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _to_uint8_rgba(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any PIL mode -> (RGB uint8, alpha uint8 or None)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (
        img.mode == "P" and "transparency" in img.info
    )
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bit by the real range of the type, not by clipping.
        arr = np.asarray(img, dtype=np.uint32)
        grey = (arr >> 8).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        grey = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB")), None


def decode_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None, reduce_to: int | None = None
) -> DecodedImage:
    """Decode a path, bytes or array to RGB uint8 with EXIF orientation applied.

    The pixel count is checked from the header before any pixel is decoded, so a tiny
    file that claims 100000 x 100000 pixels is refused without allocating memory.
    `reduce_to` (a long side in pixels) lets a JPEG decode at 1/2, 1/4 or 1/8 scale when
    that still leaves at least this many pixels: a 12-MP photo fused at 1024 px decodes
    three times faster. Raises InputError for anything that is not a complete, readable image.
    """
    name = name or _describe(source)
    if isinstance(source, np.ndarray):
        rgb = _array_to_rgb(source, name)
        _check_pixels(rgb.shape[1], rgb.shape[0], max_pixels, name)
        return DecodedImage(rgb=rgb, name=name)
    data = read_bytes(source, name)
    if not data:
        raise InputError(f"{name}: file is empty", "empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(_io.BytesIO(data))
            _check_pixels(img.width, img.height, max_pixels, name)
            icc = img.info.get("icc_profile")
            exif = img.info.get("exif")
            if reduce_to and img.format == "JPEG" and max(img.size) >= 2 * reduce_to:
                scale = reduce_to / max(img.size)
                img.draft(img.mode, (int(np.ceil(img.width * scale)), int(np.ceil(img.height * scale))))
            img.load()  # raises on truncated data
            if img.getexif().get(0x0112, 1) != 1:
                img = ImageOps.exif_transpose(img)
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(f"{name}: not an image (or a format facefuse cannot read)", "not_an_image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: damaged or truncated image ({_decoder_reason(exc)})", "damaged_image") from exc
    except Image.DecompressionBombError as exc:  # pragma: no cover - we disabled it
        raise InputError(f"{name}: image too large", "too_many_pixels") from exc
    if img.mode == "CMYK" and icc is not None:
        icc = None  # a CMYK profile no longer describes the RGB pixels
    rgb, alpha = _to_uint8_rgba(img)
    if exif is not None:
        exif = _exif_without_orientation(img)
    return DecodedImage(rgb=np.ascontiguousarray(rgb), alpha=alpha, icc_profile=icc, exif=exif, name=name)


def _exif_without_orientation(img: Image.Image) -> bytes | None:
    """The pixels are already upright: keep the EXIF but reset its orientation tag."""
    try:
        exif = img.getexif()
        exif[0x0112] = 1
        return exif.tobytes()
    except Exception:  # malformed EXIF is dropped rather than failing the image
        return None


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: image has no pixels", "damaged_image")
    if width * height > max_pixels:
        raise InputError(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} MP is over the limit of "
            f"{max_pixels / 1e6:.0f} MP",
            "too_many_pixels",
        )


def read_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None, reduce_to: int | None = None
) -> np.ndarray:
    """Read a path, bytes or array as an RGB uint8 H x W x 3 array (alpha flattened on white).

    `name` is how error messages call the image (default: its path); see decode_image
    for `reduce_to`."""
    decoded = decode_image(source, max_pixels=max_pixels, name=name, reduce_to=reduce_to)
    if decoded.alpha is not None:
        return flatten_alpha(decoded.rgb, decoded.alpha)
    return decoded.rgb


def image_format(name: str) -> ImageFormat:
    """The format called `name` (jpg, jpeg, png, webp; case and a leading dot ignored)."""
    key = str(name).strip().lower().lstrip(".")
    if key not in FORMATS:
        raise ConfigError(f"format: must be {', '.join(FORMAT_NAMES[:-1])} or {FORMAT_NAMES[-1]}, got {name!r}")
    return FORMATS[key]


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        allowed = " ".join(sorted(WRITABLE_SUFFIXES))
        raise InputError(f"{path}: unsupported output format '{suffix or '(none)'}'; use one of {allowed}", "bad_output")
    return WRITABLE_SUFFIXES[suffix]


def encode_image(
    image: np.ndarray,
    fmt: str = "JPEG",
    quality: int = 95,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
) -> bytes:
    """Encode RGB uint8 (with optional alpha for PNG/WebP) to bytes of the given format."""
    fmt = fmt.upper().replace("JPG", "JPEG")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("encode_image expects an RGB uint8 H x W x 3 array")
    if alpha is not None and fmt in ("PNG", "WEBP"):
        pil = Image.fromarray(np.dstack([image, alpha]), "RGBA")
    else:
        pil = Image.fromarray(image, "RGB")
    kwargs: dict = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = int(quality)
    if fmt == "JPEG":
        kwargs["subsampling"] = 0 if quality >= 90 else 2
    if fmt == "PNG":
        kwargs["compress_level"] = 3
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if exif and fmt in ("JPEG", "PNG", "WEBP"):
        kwargs["exif"] = exif
    buf = _io.BytesIO()
    pil.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def encode_like(image: np.ndarray, original: DecodedImage, fmt: str = "JPEG", quality: int = 95) -> bytes:
    """Encode a result made from `original` (its target): the target's transparency,
    resized to the result, is kept where the format has alpha, and so are its colour
    profile and EXIF."""
    alpha = None
    if original.alpha is not None and fmt.upper() in ("PNG", "WEBP"):
        from .imaging import resize_frame

        alpha = resize_frame(original.alpha, (image.shape[1], image.shape[0]))
    return encode_image(image, fmt, quality=quality, alpha=alpha, icc_profile=original.icc_profile, exif=original.exif)


# temp files of an output being written: ".<output name>.<writer's pid>.<random>.tmp|.part"
TEMP_NAME = re.compile(r"^\.(?P<output>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.(?:tmp|part)$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def make_temp(path: Path, suffix: str) -> tuple[int, str]:
    """A temp file beside `path` named after it and this process (see TEMP_NAME), so a later
    run can tell a temp file a killed writer left from one still being written."""
    return tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, outputs: set[str] | None = None) -> list[Path]:
    """Remove the temp files in `folder` (only those of the output names `outputs`, when
    given) whose writer is gone: what a `kill -9` mid-write leaves (Ctrl-C and SIGTERM clean
    up themselves). Returns the files removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if not match or (outputs is not None and match["output"] not in outputs):
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _pid_alive(pid) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def no_space_error(exc: OSError, path: str | os.PathLike) -> InputError | None:
    """A full disk (or quota) while writing `path`, as the user's error to fix (exit 3),
    or None for any other OSError."""
    if getattr(exc, "errno", None) in NO_SPACE:
        return InputError(f"{path}: no space left on the output's disk", "no_space")
    return None


def _decoder_reason(exc: Exception) -> str:
    """Pillow's reason without its byte counts ("image file is truncated", not "... (1 bytes
    not processed)"): the user can act on the first part only."""
    return re.sub(r"\s*\(\d+ bytes not processed\)", "", str(exc)).strip() or type(exc).__name__


def file_mode() -> int:
    """The mode a new file gets from the user's umask (0o666 & ~umask), as `open` would give:
    temp files are made 0o600, and outputs must not stay that private. Linux tells the umask
    in /proc without changing it (os.umask would, for every thread, for a moment)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            mask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write data to path via a temp file in the same folder + os.replace.

    Without overwrite an existing file is refused; the check and the rename are made with
    os.link, so a file that appears in between is not replaced either. A full disk is an
    InputError ("no_space"). (The commands remove what a killed writer left beforehand, once
    per run: `remove_stale_temps`; here it would list the folder on every write.)
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{path}: output folder does not exist", "bad_output")
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    try:
        fd, tmp = make_temp(folder / path.name, ".tmp")
    except OSError as exc:
        raise no_space_error(exc, path) or exc from None
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise no_space_error(exc, path) or exc from None
        os.chmod(tmp, file_mode())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile
            except FileExistsError as exc:
                raise OutputExistsError(path) from exc
            except OSError as exc:
                if path.exists():
                    raise OutputExistsError(path) from exc
                os.replace(tmp, path)  # filesystems without hard links
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    overwrite: bool = False,
    quality: int = 95,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
) -> Path:
    """Encode by the path's extension (.jpg .jpeg .png .webp) and write atomically."""
    fmt = output_format(path)
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(path)
    data = encode_image(image, fmt, quality=quality, alpha=alpha, icc_profile=icc_profile, exif=exif)
    return write_bytes_atomic(path, data, overwrite=overwrite)
