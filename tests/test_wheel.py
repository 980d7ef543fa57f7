"""facefuse as an installed wheel: built from this checkout, installed into a new virtual
environment, run from a folder that has nothing of the checkout.

The new venv gets the wheel alone (`--no-deps`); its dependencies are the ones already
installed for the tests, seen through a .pth line naming this interpreter's site-packages
(a plain path line, so the editable install's own .pth there is never run and the checkout's
src/ stays out of reach). That needs no network and no second copy of OpenCV, mediapipe
and Gradio, and it still catches what a wheel gets wrong: files missing from the package,
and code that looks for the checkout beside itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from servers import serving

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(the venv's bin folder, the environment to run it in), the wheel installed there."""
    base = tmp_path_factory.mktemp("wheel")
    tree = base / "tree"  # `pip wheel .` on a copy, so the build leaves no build/ or egg-info in the checkout
    (tree / "src").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src" / "facefuse", tree / "src" / "facefuse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("FACEFUSE_API_KEY", None)
    pip = [sys.executable, "-m", "pip"]
    built = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", base / "dist", "."], tree, env)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (base / "dist").glob("facefuse-*.whl")

    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], base, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "facefuse-test-deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    done = _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], base, env)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin", env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with two photos in it and nothing else."""
    shutil.copy2(ROOT / "tests" / "data" / "deepface_img2.jpg", tmp_path / "a.jpg")
    shutil.copy2(ROOT / "tests" / "data" / "fr_kit_harington2.jpeg", tmp_path / "b.jpg")
    return tmp_path


def test_the_package_and_its_samples_come_from_the_venv(installed, workdir):
    bin_dir, env = installed
    shown = _run([bin_dir / "python", "-c", "import facefuse.commands as c; print(c.__file__); "
                  "print(c.SAMPLES); import json; print(json.dumps([p.name for p in c.SAMPLES.iterdir()]))"], workdir, env)
    assert shown.returncode == 0, shown.stderr
    module, samples, names = shown.stdout.splitlines()
    venv = bin_dir.parent
    assert Path(module).is_relative_to(venv) and Path(samples).is_relative_to(venv)
    assert {"source.jpg", "target.jpg", "large_target.jpg", "catalog.tsv", "LICENSES.md"} <= set(json.loads(names))


def test_fuse_from_another_folder(installed, workdir):
    bin_dir, env = installed
    done = _run([bin_dir / "facefuse", "fuse", "a.jpg", "b.jpg", "-o", "out.jpg"], workdir, env)
    assert done.returncode == 0, done.stdout + done.stderr
    from PIL import Image

    with Image.open(workdir / "out.jpg") as out, Image.open(workdir / "b.jpg") as target:
        assert out.format == "JPEG" and out.size == target.size


def test_bench_quick_uses_the_bundled_photos(installed, workdir):
    bin_dir, env = installed
    done = _run([bin_dir / "facefuse", "bench", "--quick", "--json", "bench.json"], workdir, env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    res = json.loads((workdir / "bench.json").read_text())
    assert Path(res["target"]).name == "large_target.jpg" and Path(res["target"]).is_relative_to(bin_dir.parent)
    assert [r["resolution"] for r in res["resolutions"]] == [1024, 2048]
    assert all(r["output_size"][0] == r["resolution"] and r["output_bytes"] > 0 for r in res["resolutions"])
    assert res["machine"]["git_commit"] is None  # the installed code is in no repository


def test_serve_answers_health_and_the_webui(installed, workdir):
    bin_dir, env = installed
    (workdir / "config.yaml").write_text("output:\n  dir: outputs\nserver:\n  workers: 1\n")
    with serving([str(bin_dir / "facefuse"), "serve", "--port", "0"], workdir, env, wait_s=60) as url:
        assert httpx.get(url, timeout=30).status_code == 200  # the WebUI page
        assert httpx.get(url + "docs", timeout=30).status_code == 200  # OpenAPI docs from the installed package
