"""Faults an operator meets: a full disk and `kill -9` in the middle of a write, for `fuse`,
`video`, `batch`, REST /fuse and REST video jobs (submit and run).

What must hold: the documented error (exit 3 and one line, "no space left on the output's
disk"; HTTP 507 `no_space`), no job slot lost, and nothing partial left once the next run
(or the next start) has been. The faults come from tests/faults.py.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import faults  # noqa: E402
import video_clips as vc  # noqa: E402
from facefuse.cli import main  # noqa: E402
from facefuse.config import Settings  # noqa: E402
from servers import wait_for_job  # noqa: E402

TestClient = pytest.importorskip("fastapi.testclient").TestClient
NO_SPACE_LINE = re.compile(r"^facefuse: error: .*: no space left on the output's disk$")
FULL_DISK = [
    "injected",
    pytest.param("tmpfs", marks=pytest.mark.skipif(not faults.can_mount_tmpfs(),
                                                   reason="this machine does not let a test mount a tmpfs")),
]

pytestmark = pytest.mark.slow  # new processes, tmpfs mounts and kill -9: the slow tier


@pytest.fixture(scope="module")
def clip(tmp_path_factory, target_path) -> Path:
    """Two seconds of a panning crop of a real portrait (long enough to kill mid-write)."""
    path = tmp_path_factory.mktemp("clips") / "pan.mp4"
    return vc.write_clip(path, vc.pan_frames(target_path, 50, (240, 160)), fps=25)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("facefuse:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def fuse_on_full_disk(how, monkeypatch, capsys, out_dir: Path, argv: list[str]) -> tuple[int, str, list[str]]:
    """Run `facefuse ARGV` with `out_dir` on a full disk: (exit code, its error line, what
    is left in out_dir)."""
    if how == "tmpfs":
        listing = out_dir.parent / f"{out_dir.name}.left"
        proc = faults.run_cli_on_tmpfs(out_dir, argv, listing)
        return proc.returncode, one_error_line(proc.stderr), listing.read_text().split()
    with faults.injected_full_disk(monkeypatch):
        code = main(argv)
    err = capsys.readouterr().err
    return code, one_error_line(err), sorted(p.name for p in out_dir.iterdir())


# -- a full disk ---------------------------------------------------------------------------------
@pytest.mark.parametrize("how", FULL_DISK)
def test_fuse_on_a_full_disk_is_exit_3_with_one_line_and_leaves_nothing(how, tmp_path, source_path, target_path,
                                                                         monkeypatch, capsys):
    out_dir = tmp_path / "full"
    out_dir.mkdir()
    argv = ["fuse", str(source_path), str(target_path), str(out_dir / "out.jpg"), "--resolution", "512"]
    code, line, left = fuse_on_full_disk(how, monkeypatch, capsys, out_dir, argv)
    assert code == 3 and NO_SPACE_LINE.match(line), line
    assert left == []  # no output, no temp file
    if how == "injected":  # space again: the same command works
        assert main(argv) == 0 and (out_dir / "out.jpg").is_file() and faults.temps_in(out_dir) == []


@pytest.mark.parametrize("how", FULL_DISK)
def test_video_on_a_full_disk_is_exit_3_with_one_line_and_leaves_nothing(how, tmp_path, source_path, clip,
                                                                          monkeypatch, capsys):
    out_dir = tmp_path / "full"
    out_dir.mkdir()
    argv = ["video", str(source_path), str(clip), "-o", str(out_dir / "out.mp4")]
    code, line, left = fuse_on_full_disk(how, monkeypatch, capsys, out_dir, argv)
    assert code == 3 and NO_SPACE_LINE.match(line), line
    assert left == []  # no output, no .part


@pytest.mark.parametrize("how", FULL_DISK)
def test_batch_on_a_full_disk_is_exit_3_reports_why_and_the_rerun_completes(how, tmp_path, source_path, target_path,
                                                                             monkeypatch, capsys):
    targets = tmp_path / "targets"
    targets.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (targets / name).write_bytes(target_path.read_bytes())
    out_dir = tmp_path / "full"
    argv = ["batch", "--source", str(source_path), "--targets", str(targets), "-o", str(out_dir),
            "--resolution", "512", "--workers", "1"]
    if how == "tmpfs":
        listing = tmp_path / "left"
        proc = faults.run_cli_on_tmpfs(out_dir, argv, listing)
        code, err, left = proc.returncode, proc.stderr, listing.read_text().split()
    else:
        out_dir.mkdir()
        with faults.injected_full_disk(monkeypatch):
            code = main(argv)
        err, left = capsys.readouterr().err, sorted(p.name for p in out_dir.iterdir())
    assert code == 3, err
    assert err.count("no space left on the output's disk") == 2 and "Traceback" not in err
    assert left == ["report.jsonl"]  # no output, no temp file, the lock file gone
    if how == "injected":
        assert main(argv) == 0 and sorted(p.name for p in out_dir.glob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_batch_whose_report_cannot_be_written_stops_with_exit_3_and_one_line(tmp_path, source_path, target_path,
                                                                             monkeypatch, capsys):
    import facefuse.batch as batch

    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "a.jpg").write_bytes(target_path.read_bytes())
    out_dir = tmp_path / "out"
    real = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("report.jsonl"):
            raise faults.no_space()
        return real(fd, data)

    monkeypatch.setattr(batch.os, "write", write)
    code = main(["batch", "--source", str(source_path), "--targets", str(targets), "-o", str(out_dir),
                 "--resolution", "512", "--workers", "1"])
    assert code == 3 and NO_SPACE_LINE.match(one_error_line(capsys.readouterr().err))
    assert not (out_dir / batch.LOCK_NAME).exists() and faults.temps_in(out_dir) == []


# -- the REST API on a full disk -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from facefuse.server import create_app
    from facefuse.service import FusionPool

    settings = Settings(output={"dir": str(tmp_path_factory.mktemp("out"))},
                        server={"workers": 1, "max_video_mb": 2, "max_video_jobs": 2})
    pool = FusionPool(settings)
    app = create_app(settings, pool=pool, webui=False)
    with TestClient(app) as client:
        yield client, app.state.jobs, pool
    pool.shutdown()


def _post_video(client, source_path, clip):
    files = {"source": ("s.jpg", source_path.read_bytes()), "video": ("clip.mp4", clip.read_bytes())}
    return client.post("/api/v1/video", files=files)


def test_rest_fuse_with_a_full_disk_is_507_and_the_next_request_works(server, source_path, target_path,
                                                                      monkeypatch):
    from starlette.datastructures import UploadFile

    client, _jobs, pool = server
    files = {"source": ("s.jpg", source_path.read_bytes()), "target": ("t.jpg", target_path.read_bytes())}

    async def full(self, data):  # the upload's spool file (a temp file past 1 MB) cannot grow
        raise faults.no_space()

    with monkeypatch.context() as m:
        m.setattr(UploadFile, "write", full)
        r = client.post("/api/v1/fuse", files=files, data={"resolution": "512"})
    assert r.status_code == 507 and r.json() == {"error": "no_space", "message": "no space left on the server's disk"}
    assert pool.status()["busy"] == 0 and pool.status()["queued"] == 0
    assert client.post("/api/v1/fuse", files=files, data={"resolution": "512"}).status_code == 200


def test_rest_video_submit_on_a_full_disk_is_507_and_loses_no_slot(server, source_path, clip, monkeypatch):
    client, jobs, _pool = server
    real = Path.write_bytes

    def full(self, data):  # the job's inputs cannot be written
        if self.parent.parent == jobs.folder:
            real(self, data[: len(data) // 2])
            raise faults.no_space()
        return real(self, data)

    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", full)
        answers = [_post_video(client, source_path, clip) for _ in range(jobs.max_active + 2)]
    assert [r.status_code for r in answers] == [507] * (jobs.max_active + 2)
    assert answers[0].json() == {"error": "no_space", "message": "no space left on the server's disk"}
    assert list(jobs.folder.iterdir()) == []  # no half-made job folder
    r = _post_video(client, source_path, clip)  # space again: every slot is there
    assert r.status_code == 202, r.text
    assert wait_for_job(client, r.json()["id"])["state"] == "done"


def test_rest_video_job_on_a_full_disk_fails_with_one_line_and_frees_its_slot(server, source_path, clip,
                                                                             monkeypatch):
    client, jobs, _pool = server
    with faults.injected_full_disk(monkeypatch, files=False):  # the state files are small: the clip fills the disk
        ids = [_post_video(client, source_path, clip).json()["id"] for _ in range(jobs.max_active)]
        states = [wait_for_job(client, job_id) for job_id in ids]
    for st in states:
        assert st["state"] == "failed" and st["error"].endswith("no space left on the output's disk"), st
    for job_id in ids:
        assert faults.temps_in(jobs.folder / job_id) == [] and not (jobs.folder / job_id / "fused.mp4").exists()
    r = _post_video(client, source_path, clip)
    assert r.status_code == 202, r.text  # the failed jobs hold no slot
    assert wait_for_job(client, r.json()["id"])["state"] == "done"


# -- kill -9 mid-write ---------------------------------------------------------------------------------
def test_kill_9_mid_write_of_fuse_leaves_a_temp_file_that_the_next_run_removes(tmp_path, source_path, target_path):
    out = tmp_path / "out.jpg"
    argv = ["fuse", str(source_path), str(target_path), str(out), "--resolution", "512"]
    held = tmp_path / "held"
    proc = faults.popen_cli(argv, faults.held_at_fsync(), {"FACEFUSE_TEST_HELD": str(held)})
    faults.kill_9_when(proc, held.exists)
    assert not out.exists() and len(faults.temps_in(tmp_path)) == 1  # what a kill -9 leaves
    assert main(argv) == 0  # the next run to the same output
    assert out.is_file() and faults.temps_in(tmp_path) == []


def test_kill_9_mid_write_of_video_leaves_a_part_file_that_the_next_run_removes(tmp_path, source_path, clip):
    out = tmp_path / "out.mp4"
    argv = ["video", str(source_path), str(clip), "-o", str(out)]
    proc = faults.popen_cli(argv)
    faults.kill_9_when(proc, lambda: any(p.stat().st_size > 0 for p in tmp_path.glob(".out.mp4.*.part")))
    assert not out.exists() and len(faults.temps_in(tmp_path)) == 1
    assert main(argv) == 0
    assert out.is_file() and faults.temps_in(tmp_path) == []


def test_kill_9_of_the_server_mid_job_the_next_start_fails_the_job_and_removes_its_part_file(tmp_path, source_path,
                                                                                           clip):
    import httpx

    from facefuse.api import _job_store
    from facefuse.jobs import FAILED

    out_dir = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text(f"output:\n  dir: {out_dir}\nserver:\n  workers: 1\n")
    proc = faults.popen_cli(["serve", "--no-webui", "--port", "0", "--config", str(config)])
    try:
        line = proc.stdout.readline()
        base = re.search(r"REST (http://127\.0\.0\.1:\d+)/api/v1", line)
        assert base, line
        files = {"source": ("s.jpg", source_path.read_bytes()), "video": ("clip.mp4", clip.read_bytes())}
        job_id = httpx.post(f"{base[1]}/api/v1/video", files=files, timeout=60).json()["id"]
    except BaseException:
        os.killpg(proc.pid, 9)
        raise
    folder = out_dir / "jobs" / job_id
    faults.kill_9_when(proc, lambda: any(p.stat().st_size > 0 for p in folder.glob(".fused.mp4.*.part")))
    # the output's .part (and, if the kill came while the job saved its progress, job.json's .tmp)
    assert [n for n in faults.temps_in(folder) if n.startswith(".fused.mp4.")], faults.temps_in(folder)

    class Pool:  # the next start's store, without loading models
        def submit(self, fn, *args, bounded=True):
            raise AssertionError("nothing runs here")

    store = _job_store(Settings(output={"dir": str(out_dir)}), Pool())
    state = store.status(job_id)
    assert state["state"] == FAILED and "restarted" in state["error"]
    assert faults.temps_in(folder) == []
