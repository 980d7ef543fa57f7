"""Small ONNX models with the exact I/O contracts of the neural engines, built with onnx.helper.

No downloads: the tests and the ONNX benchmark build these in a temporary folder. They are
test models, not face models: their outputs are chosen to be predictable (the target crop
unchanged, a known pattern) or to cost something like a real model (a few convolutions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facefuse import align

OPSET = 17
PATTERN_COLOURS = np.float32([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1]])  # per key point


class _Graph:
    """A tiny graph builder: nodes and initializers with generated names."""

    def __init__(self, seed: int = 0):
        self.nodes: list = []
        self.inits: list = []
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, gain: float = 1.0) -> str:
        w = (self.rng.standard_normal((cout, cin, k, k)) * gain * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = np.zeros(cout, np.float32)
        return self.op("Conv", [x, self.const(w, "w"), self.const(b, "b")], pads=[k // 2] * 4, strides=[stride, stride])

    def channels(self, x: str, start: int, end: int) -> str:
        return self.op("Slice", [x, self.const(np.int64([start])), self.const(np.int64([end])), self.const(np.int64([1]))])

    def save(self, path: Path, inputs: list, outputs: list, extra_last: np.ndarray | None = None) -> Path:
        inits = list(self.inits)
        if extra_last is not None:  # inswapper keeps its embedding map as the last initializer
            inits.append(numpy_helper.from_array(extra_last.astype(np.float32), "emap"))
        graph = helper.make_graph(self.nodes, path.stem, inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 9
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path


def _io(name: str, shape: list, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _emap(dim: int, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q.astype(np.float32)


def write_card(model: Path, **card) -> Path:
    path = model.with_suffix(".json")
    path.write_text(json.dumps(card))
    return path


# -- onnx-swap ------------------------------------------------------------------------------
def swap_identity(path: Path, size: int = 128, dim: int = 512) -> Path:
    """Output = the target crop unchanged (the latent is read, times 0)."""
    g = _Graph()
    zero = g.op("Mul", [g.op("ReduceSum", ["source"], keepdims=0), g.const(np.float32(0.0))])
    g.op("Add", ["target", zero], "output")
    return g.save(path, [_io("target", [1, 3, size, size]), _io("source", [1, dim])],
                  [_io("output", [1, 3, size, size])], extra_last=_emap(dim))


def pattern(size: int, template: str = "arcface") -> np.ndarray:
    """1x3xSxS: mid grey with a coloured square (side S/10) on each template key point."""
    img = np.full((3, size, size), 0.5, np.float32)
    r = max(2, size // 20)
    for (x, y), colour in zip(np.round(align.template(template, size)).astype(int), PATTERN_COLOURS, strict=True):
        img[:, y - r:y + r + 1, x - r:x + r + 1] = colour[:, None, None]
    return img[None]


def swap_pattern(path: Path, size: int = 128, dim: int = 512) -> Path:
    """Output = a fixed pattern marking the template's key points, whatever the input."""
    g = _Graph()
    zero = g.op("Mul", [g.op("ReduceSum", ["source"], keepdims=0), g.const(np.float32(0.0))])
    zt = g.op("Mul", ["target", g.const(np.float32(0.0))])
    g.op("Add", [g.op("Add", [zt, zero]), g.const(pattern(size))], "output")
    return g.save(path, [_io("target", [1, 3, size, size]), _io("source", [1, dim])],
                  [_io("output", [1, 3, size, size])], extra_last=_emap(dim))


def swap_conv(path: Path, size: int = 128, dim: int = 512, width: int = 32) -> Path:
    """A few convolutions modulated by the latent: output = clip(target + 0.15 tanh(net)).

    Costs something like a (very) small swap model and depends on the source latent.
    """
    g = _Graph(seed=3)
    lat = g.op("Gemm", ["source", g.const((g.rng.standard_normal((dim, width)) * 2.0).astype(np.float32)),
                        g.const(np.zeros(width, np.float32))])
    lat = g.op("Reshape", [lat, g.const(np.int64([1, width, 1, 1]))])
    h = g.op("Relu", [g.op("Add", [g.conv("target", 3, width), lat])])
    h = g.op("Relu", [g.conv(h, width, width)])
    h = g.op("Relu", [g.conv(h, width, width)])
    d = g.op("Tanh", [g.conv(h, width, 3, gain=0.5)])
    y = g.op("Add", ["target", g.op("Mul", [d, g.const(np.float32(0.15))])])
    g.op("Clip", [y, g.const(np.float32(0.0)), g.const(np.float32(1.0))], "output")
    return g.save(path, [_io("target", [1, 3, size, size]), _io("source", [1, dim])],
                  [_io("output", [1, 3, size, size])], extra_last=_emap(dim))


def embedder(path: Path, size: int = 112, dim: int = 512) -> Path:
    """ArcFace-like: 1x3x112x112 -> 1x512 (two strided convolutions and a projection)."""
    g = _Graph(seed=5)
    h = g.op("Relu", [g.conv("input", 3, 16, k=5, stride=4)])
    h = g.op("Relu", [g.conv(h, 16, 32, k=5, stride=4)])
    side = size
    for _ in range(2):  # two k5 s4 p2 convolutions
        side = (side + 4 - 5) // 4 + 1
    flat = g.op("Flatten", [h])
    w = (g.rng.standard_normal((32 * side * side, dim)) / np.sqrt(32 * side * side)).astype(np.float32)
    g.op("MatMul", [flat, g.const(w)], "embedding")
    return g.save(path, [_io("input", [1, 3, size, size])], [_io("embedding", [1, dim])])


# -- onnx-unet ------------------------------------------------------------------------------
UNET_CARD = {"mean": [0.4, 0.5, 0.6], "std": [0.3, 0.25, 0.2], "template": "ffhq"}


def unet_copy(path: Path, size: int = 128, which: str = "target", card: dict | None = UNET_CARD) -> Path:
    """Output = one of the two input crops unchanged (normalised values pass through)."""
    g = _Graph()
    start = 3 if which == "target" else 0
    g.op("Identity", [g.channels("input", start, start + 3)], "output")
    g.save(path, [_io("input", [1, 6, size, size])], [_io("output", [1, 3, size, size])])
    if card is not None:
        write_card(path, size=size, **card)
    return path


def unet_conv(path: Path, size: int = 128, width: int = 16) -> Path:
    """A small UNet: encoder, one downsampling, decoder with a skip connection, residual on
    the target crop (output = target + 0.2 tanh(net), in normalised units). Card: ffhq, 0.5/0.5."""
    g = _Graph(seed=7)
    e1 = g.op("Relu", [g.conv("input", 6, width)])
    e2 = g.op("Relu", [g.conv(e1, width, 2 * width, stride=2)])
    e3 = g.op("Relu", [g.conv(e2, 2 * width, 2 * width)])
    up = g.op("Resize", [e3, "", g.const(np.float32([1, 1, 2, 2]))], mode="nearest")
    d = g.op("Relu", [g.conv(g.op("Concat", [up, e1], axis=1), 3 * width, width)])
    o = g.op("Tanh", [g.conv(d, width, 3, gain=0.5)])
    g.op("Add", [g.channels("input", 3, 6), g.op("Mul", [o, g.const(np.float32(0.2))])], "output")
    g.save(path, [_io("input", [1, 6, size, size])], [_io("output", [1, 3, size, size])])
    write_card(path, size=size, mean=0.5, std=0.5, template="ffhq")
    return path


# -- enhancers ------------------------------------------------------------------------------
def enhancer_affine(path: Path, size: int = 512, gain: float = 1.0, shift: float = 0.0, weight: bool = False,
                    weight_dtype=TensorProto.DOUBLE) -> Path:
    """GFPGAN-style I/O, output = gain * input + shift in normalised units ((x/255 - 0.5) / 0.5).

    gain 1, shift 0 is the identity; gain 0.5, shift -0.5 halves every pixel (a darkening
    enhancer). With `weight`, a CodeFormer-style scalar input `weight` is subtracted too, so
    the weight the enhancer is given shows in its output."""
    g = _Graph()
    y = g.op("Add", [g.op("Mul", ["input", g.const(np.float32(gain))]), g.const(np.float32(shift))])
    inputs = [_io("input", [1, 3, size, size])]
    if weight:
        y = g.op("Sub", [y, g.op("Cast", ["weight"], to=TensorProto.FLOAT)])
        inputs.append(_io("weight", [1], weight_dtype))
    g.op("Identity", [y], "output")
    return g.save(path, inputs, [_io("output", [1, 3, size, size])])


def enhancer_conv(path: Path, size: int = 512, width: int = 16) -> Path:
    """A few strided convolutions and an upsampling, residual on the input: costs something
    like a (very) small restoration model, for the benchmark and quantization."""
    g = _Graph(seed=11)
    e1 = g.op("Relu", [g.conv("input", 3, width, stride=2)])
    e2 = g.op("Relu", [g.conv(e1, width, width, stride=2)])
    up = g.op("Resize", [e2, "", g.const(np.float32([1, 1, 4, 4]))], mode="nearest")
    o = g.op("Tanh", [g.conv(up, width, 3, gain=0.5)])
    g.op("Add", ["input", g.op("Mul", [o, g.const(np.float32(0.1))])], "output")
    return g.save(path, [_io("input", [1, 3, size, size])], [_io("output", [1, 3, size, size])])


# -- onnx-damo ------------------------------------------------------------------------------
DAMO_NAMES = ("input_1", "input_2", "input_3", "input_4")


def _damo(path: Path, image_out, g: _Graph, size: int, names=DAMO_NAMES, out_name: str = "output_1") -> Path:
    """Save a DAMO-contract graph whose output is image_out(g) plus 0 x every other input
    (so that each input is read and must be fed)."""
    zero = g.const(np.float32(0.0))
    for name in names[1:]:
        image_out = g.op("Add", [image_out, g.op("Mul", [g.op("ReduceSum", [name], keepdims=0), zero])])
    g.op("Identity", [image_out], out_name)
    inputs = [_io(names[0], [1, 3, size, size]), _io(names[1], [1, 512]), _io(names[2], [1, 17, 2]), _io(names[3], [1, 17, 2])]
    return g.save(path, inputs, [_io(out_name, [1, 3, size, size])])


def damo_copy(path: Path, size: int = 256, names=DAMO_NAMES, out_name: str = "output_1") -> Path:
    """Output = the template crop (input_1) unchanged."""
    g = _Graph()
    return _damo(path, g.op("Identity", [names[0]]), g, size, names, out_name)


def damo_pattern(path: Path, size: int = 256) -> Path:
    """Output = coloured squares at the seed's (DAMO) template key points, in [-1, 1]."""
    g = _Graph()
    return _damo(path, g.op("Add", [g.op("Mul", ["input_1", g.const(np.float32(0.0))]),
                                    g.const(pattern(size, "damo") * 2 - 1)]), g, size)


def damo_channel0(path: Path, size: int = 256) -> Path:
    """Output = (+1, 0, -1) in channels (0, 1, 2): (255, 128, 0) as RGB, (0, 128, 255) read as BGR."""
    g = _Graph()
    level = np.float32([1.0, 0.0, -1.0]).reshape(1, 3, 1, 1) * np.ones((1, 3, size, size), np.float32)
    return _damo(path, g.op("Add", [g.op("Mul", ["input_1", g.const(np.float32(0.0))]), g.const(level)]), g, size)


# -- presets and pixel boost ----------------------------------------------------------------
def swap_copy(path: Path, size: int, source_shape: list[int]) -> Path:
    """A swap model of any preset's shapes: output = the target crop, the source read times 0."""
    g = _Graph()
    zero = g.op("Mul", [g.op("ReduceSum", ["source"], keepdims=0), g.const(np.float32(0.0))])
    g.op("Add", ["target", zero], "output")
    return g.save(path, [_io("target", [1, 3, size, size]), _io("source", source_shape)], [_io("output", [1, 3, size, size])])


def converter(path: Path, dim_in: int = 512, dim_out: int = 512) -> Path:
    """An embedding converter (SimSwap / GHOST / HiFiFace style): 1xD -> 1xD', a fixed linear map."""
    g = _Graph(seed=13)
    w = (g.rng.standard_normal((dim_in, dim_out)) / np.sqrt(dim_in)).astype(np.float32)
    g.op("MatMul", ["input", g.const(w)], "output")
    return g.save(path, [_io("input", [1, dim_in])], [_io("output", [1, dim_out])])


def swap_tile_mean(path: Path, size: int = 128, dim: int = 512) -> Path:
    """Output = the per-channel mean of the input crop everywhere: for a pixel-boost
    sub-image that mean depends on its sub-pixel phase, so the interleave shows in the result."""
    g = _Graph()
    zero = g.op("Mul", [g.op("ReduceSum", ["source"], keepdims=0), g.const(np.float32(0.0))])
    mean = g.op("ReduceMean", ["target"], axes=[2, 3], keepdims=1)
    g.op("Add", [g.op("Add", [g.op("Mul", ["target", g.const(np.float32(0.0))]), mean]), zero], "output")
    return g.save(path, [_io("target", [1, 3, size, size]), _io("source", [1, dim])],
                  [_io("output", [1, 3, size, size])], extra_last=_emap(dim))


def damo_conv(path: Path, size: int = 256, width: int = 16) -> Path:
    """A few convolutions on the crop modulated by the identity and the contours (residual,
    tanh): costs something like a (very) small generator, for quantization and benchmarks."""
    g = _Graph(seed=17)
    ident = g.op("Gemm", ["input_2", g.const((g.rng.standard_normal((512, width)) * 2.0).astype(np.float32)),
                          g.const(np.zeros(width, np.float32))])
    contour = g.op("Flatten", [g.op("Sub", ["input_3", "input_4"])])
    shape = g.op("Gemm", [contour, g.const((g.rng.standard_normal((34, width))).astype(np.float32)),
                          g.const(np.zeros(width, np.float32))])
    mod = g.op("Reshape", [g.op("Add", [ident, shape]), g.const(np.int64([1, width, 1, 1]))])
    h = g.op("Relu", [g.op("Add", [g.conv("input_1", 3, width, stride=2), mod])])
    h = g.op("Relu", [g.conv(h, width, width)])
    up = g.op("Resize", [h, "", g.const(np.float32([1, 1, 2, 2]))], mode="nearest")
    d = g.op("Tanh", [g.conv(up, width, 3, gain=0.5)])
    g.op("Add", ["input_1", g.op("Mul", [d, g.const(np.float32(0.2))])], "output_1")
    inputs = [_io("input_1", [1, 3, size, size]), _io("input_2", [1, 512]),
              _io("input_3", [1, 17, 2]), _io("input_4", [1, 17, 2])]
    return g.save(path, inputs, [_io("output_1", [1, 3, size, size])])
