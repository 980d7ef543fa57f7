"""`facefuse bench`: its plumbing (tiny sizes, one repeat), never its timings."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from facefuse.bench import fusion as bench, report
from facefuse.cli import main
from facefuse.commands import SAMPLES as EXAMPLES

STAGE_KEYS = {"decode", "detect", "roi", "engine", "blend", "paste", "encode", "total"}
SUMMARY_KEYS = {"median", "min", "max", "q1", "q3", "n", "samples"}


def _summary_ok(d: dict, positive: bool = True) -> None:
    assert SUMMARY_KEYS <= set(d)
    assert d["n"] == len(d["samples"]) >= 1
    assert d["min"] <= d["median"] <= d["max"]
    assert (d["min"] > 0) if positive else (d["min"] >= 0)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One run with every part switched on, at 128 px (the 1200x800 sample target: the
    default 4352 px one costs seconds per run to decode). Each RSS size and the cold start
    are a new process, so one size keeps this under 30 s on 2 busy cores."""
    out = tmp_path_factory.mktemp("bench")
    js, png = out / "bench.json", out / "bench.png"
    argv = ["bench", "--target", str(EXAMPLES / "target.jpg"), "--resolutions", "128", "--repeat", "1",
            "--compare", "--long", "3", "--goals",
            "--scaling-size", "256", "--json", str(js), "--plot", str(png)]
    return main(argv), js, png


@pytest.mark.slow
def test_full_run_writes_json_with_every_number(full_run):
    code, js, _ = full_run
    assert code == 0
    res = json.loads(js.read_text())
    assert {"machine", "source", "target", "target_size", "repeat", "params", "model_load_s", "resolutions",
            "source_prep", "scaling", "scaling_fit", "compare", "long_run", "cold_start", "goals"} <= set(res)
    assert res["target_size"] == [1200, 800]
    assert [r["resolution"] for r in res["resolutions"]] == [128]
    for row in res["resolutions"]:
        assert max(row["output_size"]) == row["resolution"]
        assert set(row["stages"]) == STAGE_KEYS
        for name, s in row["stages"].items():
            _summary_ok(s, positive=name in ("decode", "detect", "engine", "total"))
        assert set(row["floor"]) == {"decode", "resize", "encode", "total"}
        _summary_ok(row["floor"]["total"])
        assert row["ratio"]["median"] > 0
        assert 0 < row["roi_mpx"] <= row["frame_mpx"]
        assert row["faces_fused"] == 1 and row["output_bytes"] > 0
        mem = row["memory"]
        assert 0 < mem["rss_start_mb"] < mem["rss_after_model_load_mb"] <= mem["peak_rss_mb"]
        assert mem["rss_end_mb"] <= mem["peak_rss_mb"]
        assert mem["resolution"] == row["resolution"]
    _summary_ok(res["source_prep"])
    assert res["scaling_fit"] is None  # a line needs two sizes (see the stdout test)
    # scaling: two targets of the same output size, the small face has the smaller ROI
    sc = res["scaling"]
    assert sc["size"] == 256 and len(sc["targets"]) == 2
    small, large = sc["targets"]
    assert max(small["output_size"]) == max(large["output_size"]) == 256
    assert small["face_px"] < large["face_px"] and small["roi_mpx"] < large["roi_mpx"]
    # naive baseline
    assert [c["resolution"] for c in res["compare"]] == [128]
    for c in res["compare"]:
        assert set(c["naive"]) == set(bench.NAIVE_STAGES) | {"total"}
        _summary_ok(c["naive"]["total"])
    # long run: a sample after every fusion at N=3
    lr = res["long_run"]
    assert lr["fusions"] == 3 and [n for n, _ in lr["curve"]] == [0, 1, 2, 3]
    assert all(r > 0 for _, r in lr["curve"])
    # cold start
    cold = res["cold_start"]
    assert len(cold["runs"]) == 1 and cold["resolution"] == 1024
    assert cold["to_exit"]["median"] >= cold["to_file"]["median"] > cold["model_load_s"] > 0
    assert cold["work_s"] > 0
    # goals: the ones this run could measure (cold start, long run), each judged
    assert {g["what"].split(",")[0] for g in res["goals"]} >= {"cold CLI"}
    assert all(isinstance(g["met"], bool) and g["measured"] >= 0 for g in res["goals"])


@pytest.mark.slow
def test_full_run_writes_plot(full_run):
    _, _, png = full_run
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 200


@pytest.mark.slow
def test_markdown_has_every_section(full_run):
    _, js, _ = full_run
    text = report.markdown(json.loads(js.read_text()))
    for heading in ("## Fusion speed and memory", "## Cold start", "## Scaling", "## Naive baseline (--compare)",
                    "## Long run (RSS)"):
        assert heading in text
    assert "| 128x85 |" in text


@pytest.mark.slow
def test_markdown_leaves_out_what_was_not_measured(full_run):
    _, js, _ = full_run
    res = json.loads(js.read_text())
    for key in ("cold_start", "compare", "long_run", "scaling"):
        del res[key]
    for row in res["resolutions"]:
        del row["memory"]
    text = report.markdown(res)
    assert "## Fusion speed and memory" in text and "## Scaling" in text  # the per-size scaling table stays
    for heading in ("## Cold start", "## Naive baseline", "## Long run", "small vs large face", "peak MB"):
        assert heading not in text


def test_stdout_is_the_markdown_report(capsys):
    code = main(["bench", "--target", str(EXAMPLES / "target.jpg"), "--resolutions", "128,256", "--repeat", "1",
                 "--no-cold", "--no-rss", "--no-scaling"])
    assert code == 0
    out = capsys.readouterr().out
    assert "## Fusion speed and memory" in out and "| 128x85 |" in out and "| 256x171 |" in out
    assert "Fitted lines: roi+engine+blend" in out
    assert "## Cold start" not in out and "## Naive baseline" not in out


@pytest.mark.parametrize("argv, code, words", [
    (["--resolutions", "big"], 2, "--resolutions"),
    (["--resolutions", "32"], 2, "64-8192"),
    (["--repeat", "0"], 2, "--repeat"),
    (["--plot", "x.jpg"], 3, "PNG"),
    (["--json", "/no/such/dir/b.json"], 3, "folder"),
    (["--source", "/no/such.jpg", "--no-cold", "--no-rss"], 3, "not found"),
    (["--scaling-photos", "/no/small.jpg", "/no/large.jpg"], 3, "--scaling-photos"),
])
def test_bad_input_is_one_line(argv, code, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("facefuse: error:") and words in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_scaling_photos_are_an_argument(data_dir):
    """--scaling-photos SMALL LARGE: the two given photos at the scaling size, by name."""
    targets, note = bench.scaling_targets(256, [str(data_dir / "faceapi_bbt4.jpg"), str(data_dir / "deepface_img2.jpg")])
    assert [(t["name"], t["label"]) for t in targets] == [("faceapi_bbt4.jpg", "small face"), ("deepface_img2.jpg", "large face")]
    for t in targets:
        with Image.open(io.BytesIO(t["bytes"])) as im:
            assert max(im.size) == 256
    assert "faceapi_bbt4.jpg vs deepface_img2.jpg" in note


def test_existing_json_is_refused_before_any_work(tmp_path, capsys):
    js = tmp_path / "b.json"
    js.write_text("{}")
    assert main(["bench", "--json", str(js)]) == 3
    assert js.read_text() == "{}"
    assert "already exists" in capsys.readouterr().err


def test_bench_detect_dispatches_with_catalog(monkeypatch, tmp_path):
    seen = {}
    fake = types.ModuleType("facefuse.bench.detect")

    def run_detect_bench(args):
        seen.update(vars(args))
        return 0

    fake.run_detect_bench = run_detect_bench
    monkeypatch.setitem(sys.modules, "facefuse.bench.detect", fake)
    cat = tmp_path / "catalog.tsv"
    assert main(["bench", "detect", "--catalog", str(cat), "--json", str(tmp_path / "d.json")]) == 0
    assert seen["catalog"] == str(cat) and seen["images_dir"] == str(tmp_path)
    assert seen["json"] == str(tmp_path / "d.json")
    seen.clear()
    assert main(["bench", "detect"]) == 0
    assert seen["catalog"] == str(bench.DEFAULT_CATALOG)
    assert seen["catalog"].endswith("facefuse/samples/catalog.tsv")  # the bundled photos: no ../shared needed


def test_summary_and_resolutions():
    s = bench.summary([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0 and s["n"] == 3
    assert bench.parse_resolutions("512, 1024,2048") == [512, 1024, 2048]
    assert bench.rss_mb() > 0 and bench.peak_rss_mb() >= bench.rss_mb() * 0.5


def test_bench_video_reports_fps_floor_ratio_and_flicker(tmp_path, capsys):
    """`bench video` on a clip: per size the fps, the floor measured in the same run, their
    ratio and the flicker ratio (numbers are not checked, only that each was measured)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import video_clips as vc

    clip = vc.write_clip(tmp_path / "c.mp4", vc.pan_frames(EXAMPLES / "target.jpg", 10, (240, 160)), fps=10)
    js, png = tmp_path / "v.json", tmp_path / "v.png"
    assert main(["bench", "video", "--clip", str(clip), "--sizes", "original,240", "--json", str(js),
                 "--plot", str(png), "--work-face", "0"]) == 0
    (res,) = json.loads(js.read_text())["video"]
    assert res["work_face_px"] == 0
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert [(r["width"], r["height"]) for r in res["results"]] == [(240, 160), (360, 240)]
    for r in res["results"]:
        assert r["frames"] == 10 and r["fps"] > 0 and r["floor_fps"] > 0 and r["ratio_to_floor"] > 0
        before, after = r["floor_fps_before_after"]  # the floor brackets the fusion; the mean of its two times
        assert min(before, after) - 0.01 <= r["floor_fps"] <= max(before, after) + 0.01
        assert r["flicker_ratio"] is None or r["flicker_ratio"] >= 0
    assert "total / floor" in capsys.readouterr().out
    assert main(["bench", "video", "--clip", str(clip), "--plot", str(tmp_path / "v.jpg")]) == 3  # a PNG only
    assert main(["bench", "video", "--clip", str(clip), "--work-face", "10"]) == 2


@pytest.mark.slow
def test_bench_live_streams_a_clip_through_the_websocket_and_writes_json(tmp_path, capsys, monkeypatch):
    """`bench live` on a short clip as a camera: one entry per size and client count with the
    fields BENCHMARKS.md reads (numbers are not checked, only that frames came back)."""
    sys.path.insert(0, str(EXAMPLES.parent / "tests"))
    import video_clips as vc
    from facefuse.bench import live as bench_live

    monkeypatch.setattr(bench_live, "WARMUP_S", 0.5)
    clip = vc.write_clip(tmp_path / "c.mp4", vc.pan_frames(EXAMPLES / "target.jpg", 10, (320, 240)), fps=10)
    js = tmp_path / "live.json"
    assert main(["bench", "live", "--clip", str(clip), "--sizes", "320x240", "--clients", "1,2", "--seconds", "2",
                 "--json", str(js)]) == 0
    entries = json.loads(js.read_text())["live"]
    assert [(e["size"], e["clients"]) for e in entries] == [("320x240", 1), ("320x240", 2)]
    for e in entries:
        assert e["fps"] > 0 and e["latency_median_ms"] > 0 and e["latency_p95_ms"] >= e["latency_median_ms"]
        assert e["dropped"] >= 0 and len(e["per_client"]) == e["clients"]
        assert e["per_frame"]["frames_fused"] > 0 and e["per_frame"]["engine_ms"] > 0
        assert e["per_frame"]["frame_cpu_ms"] > 0
    assert "fps delivered" in capsys.readouterr().out
    assert main(["bench", "live", "--clip", str(clip), "--sizes", "320by240"]) == 2
    assert main(["bench", "live", "--clip", str(clip), "--clients", "0"]) == 2
