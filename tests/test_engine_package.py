"""The classical engine as a package: its layout rules, its tuning as data, and the named
masks' report (which rule kept how much of the target's face)."""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np

from facefuse.io import read_image

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facefuse" / "engines" / "classical"


def _numeric(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_numeric(e) for e in node.elts)
    return False


def module_constants(path: Path) -> list[str]:
    """Module-level names bound to a number or a tuple of numbers."""
    found = []
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        if value is not None and _numeric(value):
            found += [ast.unparse(t) for t in targets]
    return found


def test_no_module_of_the_engine_is_long_or_holds_a_number_outside_its_tuning():
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 10
    assert all(len(p.read_text().splitlines()) <= 350 for p in modules), [p.name for p in modules]
    assert {p.name: module_constants(p) for p in modules if p.name != "tuning.py" and module_constants(p)} == {}
    # the checker itself sees a constant
    probe = PACKAGE.parent / "onnx.py"
    assert module_constants(Path(__file__)) == [] and isinstance(module_constants(probe), list)


def test_the_constant_checker_finds_numbers(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("A = 3\nB = (1.0, -2)\nC: float = 0.5\nD = 'text'\nE = len([])\n")
    assert module_constants(f) == ["A", "B", "C"]


def test_the_report_says_which_rule_kept_the_target_where_a_strand_crosses_the_source(fuser, source_path, target_path):
    """An orange strand painted across the source's cheek: the source_clear rule keeps the
    target's skin there, and the report's share for it grows; every share is 0..1."""
    src = read_image(source_path)
    lms = fuser.detect(src).faces[0].landmarks
    eye = np.linalg.norm(lms[33] - lms[263])
    strand = src.copy()
    cv2.line(strand, (int(lms[234, 0]) - 5, int(lms[50, 1] - 0.35 * eye)), (int(lms[6, 0]), int(lms[6, 1])),
             (205, 95, 30), max(4, int(0.2 * eye)))
    clean = fuser.fuse_detailed(src, target_path, fuser.params(ratio=1.0)).report()["faces_fused"][0]["kept"]
    dirty = fuser.fuse_detailed(strand, target_path, fuser.params(ratio=1.0)).report()["faces_fused"][0]["kept"]
    assert set(clean) == {"uncovered", "target_drawn", "target_facing", "source_usable", "source_clear",
                          "target_eyes", "target_frames", "target_hands"}
    assert all(0.0 <= v <= 1.0 for v in list(clean.values()) + list(dirty.values()))
    assert dirty["source_clear"] > clean["source_clear"] + 0.02, (clean, dirty)


def test_the_engine_uses_the_tuning_it_is_given(source_path, target_path, fuser):
    """A ClassicalEngine built with a tuning of its own fuses differently; the default one
    as the session's engine does."""
    from dataclasses import replace

    from facefuse.engines.classical import DEFAULT_TUNING, ClassicalEngine

    src = fuser.prepare_source(source_path)
    target = read_image(target_path)
    face = fuser.detect(target).faces[0]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    roi, lms = target[y0:y1, x0:x1], face.landmarks - np.float32([x0, y0])
    plain = ClassicalEngine().fuse(src, roi, lms, 1.0).image
    again = fuser.engine.fuse(src, roi, lms, 1.0).image
    flatter = ClassicalEngine(tuning=replace(DEFAULT_TUNING, geometry=replace(DEFAULT_TUNING.geometry, share=0.0)))
    assert np.array_equal(plain, again)
    assert np.abs(flatter.fuse(src, roi, lms, 1.0).image - plain).max() > 10


def _light_strand(img: np.ndarray, lms: np.ndarray) -> np.ndarray:
    """A strand of light hair (as light as the skin, little colour: what the colour rules
    miss) as a bundle of seven fine lines from the temple down across the cheek."""
    eye = float(np.linalg.norm(lms[33] - lms[263]))
    skin = np.median(img[int(lms[50, 1]) - 3:int(lms[50, 1]) + 3, int(lms[50, 0]) - 3:int(lms[50, 0]) + 3].reshape(-1, 3), 0)
    out = img.copy()
    start, end = lms[127], lms[203]
    across = np.float32([1.0, 0.2]) / np.hypot(1.0, 0.2)
    width = max(1, int(round(0.02 * eye)))
    for i in range(7):
        offset = across * (i - 3) * 0.035 * eye
        shade = np.clip(skin * (1.12 if i % 2 else 0.97) + np.float32([8, 6, -4]), 0, 255)
        cv2.line(out, tuple(np.round(start + offset).astype(int)), tuple(np.round(end + offset).astype(int)),
                 tuple(int(c) for c in shade), width, cv2.LINE_AA)
    return out


def _along_the_strand(img: np.ndarray, lms: np.ndarray) -> np.ndarray:
    mask = np.zeros(img.shape[:2], np.uint8)
    eye = float(np.linalg.norm(lms[33] - lms[263]))
    cv2.line(mask, tuple(np.round(lms[127]).astype(int)), tuple(np.round(lms[203]).astype(int)), 1, max(2, int(0.2 * eye)))
    return mask > 0


def test_a_light_strand_on_the_source_is_hair_with_the_region_map(fuser, source_path, target_path, tune):
    """Light hair on light skin has neither the chroma nor the darkness the colour rules look
    for; the source's region map (labels.py, an option: Labels.source) labels it hair from
    its oriented texture, and the target's skin stays where it lies. Without the map (the
    default) the whole strand comes through; with it, the part the map finds does not."""
    src = read_image(source_path)
    painted = _light_strand(src, fuser.detect(src).faces[0].landmarks)
    target = read_image(target_path)
    along = _along_the_strand(target, fuser.detect(target).faces[0].landmarks)

    def strand_shows() -> float:
        clean, dirty = (fuser.fuse(s, target, ratio=1.0).astype(np.float32) for s in (src, painted))
        return float(np.abs(dirty - clean)[along].mean())

    without = strand_shows()
    tune("labels", source=True)
    with_map = strand_shows()
    assert without - with_map > 3.0, (with_map, without)  # measured 15.6 against 10.2 levels
