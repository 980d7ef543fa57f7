"""Safe decoding and atomic writing, on real photos converted to awkward formats."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facefuse.errors import InputError, OutputExistsError
from facefuse.io import decode_image, encode_image, read_image, write_bytes_atomic, write_image


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_reads_jpeg_as_rgb_uint8(target_path):
    img = read_image(target_path)
    assert img.dtype == np.uint8 and img.shape == (800, 1200, 3)


def test_same_result_from_path_bytes_and_array(target_path):
    a = read_image(target_path)
    b = read_image(target_path.read_bytes())
    c = read_image(a)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_exif_orientation_applied(target_path):
    pil = Image.open(target_path)
    exif = pil.getexif()
    exif[0x0112] = 6  # stored sideways: viewer must rotate 90 degrees clockwise
    data = _pil_bytes(pil, "JPEG", exif=exif.tobytes(), quality=95)
    img = read_image(data)
    assert img.shape[:2] == (pil.width, pil.height)  # portrait now
    upright = np.asarray(pil.transpose(Image.Transpose.ROTATE_270))
    assert np.abs(img.astype(int) - upright.astype(int)).mean() < 4


def test_png_alpha_flattened_on_white_and_kept_by_decode(data_dir):
    path = data_dir / "fr_alex_lacamoire.png"
    decoded = decode_image(path)
    assert decoded.alpha is not None and decoded.alpha.shape == decoded.rgb.shape[:2]
    flat = read_image(path)
    transparent = decoded.alpha == 0
    if transparent.any():
        assert (flat[transparent] == 255).all()
    assert flat.shape[2] == 3


def test_sixteen_bit_png(target_path):
    grey = np.asarray(Image.open(target_path).convert("L"), dtype=np.uint16) * 257
    data = _pil_bytes(Image.fromarray(grey), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = read_image(data)
    assert img.dtype == np.uint8 and img.shape[2] == 3
    assert np.abs(img[:, :, 0].astype(int) - (grey >> 8)).max() <= 1


def test_sixteen_bit_rgb_png_via_array_roundtrip(target_path):
    import cv2

    rgb16 = read_image(target_path).astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    img = read_image(buf.tobytes())
    assert img.dtype == np.uint8 and np.abs(img.astype(int) - read_image(target_path)).max() <= 1


def test_grey_jpeg_and_cmyk(target_path):
    pil = Image.open(target_path)
    grey = read_image(_pil_bytes(pil.convert("L"), "JPEG"))
    assert grey.shape[2] == 3 and np.array_equal(grey[:, :, 0], grey[:, :, 1])
    cmyk = read_image(_pil_bytes(pil.convert("CMYK"), "JPEG", quality=95))
    assert np.abs(cmyk.astype(int) - read_image(target_path)).mean() < 6


@pytest.mark.parametrize("blob, words", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
])
def test_bad_bytes(blob, words):
    with pytest.raises(InputError, match=words):
        read_image(blob)


def test_truncated_jpeg(target_path):
    data = target_path.read_bytes()
    with pytest.raises(InputError, match="truncated|damaged"):
        read_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.jpg")


def test_pixel_bomb_refused_before_decoding():
    # a valid PNG header claiming 100000 x 100000 pixels, with a tiny body
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    with pytest.raises(InputError, match="over the limit"):
        read_image(png)


def test_configurable_pixel_limit(target_path):
    with pytest.raises(InputError, match="over the limit"):
        read_image(target_path, max_pixels=500_000)


def test_write_refuses_existing_and_leaves_it_intact(tmp_path, target_path):
    img = read_image(target_path)
    out = tmp_path / "o.jpg"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        write_image(out, img)
    assert out.read_bytes() == b"keep me"
    write_image(out, img, overwrite=True)
    assert read_image(out).shape == img.shape
    assert [p.name for p in tmp_path.iterdir()] == ["o.jpg"]  # no temp file left


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".png", ".webp"])
def test_write_formats(tmp_path, target_path, suffix):
    img = read_image(target_path)[:200, :300]
    path = write_image(tmp_path / f"x{suffix}", img)
    back = read_image(path)
    assert back.shape == img.shape
    if suffix == ".png":
        assert np.array_equal(back, img)


def test_unsupported_output_suffix(tmp_path, target_path):
    with pytest.raises(InputError, match="unsupported output format"):
        write_image(tmp_path / "x.gif", read_image(target_path))


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "o.bin"

    def boom(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_bytes_atomic(out, b"data")
    assert list(tmp_path.iterdir()) == []


def test_png_alpha_kept_on_encode(data_dir):
    d = decode_image(data_dir / "fr_alex_lacamoire.png")
    data = encode_image(d.rgb, "PNG", alpha=d.alpha)
    back = decode_image(data)
    assert back.alpha is not None and np.array_equal(back.alpha, d.alpha)
