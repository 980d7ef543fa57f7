"""The code is ruff clean: `ruff check src tests scripts` with the rules in pyproject.toml
(E, F, B, I at 130 columns) finds nothing. ruff comes with the test extra; it takes well
under a second, so the check is in the fast tier, and a lint slip fails the tests before CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "src", "tests", "scripts"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"ruff check src tests scripts:\n{run.stdout}{run.stderr}"
