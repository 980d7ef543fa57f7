"""Model presets shipped as cards (facefuse/presets): each loads and validates against a small
synthetic model of its shapes, gives the model what the preset says (template, normalisation,
identity), and a wrong file for a preset is one clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models as om  # noqa: E402
from facefuse import align  # noqa: E402
from facefuse.config import InferenceSettings  # noqa: E402
from facefuse.engines import create_engine  # noqa: E402
from facefuse.enhancers import create_enhancer  # noqa: E402
from facefuse.errors import ConfigError, EngineError  # noqa: E402
from facefuse.io import read_image  # noqa: E402
from facefuse.onnxrt import presets  # noqa: E402

# preset -> (crop side, template, source input shape, needs a converter)
SWAP = {
    "inswapper_128": (128, "arcface_128", [1, 512], False),
    "simswap_256": (256, "arcface_112_v1", [1, 512], True),
    "simswap_unofficial_512": (512, "arcface_112_v1", [1, 512], True),
    "ghost_256": (256, "arcface_112_v1", [1, 512], True),
    "hififace_unofficial_256": (256, "mtcnn", [1, 512], True),
    "hyperswap_256": (256, "arcface_128", [1, 512], False),
    "blendswap_256": (256, "ffhq", [1, 3, 112, 112], False),
    "uniface_256": (256, "ffhq", [1, 3, 256, 256], False),
}
ENHANCE = {"gfpgan_1.4": (512, "ffhq"), "gpen_bfr_256": (256, "arcface_128"), "gpen_bfr_512": (512, "ffhq"),
           "gpen_bfr_1024": (1024, "ffhq"), "gpen_bfr_2048": (2048, "ffhq"), "codeformer": (512, "ffhq"),
           "restoreformer_plus_plus": (512, "ffhq")}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("presets")
    om.embedder(d / "emb.onnx")
    om.converter(d / "converter.onnx")
    for name, (size, _, source, _) in SWAP.items():
        om.swap_copy(d / f"{name}.onnx", size, source)
    for name, (size, _) in ENHANCE.items():
        om.enhancer_affine(d / f"{name}.onnx", size=size, weight=name == "codeformer")
    return d


@pytest.fixture(scope="module")
def source(fuser, source_path):
    img = read_image(source_path)
    return img, fuser.detect(img).faces[0]


def swap(models: Path, preset: str, model: str | None = None, **kw):
    return create_engine("onnx-swap", InferenceSettings(
        engine="onnx-swap", model=str(models / (model or f"{preset}.onnx")), model_preset=preset,
        embedder=str(models / "emb.onnx"), converter=str(models / "converter.onnx") if SWAP[preset][3] else None, **kw))


def test_every_preset_is_listed():
    assert set(presets()) == set(SWAP) | set(ENHANCE)


@pytest.mark.parametrize("preset", sorted(SWAP))
def test_swap_preset_loads_and_feeds_its_model(models, preset, source):
    size, template, source_shape, _ = SWAP[preset]
    engine = swap(models, preset)
    assert engine.size == size
    np.testing.assert_allclose(engine.template_px, align.template(template, size), atol=1e-4)
    prepared = engine.prepare_source(*source)
    latent = prepared.prepared["latent"]
    assert list(latent.shape) == source_shape
    img, face = source
    if engine.card.latent == "image":  # an aligned RGB image in 0..1, not an embedding
        assert 0 <= latent.min() and latent.max() <= 1 and latent.std() > 0.05
    else:
        raw = engine._raw_embedding(img, face)
        if engine.card.latent == "converter":
            expected = engine.converter({engine.converter_input: raw})
        else:
            expected = raw / np.linalg.norm(raw)
            if engine.emap is not None:
                expected = expected @ engine.emap
        if engine.card.normalise_latent:
            expected = expected / np.linalg.norm(expected)
        np.testing.assert_allclose(latent, expected, rtol=1e-4, atol=1e-6)
    # the copy model round-trips the crop through the preset's normalisation
    crop, _ = engine.aligned_crop(img, face.landmarks)
    out = engine.run(engine.feeds(prepared, crop))
    if engine.card.output_mean is None:
        assert np.abs(out - crop).max() < 0.01
    else:  # SimSwap 256: ImageNet-normalised in, 0..1 out: the copy comes back as the normalised values
        np.testing.assert_allclose(out, np.clip(engine.card.normalise(crop).transpose(1, 2, 0) * 255, 0, 255), atol=0.01)


def test_presets_differ_where_facefusion_does(models, source):
    ghost, simswap = swap(models, "ghost_256"), swap(models, "simswap_256")
    assert not ghost.card.normalise_latent and simswap.card.normalise_latent
    g = ghost.prepare_source(*source).prepared["latent"]
    assert abs(np.linalg.norm(g) - 1) > 1e-3  # GHOST's converted embedding is not normalised
    assert simswap.card.mean == (0.485, 0.456, 0.406) and ghost.card.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("preset", sorted(ENHANCE))
def test_enhancer_preset_loads(models, preset):
    size, template = ENHANCE[preset]
    enhancer = create_enhancer("onnx", InferenceSettings(enhancer=str(models / f"{preset}.onnx"), enhancer_preset=preset))
    assert enhancer.size == size and (enhancer.weight_input == "weight") == (preset == "codeformer")
    np.testing.assert_allclose(enhancer.template_px, align.template(template, size), atol=1e-3)


def test_wrong_file_for_a_preset_is_one_clear_error(models):
    cases = {
        "size": lambda: swap(models, "inswapper_128", model="hyperswap_256.onnx"),
        "embedding model for an image-source preset": lambda: swap(models, "blendswap_256", model="hyperswap_256.onnx"),
        "image-source model for an embedding preset": lambda: swap(models, "hyperswap_256", model="uniface_256.onnx"),
        "enhancer for a swap preset": lambda: swap(models, "hyperswap_256", model="gpen_bfr_256.onnx"),
        "swap model as a converter": lambda: create_engine("onnx-swap", InferenceSettings(
            engine="onnx-swap", model=str(models / "ghost_256.onnx"), model_preset="ghost_256",
            embedder=str(models / "emb.onnx"), converter=str(models / "hyperswap_256.onnx"))),
    }
    messages = {}
    for name, make in cases.items():
        with pytest.raises(EngineError) as info:
            make()
        messages[name] = str(info.value)
        assert "\n" not in messages[name], name
    assert "the preset inswapper_128 says size 128, the model 256" in messages["size"]
    assert "(preset blendswap_256): expected inputs 'target' 1x3xSxS float and 'source' 1x3xS'xS'" in \
        messages["embedding model for an image-source preset"]
    assert "(preset hyperswap_256): expected inputs 'target' 1x3xSxS float and 'source' 1xD" in \
        messages["image-source model for an embedding preset"]
    assert "not an embedding converter" in messages["swap model as a converter"]
    with pytest.raises(ConfigError, match="needs its embedding-converter ONNX model"):
        create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(models / "ghost_256.onnx"),
                                                     model_preset="ghost_256", embedder=str(models / "emb.onnx")))
    with pytest.raises(ConfigError, match="'gfpgan_1.4' is a preset for enhancer, not for onnx-swap"):
        create_engine("onnx-swap", InferenceSettings(engine="onnx-swap", model=str(models / "inswapper_128.onnx"),
                                                     model_preset="gfpgan_1.4", embedder=str(models / "emb.onnx")))
