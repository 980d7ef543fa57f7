"""`facefuse batch`: folder and CSV planning, reports, exit codes, kill -9 + resume, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefuse.batch import plan_folder, plan_pairs
from facefuse.cli import main
from facefuse.errors import InputError


def report_lines(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "report.jsonl").read_text().splitlines()]


def records(outdir: Path) -> dict[str, dict]:
    """input -> the latest per-file record."""
    return {r["input"]: r for r in report_lines(outdir) if r["status"] != "summary"}


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


@pytest.fixture
def folder(tmp_path, target_path, data_dir, noface_path) -> Path:
    """Two portraits (one in a subfolder), a cat, a text file and a hidden image."""
    t = tmp_path / "targets"
    (t / "sub").mkdir(parents=True)
    shutil.copy(target_path, t / "a.jpg")
    shutil.copy(data_dir / "deepface_img2.jpg", t / "sub" / "b.jpg")
    shutil.copy(noface_path, t / "cat.png")
    (t / "notes.txt").write_text("not an image")
    shutil.copy(target_path, t / ".hidden.jpg")
    return t


def test_folder_batch_mirrors_tree_reports_and_resumes(folder, tmp_path, source_path, capsys):
    out = tmp_path / "out"
    argv = ["batch", "--source", str(source_path), "--targets", str(folder), "-o", str(out), "--resolution", "256",
            "--workers", "1"]
    assert main(argv) == 4  # the cat has no face, nothing else failed
    assert (out / "a.jpg").is_file() and (out / "sub" / "b.jpg").is_file()
    for p in (out / "a.jpg", out / "sub" / "b.jpg"):
        with Image.open(p) as im:
            assert max(im.size) == 256
    assert not (out / "cat.png").exists() and not (out / ".hidden.jpg").exists() and not (out / "notes.txt").exists()
    recs = records(out)
    assert {Path(k).name: r["status"] for k, r in recs.items()} == {"a.jpg": "ok", "b.jpg": "ok", "cat.png": "failed"}
    assert "no face" in recs[str(folder / "cat.png")]["reason"]
    assert recs[str(folder / "a.jpg")]["faces"] == 1 and recs[str(folder / "a.jpg")]["seconds"] > 0
    summary = report_lines(out)[-1]
    assert summary["status"] == "summary" and (summary["ok"], summary["failed"], summary["no_face"]) == (2, 1, 1)
    assert "2 written" in capsys.readouterr().out

    # re-run with a damaged file added: done outputs are skipped untouched, the new failure is exit 3
    before = {p: stamp(p) for p in (out / "a.jpg", out / "sub" / "b.jpg")}
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert main(argv) == 3
    assert {p: stamp(p) for p in before} == before
    recs = records(out)
    assert recs[str(folder / "a.jpg")]["status"] == "skipped"
    assert recs[str(folder / "bad.jpg")]["status"] == "failed"
    assert "failed: " in capsys.readouterr().err
    assert [r["status"] for r in report_lines(out)].count("summary") == 2


def test_pairs_csv_relative_paths_and_outputs(tmp_path, source_path, target_path, data_dir, noface_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(source_path, inputs / "src.jpg")
    shutil.copy(target_path, inputs / "t1.jpg")
    shutil.copy(data_dir / "deepface_img2.jpg", inputs / "t2.jpg")
    csv_path = inputs / "pairs.csv"
    csv_path.write_text("source,target,output\n# a comment\nsrc.jpg,t1.jpg,deep/one.png\n\nsrc.jpg,t2.jpg\n"
                        f"{noface_path},t1.jpg,cat_source.jpg\n")
    out = tmp_path / "out"  # default workers: one process per core (2 on CI)
    assert main(["batch", "--pairs", str(csv_path), "-o", str(out), "--resolution", "256", "--format", "webp"]) == 4
    with Image.open(out / "deep" / "one.png") as im:
        assert im.format == "PNG"  # an explicit output's extension wins
    with Image.open(out / "t2_src.webp") as im:
        assert im.format == "WEBP" and max(im.size) == 256
    recs = [r for r in report_lines(out) if r["status"] != "summary"]
    assert [r["status"] for r in recs].count("ok") == 2
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == f"source {noface_path}: no face found"
    assert not (out / "cat_source.jpg").exists()


@pytest.mark.parametrize("output", ["../escape.jpg", "a/../../escape.jpg", "/tmp/facefuse-escape.jpg", "noext"])
def test_pairs_refuse_outputs_outside_outdir(tmp_path, source_path, target_path, output, capsys):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"{source_path},{target_path},{output}\n")
    out = tmp_path / "out"
    assert main(["batch", "--pairs", str(csv_path), "-o", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("facefuse: error:") and "pairs.csv:1" in err and len(err.splitlines()) == 1
    assert not out.exists() and not Path("/tmp/facefuse-escape.jpg").exists()


def test_planning_refuses_collisions_and_skips_outdir_inside_targets(tmp_path, target_path, source_path):
    t = tmp_path / "t"
    t.mkdir()
    shutil.copy(target_path, t / "a.jpg")
    Image.open(target_path).save(t / "a.bmp")
    with pytest.raises(InputError, match="would both write"):
        plan_folder(source_path, t, tmp_path / "out", None)
    with pytest.raises(InputError, match="must not be the --targets folder"):
        plan_folder(source_path, t, t, "png")
    (t / "a.bmp").unlink()
    inner = t / "fused"
    inner.mkdir()
    shutil.copy(target_path, inner / "old.jpg")  # a previous run's output must not become a target
    jobs = plan_folder(source_path, t, inner, "png")
    assert [j.target.name for j in jobs] == ["a.jpg"] and jobs[0].output == inner / "a.png"
    (tmp_path / "two.csv").write_text(f"{source_path},{target_path},x.jpg\n{source_path},{target_path},x.jpg\n")
    with pytest.raises(InputError, match="would both write"):
        plan_pairs(tmp_path / "two.csv", tmp_path / "out", None)


def test_bad_options_fail_before_any_work(tmp_path, source_path, folder, capsys):
    out = tmp_path / "out"
    base = ["batch", "--source", str(source_path), "--targets", str(folder), "-o", str(out)]
    assert main(base + ["--ratio", "5"]) == 2
    assert main(base + ["--workers", "0"]) == 2
    assert main(base + ["--engine", "nope"]) == 2
    assert main(["batch", "--source", str(tmp_path / "missing.jpg"), "--targets", str(folder), "-o", str(out)]) == 3
    assert not out.exists()
    assert all(line.startswith("facefuse: error:") for line in capsys.readouterr().err.splitlines())


def test_one_batch_per_output_folder(tmp_path, source_path, folder, capsys):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".facefuse-batch.lock", "w") as held:  # as a running batch holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["batch", "--source", str(source_path), "--targets", str(folder), "-o", str(out)]) == 3
    assert "another batch is writing" in capsys.readouterr().err
    assert not (out / "a.jpg").exists()


def test_missing_ray_is_one_line_and_exit_2(monkeypatch, tmp_path, source_path, folder, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "out"
    argv = ["batch", "--source", str(source_path), "--targets", str(folder), "-o", str(out), "--ray", "local"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'facefuse[ray]'" in err[0]
    assert not out.exists()


def _session_processes(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def test_kill_9_loses_only_in_flight_work_and_resume_redoes_nothing(tmp_path, source_path, target_path):
    targets = tmp_path / "many"
    targets.mkdir()
    n = 16
    for i in range(n):
        shutil.copy(target_path, targets / f"t{i:02d}.jpg")
    out = tmp_path / "out"
    argv = ["batch", "--source", str(source_path), "--targets", str(targets), "-o", str(out), "--resolution", "512"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cli = "import sys; from facefuse.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", cli, *argv, "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    report = out / "report.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if report.exists() and report.read_text().count('"ok"') >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(out.glob("*.jpg"))
    assert 3 <= len(done) < n, "the batch was not killed mid-way"
    assert all(decodes(p) for p in done)  # never a damaged output
    reported = [Path(r["output"]) for r in report_lines(out) if r["status"] == "ok"]
    assert reported and all(p.is_file() for p in reported)  # the killed run kept its report
    stamps = {p: stamp(p) for p in done}
    for _ in range(50):  # pool workers notice their parent died and exit
        if not _session_processes(proc.pid):
            break
        time.sleep(0.1)
    assert not _session_processes(proc.pid)

    # as a kill mid-write leaves: named after the output and the dead writer's pid
    (out / f".t{n - 1:02d}.jpg.{proc.pid}.k1ll3d00.tmp").write_bytes(b"half an image")
    (out / ".notes.tmp").write_text("not ours")
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"t{i:02d}.jpg" for i in range(n)]
    assert all(decodes(p) for p in out.glob("*.jpg"))
    assert {p: stamp(p) for p in done} == stamps  # nothing done before was redone
    assert [p.name for p in out.glob(".*.tmp")] == [".notes.tmp"]  # stale temps removed, others kept
    summary = report_lines(out)[-1]
    assert summary["skipped"] == len(done) and summary["ok"] == n - len(done) and summary["failed"] == 0


def test_ray_local_runs_the_same_batch(tmp_path, source_path, target_path, data_dir, noface_path):
    pytest.importorskip("ray")
    t = tmp_path / "t"
    t.mkdir()
    shutil.copy(target_path, t / "a.jpg")
    shutil.copy(data_dir / "deepface_img2.jpg", t / "b.jpg")
    shutil.copy(noface_path, t / "c.png")
    out = tmp_path / "out"
    rc = main(["batch", "--source", str(source_path), "--targets", str(t), "-o", str(out), "--resolution", "256",
               "--ray", "local", "--workers", "2"])
    assert rc == 4
    assert decodes(out / "a.jpg") and decodes(out / "b.jpg") and not (out / "c.png").exists()
    statuses = {Path(k).name: r["status"] for k, r in records(out).items()}
    assert statuses == {"a.jpg": "ok", "b.jpg": "ok", "c.png": "failed"}


def test_workers_decode_a_jpeg_target_at_the_scale_the_output_needs(monkeypatch, source_path, target_path):
    import facefuse.pipeline
    from facefuse.batch import FuserWorker
    from facefuse.config import Settings

    seen = []
    real = facefuse.pipeline.decode_image

    def spy(*args, **kwargs):
        seen.append(kwargs.get("reduce_to"))
        return real(*args, **kwargs)

    monkeypatch.setattr(facefuse.pipeline, "decode_image", spy)
    settings = Settings()
    worker = FuserWorker(settings, settings.fusion_params(resolution=512), 90)
    res = worker.run(0, str(source_path), str(source_path), target_path.read_bytes(), "t.jpg", "JPEG")
    assert res["status"] == "ok" and res["faces"] == 1
    assert seen[-1] == 1280  # the target: max(output 512, detection's 1280)


def test_batch_map_fuses_the_mapped_faces_of_every_target(tmp_path, group_path, data_dir, source_path, capsys,
                                                          monkeypatch):
    """--map (paths relative to the working folder) instead of --source, the same for every target."""
    from facefuse.io import read_image
    from facefuse.pipeline import Fuser

    t = tmp_path / "t"
    t.mkdir()
    shutil.copy(group_path, t / "g1.jpg")
    shutil.copy(group_path, t / "g2.png")
    shutil.copy(data_dir / "deepface_img2.jpg", tmp_path / "alice.jpg")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["batch", "--targets", "t", "-o", "out", "--map", "1=alice.jpg", "--workers", "1",
                 "--format", "png"]) == 0, capsys.readouterr().err
    fuser = Fuser()
    expected = fuser.fuse_detailed(None, group_path, fuser.params(), sources={1: tmp_path / "alice.jpg"}).image
    for name in ("g1.png", "g2.png"):
        assert np.abs(read_image(out / name).astype(int) - expected.astype(int)).mean() < 1.0
        assert records(out)[str(Path("t") / name.replace("g1.png", "g1.jpg"))]["faces"] == 1
    # the errors: one line, exit 2 or 3, nothing written
    for argv, code in ((["--map", "1=alice.jpg", "--source", str(source_path)], 2),  # both
                       (["--map", "1=missing.jpg"], 3),
                       (["--map", "x=alice.jpg"], 2)):
        assert main(["batch", "--targets", "t", "-o", "out2", *argv]) == code
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert not (tmp_path / "out2").exists()


def test_batch_map_with_a_process_pool(tmp_path, group_path, data_dir, monkeypatch, capsys):
    t = tmp_path / "t"
    t.mkdir()
    for k in range(2):
        shutil.copy(group_path, t / f"g{k}.jpg")
    out = tmp_path / "out"
    assert main(["batch", "--targets", str(t), "-o", str(out), "--resolution", "512", "--workers", "2",
                 "--map", f"0={data_dir / 'deepface_img2.jpg'},2={data_dir / 'deepface_img2.jpg'}"]) == 0
    assert {r["faces"] for r in records(out).values()} == {2}
