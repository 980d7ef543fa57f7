"""The command line end to end: outputs, every exit code, one-line errors, no damage.

In this process (`main()`, output captured), except one real process: the smoke test
below, which also sees what a user's terminal would (no library noise on stderr)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from facefuse.cli import main
from facefuse.errors import InputError
from facefuse.io import decode_image, read_image


def test_fuse_writes_output_and_report(tmp_path, source_path, target_path):
    """The subprocess smoke test: `python -m facefuse` as a user runs it."""
    out, report = tmp_path / "out.jpg", tmp_path / "r.json"
    src_before, tgt_before = source_path.read_bytes(), target_path.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "facefuse", "fuse", str(source_path), str(target_path), "-o", str(out),
                           "--report", str(report), "--resolution", "1024"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # no library noise on stderr
    img = read_image(out)
    assert max(img.shape[:2]) == 1024
    rep = json.loads(report.read_text())
    assert rep["faces_fused"][0]["index"] == 0 and rep["output_size"] == [1024, 683]
    assert {"decode", "detect", "engine", "blend", "encode", "model_load"} <= set(rep["timings_s"])
    assert source_path.read_bytes() == src_before and target_path.read_bytes() == tgt_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "r.json"]


def test_no_face_exit_4_says_which(tmp_path, source_path, noface_path, run_cli):
    proc = run_cli("fuse", source_path, noface_path, "-o", tmp_path / "o.jpg")
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1 and "target" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("fuse", noface_path, source_path, "-o", tmp_path / "o.jpg")
    assert proc.returncode == 4 and "source" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing partial left


@pytest.mark.parametrize("extra, code", [
    (["--ratio", "1.5"], 2),
    (["--mode", "sideways"], 2),
    (["--resolution", "99999"], 2),
    (["--no-such-flag"], 2),
    (["--quality", "0"], 2),
])
def test_usage_errors_exit_2(tmp_path, source_path, target_path, extra, code, capsys):
    rc = main(["fuse", str(source_path), str(target_path), "-o", str(tmp_path / "o.jpg"), *extra])
    assert rc == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err and "Traceback" not in err
    assert "Input should be" not in err and "Value error" not in err  # no pydantic wording
    assert not (tmp_path / "o.jpg").exists()


def test_bad_inputs_exit_3(tmp_path, source_path, target_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes(target_path.read_bytes()[:20000])
    cases = [tmp_path / "missing.jpg", text, truncated]
    for bad in cases:
        rc = main(["fuse", str(source_path), str(bad), "-o", str(tmp_path / "o.jpg")])
        err = capsys.readouterr().err
        assert rc == 3, err
        assert err.count("\n") == 1 and "target" in err
    assert truncated.read_bytes() == target_path.read_bytes()[:20000]


def test_pixel_limit_exit_3(tmp_path, source_path, target_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("output:\n  max_pixels: 1000000\n")
    rc = main(["fuse", str(source_path), str(target_path), "-o", str(tmp_path / "o.jpg"), "--config", str(cfg)])
    assert rc == 3 and "over the limit" in capsys.readouterr().err


def test_existing_output_refused_then_overwritten(tmp_path, source_path, target_path, capsys):
    out = tmp_path / "o.png"
    out.write_bytes(b"precious")
    assert main(["fuse", str(source_path), str(target_path), "-o", str(out)]) == 3
    assert out.read_bytes() == b"precious"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["fuse", str(source_path), str(target_path), "-o", str(out), "--overwrite"]) == 0
    assert read_image(out).shape == (800, 1200, 3)


def test_bad_output_suffix_exit_3(tmp_path, source_path, target_path, capsys):
    assert main(["fuse", str(source_path), str(target_path), "-o", str(tmp_path / "o.gif")]) == 3


def test_group_face_index_and_all_faces(tmp_path, source_path, group_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["fuse", str(source_path), str(group_path), "-o", str(a), "--face-index", "1"]) == 0
    assert main(["fuse", str(source_path), str(group_path), "-o", str(b), "--all-faces"]) == 0
    target = read_image(group_path)
    def changed(p):
        return (np.abs(read_image(p).astype(int) - target).max(axis=2) > 10).mean()
    assert 0 < changed(a) < changed(b)


def test_exif_rotated_target_gives_upright_output(tmp_path, source_path, target_path):
    pil = Image.open(target_path)
    exif = pil.getexif()
    exif[0x0112] = 8  # to be rotated 90 degrees counter-clockwise for display
    rotated = tmp_path / "rot.jpg"
    pil.transpose(Image.Transpose.ROTATE_270).save(rotated, exif=exif.tobytes(), quality=95)
    out = tmp_path / "o.jpg"
    assert main(["fuse", str(source_path), str(rotated), "-o", str(out)]) == 0
    assert read_image(out).shape[:2] == (800, 1200)  # upright, like the photo is meant to be seen


def test_png_alpha_kept_for_png_output(tmp_path, source_path, data_dir):
    target = data_dir / "fr_alex_lacamoire.png"
    out = tmp_path / "o.png"
    assert main(["fuse", str(source_path), str(target), "-o", str(out)]) == 0
    assert np.array_equal(decode_image(out).alpha, decode_image(target).alpha)


def test_sixteen_bit_and_grey_targets(tmp_path, source_path, target_path):
    grey = np.asarray(Image.open(target_path).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "t16.png")
    Image.fromarray(grey).save(tmp_path / "grey.jpg", quality=95)
    for name in ("t16.png", "grey.jpg"):
        out = tmp_path / f"o-{name}.png"
        assert main(["fuse", str(source_path), str(tmp_path / name), "-o", str(out)]) == 0
        img = read_image(out)
        assert img.shape == (800, 1200, 3)
        assert np.abs(img[..., 0].astype(int) - img[..., 2]).max() <= 2  # a grey photo stays grey


def test_detect_json_and_draw(tmp_path, group_path, noface_path, capsys):
    draw = tmp_path / "boxes.png"
    assert main(["detect", str(group_path), "--json", "--draw", str(draw)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["faces"]) >= 5 and data["faces"][0]["index"] == 0
    assert {"box", "score", "keypoints", "size_px"} <= set(data["faces"][0])
    assert read_image(draw).shape == read_image(group_path).shape
    assert main(["detect", str(noface_path), "--json"]) == 0  # nothing found is not an error
    assert json.loads(capsys.readouterr().out)["faces"] == []


def test_debug_shows_traceback(tmp_path, source_path):
    """--debug lets the error through, so Python prints its traceback."""
    with pytest.raises(InputError, match="missing.jpg"):
        main(["fuse", str(source_path), str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o.jpg"), "--debug"])


def test_missing_output_folder_fails_before_any_work(tmp_path, source_path, target_path, capsys):
    out = tmp_path / "o.jpg"
    assert main(["fuse", str(source_path), str(target_path), "-o", str(tmp_path / "nodir" / "o.jpg")]) == 3
    assert main(["fuse", str(source_path), str(target_path), "-o", str(out), "--report", str(tmp_path / "nodir" / "r.json")]) == 3
    assert "output folder does not exist" in capsys.readouterr().err
    assert not out.exists()  # the image is not written when its report cannot be


def test_fuse_map_fuses_only_the_mapped_faces_each_from_its_photo(tmp_path, group_path, data_dir, source_path,
                                                                   fuser, capsys):
    faces = fuser.detect(read_image(group_path)).faces
    out, report = tmp_path / "mapped.png", tmp_path / "r.json"
    argv = ["fuse", "-", str(group_path), "-o", str(out), "--report", str(report),
            "--map", f"1={data_dir / 'deepface_img2.jpg'}, 2={source_path}"]
    assert main(argv) == 0, capsys.readouterr().err
    rep = json.loads(report.read_text())
    assert [f["index"] for f in rep["faces_fused"]] == [1, 2] and set(rep["map"]) == {"1", "2"}
    target = read_image(group_path)
    changed = np.abs(read_image(out).astype(int) - target).max(axis=2) > 30

    def share(index):  # of the changed pixels, those in this face's box
        x0, y0, x1, y1 = (int(v) for v in faces[index].box)
        return changed[max(y0, 0):y1, max(x0, 0):x1].sum() / changed.sum()

    assert share(1) > 0.2 and share(2) > 0.2 and share(0) < 0.02  # face 0 is not mapped: left as it was
    # one face from another photo gives a different face there
    other = tmp_path / "other.png"
    assert main(["fuse", "-", str(group_path), "-o", str(other), "--map", f"1={source_path}"]) == 0
    x0, y0, x1, y1 = (int(v) for v in faces[1].box)
    a, b = read_image(out)[y0:y1, x0:x1].astype(int), read_image(other)[y0:y1, x0:x1].astype(int)
    assert np.abs(a - b).mean() > 3


@pytest.mark.parametrize("extra, code", [
    (["--map", "one=a.jpg"], 2),  # not INDEX=PHOTO
    (["--map", "0=a.jpg,0=b.jpg"], 2),  # mapped twice
    ([], 2),  # SOURCE '-' without --map
    (["--map", "0=missing.jpg"], 3),  # a mapped photo that does not exist
    (["--map", "40=SRC"], 4),  # a face the target does not have
])
def test_fuse_map_errors(tmp_path, source_path, target_path, extra, code, capsys):
    extra = [e.replace("SRC", str(source_path)) for e in extra]
    out = tmp_path / "o.jpg"
    assert main(["fuse", "-", str(target_path), "-o", str(out), *extra]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facefuse: error:")
    assert not out.exists()
