"""Shared fixtures: real photos from tests/data and examples/, one Fuser per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def source_path() -> Path:
    """A single portrait (Rose Leslie, 1280x799)."""
    return EXAMPLES / "source.jpg"


@pytest.fixture(scope="session")
def target_path() -> Path:
    """A single portrait (Marissa Mayer, 1200x800)."""
    return EXAMPLES / "target.jpg"


@pytest.fixture(scope="session")
def group_path() -> Path:
    """Six people (The Big Bang Theory cast, 710x473)."""
    return DATA / "faceapi_bbt4.jpg"


@pytest.fixture(scope="session")
def noface_path() -> Path:
    """A cat, no human face."""
    return DATA / "skimage_chelsea.png"


@pytest.fixture(scope="session")
def fuser():
    from facefuse.config import Settings
    from facefuse.pipeline import Fuser

    return Fuser(Settings())


@pytest.fixture
def run_cli(capsys):
    """`facefuse ARGS...` in this process (no new interpreter and imports per call),
    returned as a finished process: exit code, stdout, stderr."""
    from facefuse.cli import main

    def run(*args) -> subprocess.CompletedProcess:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's --help and --version
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    """A browser or Ray test is a slow one too, so `-m "not slow"` leaves it out."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tune(fuser):
    """Change one group of the classical engine's tuning for one test, the way a caller
    would (`dataclasses.replace`): `tune("strands", chroma=0.0)` switches the strand test
    off. The session's engine gets its tuning back afterwards."""
    from dataclasses import replace

    engine = fuser.engine
    original = engine.tuning

    def set_values(group: str, **values):
        engine.tuning = replace(engine.tuning, **{group: replace(getattr(engine.tuning, group), **values)})
        fuser._sources.clear()  # sources are prepared (and labelled) with the engine's tuning

    yield set_values
    engine.tuning = original
    fuser._sources.clear()
