"""Background jobs (what the REST API's video endpoints run on): state, progress, result,
cancel, a bug or a restart in the middle, removal after a while, ids that name no path."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from facefuse.errors import NoFaceError
from facefuse.jobs import CANCELLED, DONE, FAILED, JobsBusy, JobStore, UnknownJob


@pytest.fixture()
def executor():
    ex = ThreadPoolExecutor(2)
    yield ex
    ex.shutdown(wait=True)


def store_in(folder, executor, **kw) -> JobStore:
    return JobStore(folder, lambda fn, *a: executor.submit(fn, "fuser", *a), **kw)


def wait_for(store, job_id, states, timeout=10):
    deadline = time.time() + timeout
    while (st := store.status(job_id))["state"] not in states:
        assert time.time() < deadline, st
        time.sleep(0.02)
    return st


def test_a_job_runs_reports_progress_and_keeps_its_result(tmp_path, executor):
    store = store_in(tmp_path, executor)
    seen = []

    def work(fuser, folder, progress):
        seen.append((fuser, (folder / "clip.mp4").read_bytes()))
        for i in range(1, 11):
            progress(i / 10)
        (folder / "out.mp4").write_bytes(b"fused")
        return "out.mp4", []

    job = store.create({"clip.mp4": b"input"}, work, meta={"video": "clip.mp4"})
    st = wait_for(store, job, (DONE,))
    assert st["progress"] == 1.0 and st["video"] == "clip.mp4" and st["has_result"]
    assert seen == [("fuser", b"input")]
    assert store.result(job).read_bytes() == b"fused"


def test_cancel_stops_a_running_job_and_removes_a_finished_one(tmp_path, executor):
    store = store_in(tmp_path, executor)
    started = threading.Event()

    def slow(fuser, folder, progress):
        started.set()
        for i in range(1000):
            progress(i / 1000)
            time.sleep(0.01)
        return "never.mp4", []

    job = store.create({}, slow)
    started.wait(5)
    store.cancel(job)
    st = wait_for(store, job, (CANCELLED,))
    assert st["progress"] < 1.0 and store.result(job) is None
    store.cancel(job)  # a finished job: removed with its folder
    assert not (tmp_path / job).exists()
    with pytest.raises(UnknownJob):
        store.status(job)


def test_errors_are_one_line_and_a_bug_does_not_stop_the_store(tmp_path, executor):
    store = store_in(tmp_path, executor)

    def no_face(fuser, folder, progress):
        raise NoFaceError("target", detail="no face in any frame")

    def bug(fuser, folder, progress):
        raise ZeroDivisionError("x")

    a, b = store.create({}, no_face), store.create({}, bug)
    sa, sb = wait_for(store, a, (FAILED,)), wait_for(store, b, (FAILED,))
    assert sa["error"] == "target: no face in any frame" and sa["which"] == "target"
    assert sb["error"] == "internal error (ZeroDivisionError)"


def test_a_restart_marks_unfinished_jobs_failed_and_removes_old_ones(tmp_path, executor):
    store = store_in(tmp_path, executor, keep_seconds=3600)
    done = store.create({}, lambda f, d, p: ((d / "o.mp4").write_bytes(b"1"), "o.mp4")[1:] + ([],))
    wait_for(store, done, (DONE,))
    # a job that was running when the process died, and a result from long ago
    (tmp_path / ("a" * 32)).mkdir()
    (tmp_path / ("a" * 32) / "job.json").write_text(json.dumps({"id": "a" * 32, "state": "running"}))
    (tmp_path / ("b" * 32)).mkdir()
    (tmp_path / ("b" * 32) / "job.json").write_text(json.dumps({"id": "b" * 32, "state": "done",
                                                                 "finished": time.time() - 7200}))
    again = store_in(tmp_path, executor, keep_seconds=3600)
    assert again.status("a" * 32)["state"] == FAILED and "restarted" in again.status("a" * 32)["error"]
    assert not (tmp_path / ("b" * 32)).exists()
    assert again.status(done)["state"] == DONE


@pytest.mark.parametrize("bad", ["../etc", "a" * 31, "A" * 32, "", "a" * 32 + "/x"])
def test_ids_from_requests_name_no_path(tmp_path, executor, bad):
    store = store_in(tmp_path, executor)
    with pytest.raises(UnknownJob):
        store.status(bad)
    with pytest.raises(UnknownJob):
        store.cancel(bad)


def test_too_many_unfinished_jobs_are_refused(tmp_path, executor):
    store = store_in(tmp_path, executor, max_active=1)
    gate = threading.Event()
    store.create({}, lambda f, d, p: (gate.wait(5), "x", [])[1:])
    with pytest.raises(JobsBusy):
        store.create({}, lambda f, d, p: ("x", []))
    gate.set()


def test_folders_without_a_state_file_are_removed_but_not_one_being_created(tmp_path, executor):
    store = store_in(tmp_path, executor)
    orphan = tmp_path / ("c" * 32)  # a process killed while it wrote a job's inputs
    orphan.mkdir()
    (orphan / "source").write_bytes(b"half a face")
    gate = threading.Event()
    job = store.create({}, lambda f, d, p: (gate.wait(5), "x", [])[1:])
    (tmp_path / job / "job.json").unlink()  # as if its state file were still to come
    store.clean()
    assert not orphan.exists() and (tmp_path / job).is_dir()
    gate.set()
