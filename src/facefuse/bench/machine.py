"""The machine a benchmark ran on: CPUs, load, library versions, the code's commit."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the facefuse folder that runs (in a checkout or site-packages)


def machine_info() -> dict:
    import cv2
    import numpy as np

    try:
        def git(*a):
            return subprocess.run(["git", "-C", str(PACKAGE), *a], capture_output=True, text=True, timeout=5).stdout
        # a commit only when git tracks this very code (an installed wheel may sit in some other repository's venv)
        tracked = git("ls-files", "__init__.py").strip() == "__init__.py"
        commit = (git("rev-parse", "--short", "HEAD").strip() or None) if tracked else None
        # tracked files changed since that commit: the numbers are of this tree, not of the commit
        modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()] if tracked else []
    except (OSError, subprocess.SubprocessError):
        commit, modified = None, []
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpus": os.cpu_count(), "load_avg_at_start": load, "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
        "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(), "numpy": np.__version__,
        "git_commit": commit, "git_modified": modified, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
