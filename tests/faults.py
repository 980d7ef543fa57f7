"""Fault injection for the tests: a full disk and a `kill -9` in the middle of a write.

A full disk comes two ways, and the tests run both where they can:
- "tmpfs": the command runs in a user and mount namespace (`unshare`) with its output
  folder on a tmpfs of a few pages, so the write fails in the kernel, as on a real disk;
  on a machine where a test cannot mount one, that case is skipped;
- "injected": OSError(ENOSPC) raised at the write call itself (the temp file's write for
  images, the video writer's frame write for clips), in this process; it always runs.

`kill -9` mid-write: the command runs in a subprocess that is killed with SIGKILL once its
temp file is on disk (an image write is held at its fsync until then).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = "import sys; from facefuse.cli import main; sys.exit(main())"
TMPFS_KB = 16  # small enough that no output fits once the lock and report files are there


def no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@functools.lru_cache(maxsize=1)
def can_mount_tmpfs() -> bool:
    """Whether this machine lets a test mount a tmpfs in its own namespace."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=8k tmpfs \"$d\" && umount \"$d\"; rc=$?; "
                            "rmdir \"$d\"; exit $rc"], capture_output=True, timeout=30)
    return probe.returncode == 0


def run_cli_on_tmpfs(folder: Path, argv: list[str], listing: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`facefuse ARGV` in a subprocess with `folder` a tiny tmpfs (created empty); what is
    left on it afterwards is written, one name a line, to `listing` (outside the tmpfs, which
    goes with the namespace)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = ('mount -t tmpfs -o size="$1"k tmpfs "$2" || exit 99; dir="$2"; list="$3"; shift 3; '
              '"$@"; rc=$?; ls -A "$dir" > "$list"; exit $rc')
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                           str(TMPFS_KB), str(folder), str(listing), sys.executable, "-c", CLI, *argv],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


class _HalfWritten:
    """A file whose write stores half of what it is given, then fails as a full disk does."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data) -> int:
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise no_space()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)


@contextlib.contextmanager
def injected_full_disk(monkeypatch, video_frames: int = 2, files: bool = True):
    """OSError(ENOSPC) at the write calls: every video writer after `video_frames` frames,
    and (with `files`) every temp file write_bytes_atomic writes, after half its bytes."""
    import facefuse.io as fio
    from facefuse.video import io as vio

    real_fdopen, real_write = os.fdopen, vio.VideoWriter.write

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        return _HalfWritten(fh) if fio.TEMP_NAME.match(Path(os.readlink(f"/proc/self/fd/{fd}")).name) else fh

    def write(self, rgb, pts):
        if self.frames >= video_frames:
            raise no_space()
        real_write(self, rgb, pts)

    with monkeypatch.context() as m:
        if files:
            m.setattr(fio.os, "fdopen", fdopen)
        m.setattr(vio.VideoWriter, "write", write)
        yield


def temps_in(folder: Path) -> list[str]:
    """facefuse's temp files in a folder (its naming: `.NAME.PID.XXXXXXXX.tmp|.part`)."""
    from facefuse.io import TEMP_NAME

    return sorted(p.name for p in folder.iterdir() if TEMP_NAME.match(p.name)) if folder.is_dir() else []


def held_at_fsync() -> str:
    """Python code that, run before the CLI, holds every image write at its fsync (the temp
    file then holds all its bytes, not yet renamed) until the process is killed."""
    return ("import os, time\n"
            "_real = os.fsync\n"
            "def _held(fd):\n"
            "    _real(fd)\n"
            "    open(os.environ['FACEFUSE_TEST_HELD'], 'w').close()\n"
            "    time.sleep(600)\n"
            "os.fsync = _held\n")


def kill_9_when(proc: subprocess.Popen, ready, timeout: float = 180) -> None:
    """SIGKILL `proc` (and its session) as soon as `ready()` is true; fails if it never is."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"the process ended (rc {proc.returncode}) before the write began: {out}")
            if time.monotonic() > deadline:
                raise AssertionError("the write never began")
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def popen_cli(argv: list[str], prelude: str = "", env: dict | None = None) -> subprocess.Popen:
    """`facefuse ARGV` in a new session (so kill_9_when kills all of it), `prelude` run first."""
    return subprocess.Popen([sys.executable, "-c", prelude + CLI, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
