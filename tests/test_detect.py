"""Face detection on real photos: groups, hard negatives, rotation (pixels and EXIF), a
tilted camera, grey / dark / glasses, faces cut by the border (also in a crowded selfie),
ordering, large images (a 40-px face in 36 Mpx), `facefuse detect` (text and --json), and
the `facefuse bench detect` benchmark on a small catalog.

Counts come from shared/faces/catalog.tsv (checked by eye)."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from facefuse.bench.detect import small_face_scene
from facefuse.cli import main
from facefuse.detect import turned
from facefuse.io import read_image

# file -> faces in the photo (catalog.tsv)
GROUPS = {"faceapi_bbt4.jpg": 6, "faceapi_bbt3.jpg": 5, "insightface_t1.jpg": 6}
GROUP_TOLERANCE = 1  # at most this many faces of a group photo may be missed
NEGATIVES = ("skimage_chelsea.png", "dlib_dogs.jpg")  # a cat, dogs: animal faces are not faces
KEYPOINTS = [468, 473, 1, 61, 291]  # mesh indices of Face.keypoints


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _rot90_points(pts: np.ndarray, width: int, height: int, k: int) -> np.ndarray:
    """Where points (x, y) of a width x height image land in np.rot90(image, k)
    (k quarter turns counter-clockwise; pixel-edge coordinates)."""
    pts = np.asarray(pts, np.float64).copy()
    w, h = width, height
    for _ in range(k % 4):
        pts = np.stack([pts[:, 1], w - pts[:, 0]], axis=1)  # one turn: (x, y) -> (y, W - x)
        w, h = h, w
    return pts


@pytest.fixture(scope="module")
def upright(fuser, target_path):
    """examples/target.jpg (one face, 1200x800) and its detection."""
    img = read_image(target_path)
    det = fuser.detect(img)
    assert len(det.faces) == 1, det.dropped
    return img, det.faces[0]


def _assert_same_face(found, expected_landmarks: np.ndarray, size: float, what: str) -> None:
    err = np.linalg.norm(found.landmarks.astype(np.float64) - expected_landmarks, axis=1) / size
    assert np.median(err) < 0.05, f"{what}: landmarks off by a median {np.median(err):.1%} of the face size"
    assert err[KEYPOINTS].max() < 0.05, f"{what}: key points off by up to {err[KEYPOINTS].max():.1%} of the face size"


# -- counts -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_group_photo_finds_its_faces(fuser, data_dir, name):
    n = GROUPS[name]
    det = fuser.detect(data_dir / name)
    found = len(det.faces)
    assert n - GROUP_TOLERANCE <= found <= n, f"{name}: {found} faces, catalog {n}; dropped {det.dropped}"
    for i, a in enumerate(det.faces):  # distinct faces, not one face found twice
        for b in det.faces[i + 1:]:
            assert _iou(a.box, b.box) < 0.3, f"{name}: overlapping faces {a.box} and {b.box}"
    for f in det.faces:
        assert f.landmarks.shape == (478, 2) and np.isfinite(f.landmarks).all()
        assert 0.6 <= f.score <= 1.0


@pytest.mark.parametrize("name", NEGATIVES)
def test_animals_are_not_faces(fuser, data_dir, name):
    det = fuser.detect(data_dir / name)  # default threshold
    assert det.faces == [], f"{name}: {[f.to_dict() for f in det.faces]}"


def test_faces_come_largest_first(fuser, data_dir):
    for name in GROUPS:
        areas = [f.width * f.height for f in fuser.detect(data_dir / name).faces]
        assert len(areas) >= 2
        for a, b in itertools.pairwise(areas):
            assert a >= b * 0.99, f"{name}: face areas not largest first: {[round(v) for v in areas]}"


# -- rotation ---------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_portrait_rotated_90_degrees_in_pixels(fuser, upright, k):
    img, face = upright
    h, w = img.shape[:2]
    det = fuser.detect(np.ascontiguousarray(np.rot90(img, k)))
    assert len(det.faces) == 1, f"rot90 k={k}: {len(det.faces)} faces, dropped {det.dropped}, passes {det.passes}"
    _assert_same_face(det.faces[0], _rot90_points(face.landmarks, w, h, k), face.size, f"rot90 k={k}")


# stored pixels = np.rot90(upright, stored_k), EXIF orientation tag; what read_image shows
# is np.rot90(upright, shown_k): 6 = turn 90 clockwise to show, 8 = counter-clockwise
EXIF_CASES = [(1, 6, 0), (3, 8, 0), (0, 6, 3), (0, 8, 1)]


@pytest.mark.parametrize("stored_k,tag,shown_k", EXIF_CASES)
def test_portrait_rotated_by_exif_orientation(fuser, upright, tmp_path, stored_k, tag, shown_k):
    img, face = upright
    h, w = img.shape[:2]
    exif = Image.Exif()
    exif[0x0112] = tag
    path = tmp_path / f"exif{tag}_{stored_k}.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(img, stored_k))).save(path, quality=95, exif=exif.tobytes())
    shown = read_image(path)
    assert shown.shape == np.rot90(img, shown_k).shape  # the tag was applied
    det = fuser.detect(shown)
    assert len(det.faces) == 1, f"EXIF {tag}: {len(det.faces)} faces, dropped {det.dropped}, passes {det.passes}"
    _assert_same_face(det.faces[0], _rot90_points(face.landmarks, w, h, shown_k), face.size, f"EXIF {tag}")


@pytest.mark.parametrize("name,angle", [("insightface_t1.jpg", 45), ("insightface_t1.jpg", -30), ("faceapi_bbt3.jpg", 45)])
def test_group_photo_turned_by_a_tilted_camera(fuser, data_dir, name, angle):
    """Every face of a group photo turned by 30-45 degrees (canvas enlarged, so none leaves
    the frame) is found where the upright photo's face went. The upright passes alone miss
    1-3 of them; the roll pass (copy turned upright by the faces' median roll) finds them."""
    img = read_image(data_dir / name)
    upright_faces = fuser.detect(img).faces
    assert len(upright_faces) == GROUPS[name]
    photo, m = turned(img, angle, fill=(128, 128, 128))
    det = fuser.detect(photo)
    assert any(p.startswith("roll") for p in det.passes), det.passes
    centres = [np.array(((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2)) for f in det.faces]
    for f in upright_faces:
        want = m @ np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2, 1.0])
        assert any(np.hypot(*(c - want)) < f.size / 2 for c in centres), \
            f"{name} turned {angle}: the face at {np.round(want)} is missing ({len(det.faces)} found, passes {det.passes})"
    assert len(det.faces) == len(upright_faces)


@pytest.mark.parametrize("change", ["grey", "dark"])
def test_grey_and_low_light_portrait(fuser, upright, change):
    img, face = upright
    if change == "grey":
        seen = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    else:  # a fifth of the light, with the noise of a dark shot
        rng = np.random.default_rng(7)
        seen = np.clip(img * 0.2 + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
    det = fuser.detect(seen)
    assert len(det.faces) == 1, f"{change}: {len(det.faces)} faces, dropped {det.dropped}"
    _assert_same_face(det.faces[0], face.landmarks, face.size, change)


# the pupils (image-left, image-right) in photo pixels, read by eye off 4x / 6x zoomed crops
GLASSES_EYES = {"deepface_img25.jpg": ((167, 155), (245, 146)), "faceapi_leonard1.png": ((42, 47), (98, 41))}


@pytest.mark.parametrize("name", sorted(GLASSES_EYES))
def test_faces_with_glasses(fuser, data_dir, name):
    """Glasses (the second a grey, single-channel 150-px crop filled by the face): one face,
    its eyes' key points within a tenth of the eye distance of where the eyes are, seen
    through the lenses rather than on the frames. (A regression guard: the detector found
    these before the issue-7 work too.)"""
    img = read_image(data_dir / name)
    det = fuser.detect(img)
    assert len(det.faces) == 1, f"{name}: {len(det.faces)} faces, dropped {det.dropped}"
    want = np.float32(GLASSES_EYES[name])
    err = np.linalg.norm(det.faces[0].keypoints[:2] - want, axis=1) / np.linalg.norm(want[1] - want[0])
    assert err.max() < 0.1, f"{name}: eyes off by {np.round(err, 3)} eye distances"


# -- borders ----------------------------------------------------------------------------
def test_face_cut_by_the_border_photo(fuser, data_dir):
    img = read_image(data_dir / "fr_obama_partial_face.jpg")
    det = fuser.detect(img)
    assert len(det.faces) == 1, f"{len(det.faces)} faces, dropped {det.dropped}"
    f = det.faces[0]
    assert f.size > 150  # the big face, not something in the background
    assert f.box[0] < 5 or f.box[1] < 5 or f.box[2] > img.shape[1] - 5 or f.box[3] > img.shape[0] - 5


def test_faces_cut_by_the_border_of_a_crowded_selfie(fuser, data_dir, monkeypatch):
    """deepface's selfie of 7: the selfie-taker (right edge, ~55 % inside) and the woman at
    the bottom left (~50 % inside) are found by the mirrored-margin border pass, with meshes
    on their visible halves; the upright passes alone find only the 4 whole faces."""
    img = read_image(data_dir / "deepface_selfie_many_people.jpg")  # 600 x 604
    h, w = img.shape[:2]
    det = fuser.detect(img)
    cut = [f for f in det.faces if f.box[0] < 0 or f.box[2] > w]
    assert len(det.faces) >= 6 and len(cut) >= 2, f"{len(det.faces)} faces, {len(cut)} cut, passes {det.passes}"
    right = max(cut, key=lambda f: f.box[2])
    assert right.size > 180 and right.box[2] > w and right.box[0] < w - 80  # the big selfie-taker's face
    # its visible key points (left eye, nose tip, left mouth corner) lie inside the frame
    visible = right.keypoints[[0, 2, 3]]
    assert ((visible >= 0) & (visible < [w, h])).all(), np.round(visible)
    monkeypatch.setattr("facefuse.detect.BORDER_MIN_INSIDE", 1.0)  # border pass finds nothing new
    assert len(fuser.detect(img).faces) == 4


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_face_with_a_quarter_outside_the_frame(fuser, upright, side):
    """The portrait cropped so that the frame's edge cuts a quarter off the face."""
    img, face = upright
    h, w = img.shape[:2]
    x0, y0, x1, y1 = face.box
    left, top, right, bottom = {
        "left": (int(x0 + face.width / 4), 0, w, h),
        "right": (0, 0, int(x1 - face.width / 4), h),
        "top": (0, int(y0 + face.height / 4), w, h),
        "bottom": (0, 0, w, int(y1 - face.height / 4)),
    }[side]
    part = np.ascontiguousarray(img[top:bottom, left:right])
    crop = (left, top)
    det = fuser.detect(part)
    assert len(det.faces) == 1, f"cut {side}: {len(det.faces)} faces, dropped {det.dropped}, passes {det.passes}"
    # the key points still inside the frame stay where they were
    got = det.faces[0].keypoints + np.float32(crop)
    inside = [(0 <= p[0] - crop[0] < part.shape[1]) and (0 <= p[1] - crop[1] < part.shape[0]) for p in face.keypoints]
    err = np.linalg.norm(got - face.keypoints, axis=1)[inside] / face.size
    assert inside.count(True) >= 2 and err.max() < 0.08, f"cut {side}: key points off by {np.round(err, 3)}"


# -- large images -------------------------------------------------------------------------
def test_4x_upscaled_group_maps_back_to_the_original(fuser, group_path):
    img = read_image(group_path)  # 710 x 473
    big = cv2.resize(img, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 2840 x 1892
    small_faces, big_faces = fuser.detect(img).faces, fuser.detect(big).faces
    assert len(big_faces) == len(small_faces) >= 5
    for f in small_faces:
        g = max(big_faces, key=lambda g: _iou(np.array(g.box) / 4, f.box))
        box_err = np.abs(np.array(g.box) / 4 - np.array(f.box)).max() / f.size
        kp_err = np.linalg.norm(g.keypoints / 4 - f.keypoints, axis=1).max() / f.size
        assert box_err < 0.04, f"box {f.box} vs {np.round(np.array(g.box) / 4, 1)} (/4): {box_err:.1%} of the face"
        assert kp_err < 0.05, f"key points off by {kp_err:.1%} of the face"
        assert g.size / f.size == pytest.approx(4.0, rel=0.04)


@pytest.mark.slow
def test_40_px_face_in_a_36_mpx_photo(fuser, data_dir):
    """A portrait shrunk until its face is 40 px wide, pasted into the dogs photo enlarged to
    7360 x 4912: on the 1280-px copy the face is 7 px, so only the full-resolution tiles can
    find it; the dogs stay not-faces at that zoom too."""
    portrait = read_image(data_dir / "deepface_img2.jpg")
    (face,) = fuser.detect(portrait).faces
    photo, box = small_face_scene(portrait, face.box, read_image(data_dir / "dlib_dogs.jpg"),
                                  (7360, 4912), 40, (0.37, 0.61))
    det = fuser.detect(photo)
    assert "full-res tiles" in " ".join(det.passes)
    assert len(det.faces) == 1, f"{len(det.faces)} faces: {[f.to_dict() for f in det.faces]}"
    found = det.faces[0]
    assert abs((found.box[0] + found.box[2]) / 2 - (box[0] + box[2]) / 2) < 10
    assert abs((found.box[1] + found.box[3]) / 2 - (box[1] + box[3]) / 2) < 10
    assert 30 < found.size < 60
    # the whole-frame and copy-tile passes alone do not see it
    fuser.detector.min_face_px, saved = 0, fuser.detector.min_face_px
    try:
        assert fuser.detect(photo).faces == []
    finally:
        fuser.detector.min_face_px = saved


# -- facefuse detect --json ---------------------------------------------------------------
FACE_KEYS = {"index", "box", "score", "size_px", "keypoints"}
IMAGE_KEYS = {"image", "width", "height", "seconds", "seconds_per_mpx", "faces", "dropped", "passes"}


def _check_image_entry(entry: dict, path, shape) -> None:
    assert set(entry) >= IMAGE_KEYS, set(entry)
    assert entry["image"] == str(path)
    assert (entry["height"], entry["width"]) == shape[:2]
    assert isinstance(entry["seconds"], (int, float)) and entry["seconds"] >= 0
    mpx = shape[0] * shape[1] / 1e6
    assert entry["seconds_per_mpx"] == pytest.approx(entry["seconds"] / mpx, rel=0.01, abs=2e-4)
    assert isinstance(entry["passes"], list) and entry["passes"] and all(isinstance(p, str) for p in entry["passes"])
    assert [f["index"] for f in entry["faces"]] == list(range(len(entry["faces"])))
    for f in entry["faces"]:
        assert set(f) == FACE_KEYS, set(f)
        x0, y0, x1, y1 = f["box"]
        assert x0 < x1 and y0 < y1
        assert 0 <= f["score"] <= 1
        assert f["size_px"] == pytest.approx(((x1 - x0) * (y1 - y0)) ** 0.5, abs=0.2)
        kp = np.array(f["keypoints"], float)
        assert kp.shape == (5, 2)
        assert (kp[:, 0] > x0 - 0.1 * f["size_px"]).all() and (kp[:, 0] < x1 + 0.1 * f["size_px"]).all()
    sizes = [f["size_px"] for f in entry["faces"]]
    assert sizes == sorted(sizes, reverse=True) or max(a - b for a, b in zip(sizes[1:], sizes, strict=False)) < 1
    for d in entry["dropped"]:
        assert isinstance(d["reason"], str) and d["reason"]
        assert len(d["box"]) == 4 and all(isinstance(v, (int, float)) for v in d["box"])


def test_detect_json_schema(tmp_path, upright, group_path, noface_path, capsys):
    img, face = upright
    # the portrait with its lower face cut off: a candidate the mesh may reject, whose
    # drop reason must reach the JSON like any other entry
    cut = tmp_path / "cut_top.png"
    Image.fromarray(np.ascontiguousarray(img[int(face.box[1] + 0.4 * face.height):])).save(cut)
    paths = [group_path, cut, noface_path]
    assert main(["detect", *map(str, paths), "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 3
    for entry, p in zip(data, paths, strict=True):
        _check_image_entry(entry, p, read_image(p).shape)
    assert len(data[0]["faces"]) >= GROUPS["faceapi_bbt4.jpg"] - GROUP_TOLERANCE
    assert data[2]["faces"] == []
    # one image: one object, not a list
    assert main(["detect", str(group_path), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert isinstance(single, dict) and single["faces"] == data[0]["faces"]


def test_bench_large_photo_scenes_find_the_small_face(fuser, data_dir, monkeypatch):
    """`bench detect`'s built large photos (here one 3000 x 2000 scene, to stay quick)."""
    from facefuse.bench import detect as detect_eval

    monkeypatch.setattr(detect_eval, "LARGE_SCENES", ((3000, 2000),))
    rows = [{"file": "skimage_chelsea.png", "n_faces": 0, "kinds": ["none"]},
            {"file": "deepface_img2.jpg", "n_faces": 1, "kinds": ["single"]}]
    (row,) = detect_eval.evaluate_large(rows, data_dir, fuser.detector, 0.6, 100_000_000)
    assert row["size"] == "3000x2000" and row["background"] == "skimage_chelsea.png"
    assert row["found"] and 30 < row["found_size_px"] < 60 and row["other_faces"] == 0
    assert row["seconds_per_mpx"] == pytest.approx(row["seconds"] / 6.0, rel=0.05)
    assert any(p.startswith("full-res tiles") for p in row["passes"])


def test_one_thread_means_one_detector_graph(data_dir):
    """`inference.threads: 1` (what batch gives each worker): the full-res tiles run on the
    detector's own graph, no second one is started, and the face is found all the same."""
    from facefuse.config import Settings
    from facefuse.detect import FaceDetector

    settings = Settings()
    settings.inference.threads = 1
    detector = FaceDetector.from_settings(settings)
    try:
        portrait = read_image(data_dir / "deepface_img2.jpg")
        (face,) = detector.detect(portrait).faces
        photo, box = small_face_scene(portrait, face.box, read_image(data_dir / "skimage_chelsea.png"),
                                      (3000, 2000), 40, (0.3, 0.7))
        det = detector.detect(photo)
        assert any(p.startswith("full-res tiles") for p in det.passes)
        assert len(det.faces) == 1 and detector._helpers == []
    finally:
        detector.close()


def test_detect_text_lists_box_size_score_and_key_points(group_path, noface_path, capsys):
    assert main(["detect", str(group_path), str(noface_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{group_path}: ") and "face(s)" in out[0] and "s/Mpx" in out[0]
    rows = [ln for ln in out if ln.startswith("  [")]
    assert len(rows) >= GROUPS["faceapi_bbt4.jpg"] - GROUP_TOLERANCE
    for k, ln in enumerate(rows):
        assert ln.startswith(f"  [{k}] box=(") and "size=" in ln and "score=" in ln
        assert ln.split("keypoints=")[1].count("(") == 5
    assert out[-1].startswith(f"{noface_path}: 0 face(s)")


def test_detect_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"hello")
    assert main(["detect", str(bad), "--json"]) == 3
    err = capsys.readouterr().err.strip()
    assert "not_an_image.jpg" in err and "\n" not in err and "Traceback" not in err


# -- facefuse bench detect ----------------------------------------------------------------
def _catalog(path, rows) -> None:
    lines = ["# test catalog", "file\tidentity\tn_faces\twidth\theight\tbytes\tsource\tlicense\tnotes"]
    lines += [f"{f}\tx\t{n}\t0\t0\t0\tsrc\tMIT\t{notes}" for f, n, notes in rows]
    path.write_text("\n".join(lines) + "\n")


def test_bench_detect_counts_and_json(tmp_path, data_dir, capsys):
    cat = tmp_path / "catalog.tsv"
    _catalog(cat, [("faceapi_bbt4.jpg", 6, "max_face_px=110"), ("faceapi_bbt3.jpg", 5, "max_face_px=60"),
                   ("skimage_chelsea.png", 0, "cat"), ("fr_obama_partial_face.jpg", 1, "max_face_px=300"),
                   ("missing.jpg", 1, "")])
    out_json = tmp_path / "d.json"
    assert main(["bench", "detect", "--catalog", str(cat), "--images-dir", str(data_dir), "--json", str(out_json),
                 "--no-large", "--goals"]) == 0
    md = capsys.readouterr().out
    assert "## Detection" in md and "| goal |" in md and "missing.jpg" in md
    rep = json.loads(out_json.read_text())
    rows = {r["file"]: r for r in rep["images"]}
    assert set(rows) == {"faceapi_bbt4.jpg", "faceapi_bbt3.jpg", "skimage_chelsea.png", "fr_obama_partial_face.jpg",
                         "missing.jpg"}
    for r in rows.values():
        assert {"file", "n_faces", "found", "dropped", "passes", "seconds"} <= set(r)
    assert "error" in rows["missing.jpg"] and rows["missing.jpg"]["found"] == 0
    assert rows["skimage_chelsea.png"]["kinds"] == ["none"]
    assert rows["faceapi_bbt3.jpg"]["kinds"] == ["group", "small"]
    s = rep["summary"]
    assert s["all"]["images"] == 5 and s["all"]["faces_counted"] == 13
    hit = sum(min(r["found"], r["n_faces"]) for r in rows.values())
    assert s["all"]["faces_found"] == hit and s["all"]["recall"] == pytest.approx(hit / 13)
    assert s["group"]["images"] == 2 and s["group"]["faces_counted"] == 11
    assert s["single"]["images"] == 2 and s["none"]["images"] == 1 and s["small"]["images"] == 1
    assert s["none"]["false_faces"] == rows["skimage_chelsea.png"]["found"]
    assert s["all"]["errors"] == 1
    assert rows["faceapi_bbt4.jpg"]["seconds"] > 0 and s["all"]["seconds"]["max"] >= s["all"]["seconds"]["median"]
    assert {g["what"].split(" (")[0] for g in rep["goals"]} >= {"single-portrait faces found", "group-photo faces found"}
    assert rep["large"] == [] and rep["settings"]["min_face_px"] == 40


@pytest.mark.parametrize("text,fragment", [(None, "catalog not found"), ("file\tnotes\na.jpg\tx\n", "n_faces"),
                                           ("file\tn_faces\na.jpg\tmany\n", "not a number")])
def test_bench_detect_bad_catalog_is_one_line(tmp_path, capsys, text, fragment):
    cat = tmp_path / "catalog.tsv"
    if text is not None:
        cat.write_text(text)
    assert main(["bench", "detect", "--catalog", str(cat)]) == 3
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


def test_detection_without_tiles_skips_them_and_keeps_the_large_faces(fuser, data_dir):
    """tiles=False (a video's routine re-detection) runs no tile pass: on a crowd photo it
    finds the large faces that the frame pass finds, and not the small ones that only the
    tiles find."""
    img = read_image(data_dir / "insightface_t1.jpg")
    full, quick = fuser.detector.detect(img), fuser.detector.detect(img, tiles=False)
    assert any(p.startswith("tiles") for p in full.passes)
    assert not any(p.startswith("tiles") for p in quick.passes)
    assert 0 < len(quick.faces) < len(full.faces)
    for face in quick.faces:  # each one is among the thorough detection's faces
        assert min(np.abs(np.float32(face.box) - np.float32(f.box)).max() for f in full.faces) < 0.1 * face.width
