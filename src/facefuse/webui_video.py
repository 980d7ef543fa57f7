"""The WebUI's Video tab: upload a clip and a source face, scrub to preview one fused frame,
fuse with a progress bar, play the result and download it.

`add_video_tab(jobs, settings, preview_fuser)` builds the tab's controls inside the
caller's `gr.Blocks` / `gr.Tab` context (wiring, in webui.build_ui:
`with gr.Tab("Video"): add_video_tab(jobs, settings, fuser_factory)`). Fusion runs as a job
of the shared `JobStore` (the same jobs REST serves); each finished clip is copied to
`output.dir` with a timestamped name and a JSON sidecar (parameters and report).

The handlers are plain functions (`preview`, `start`, `follow`) so they are tested without
a browser. Element ids: video-source video-clip video-at video-preview video-fuse
video-result video-info.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import FaceFuseError
from .io import write_bytes_atomic
from .video.io import probe
from .video.jobs import JobStore

POLL_S = 0.5


def _path(upload: Any, which: str) -> str:
    if not upload:
        raise FaceFuseError(f"{which}: nothing uploaded yet")
    return str(upload)


def preview(fuser_factory: Callable[[], Any], source: str | None, clip: str | None, at: float,
            ratio: float) -> np.ndarray:
    """The fused frame at `at` seconds (the scrubber's picture)."""
    from .video.fuse import preview_frame

    return preview_frame(fuser_factory(), _path(source, "source"), _path(clip, "video"), float(at or 0.0), ratio=ratio)


def start(jobs: JobStore, source: str | None, clip: str | None, ratio: float) -> str:
    """Queue a fusion of the whole clip; its job id."""
    src, video = Path(_path(source, "source")), Path(_path(clip, "video"))
    suffix = video.suffix.lower() if video.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm") else ".mp4"
    job = jobs.submit(src.read_bytes(), video.read_bytes(), video_suffix=suffix, params={"ratio": ratio},
                      check=lambda p: probe(p, name="video"))
    return job.id


def save_result(jobs: JobStore, job_id: str, out_dir: str | Path) -> Path:
    """Copy a done job's clip into out_dir (timestamped name) with a JSON sidecar."""
    job = jobs.get(job_id)
    result = jobs.result(job_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"video-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{job_id[:8]}"
    out = out_dir / f"{stem}{result.suffix}"
    tmp = out_dir / f".{out.name}.part"
    shutil.copyfile(result, tmp)
    tmp.replace(out)
    sidecar = {"params": job.params, "report": job.public().get("report"), "job": job_id}
    write_bytes_atomic(out_dir / f"{stem}.json", json.dumps(sidecar, indent=2).encode())
    return out


def follow(jobs: JobStore, job_id: str, out_dir: str | Path, timeout_s: float = 24 * 3600) -> Iterator[tuple[float, str, str | None]]:
    """(progress 0..1, status line, saved clip or None) until the job ends."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        job = jobs.get(job_id)
        if job.state == "done":
            saved = save_result(jobs, job_id, out_dir)
            report = job.report or {}
            yield 1.0, f"done: {report.get('frames', '?')} frames, {report.get('fps', '?')} fps -> {saved.name}", str(saved)
            return
        if job.state in ("failed", "cancelled"):
            yield job.progress, f"{job.state}: {job.error}" if job.error else job.state, None
            return
        yield job.progress, f"{job.state}: {job.frames_done} of {job.frames_total or '?'} frames", None
        time.sleep(POLL_S)


def add_video_tab(jobs: JobStore, settings, fuser_factory: Callable[[], Any]) -> None:
    """The tab's controls and events, in the caller's Blocks context."""
    import gradio as gr

    with gr.Row():
        source = gr.Image(label="Source face", type="filepath", elem_id="video-source")
        clip = gr.Video(label="Video", elem_id="video-clip")
    ratio = gr.Slider(0, 1, value=settings.fusion.ratio, step=0.05, label="Ratio")
    at = gr.Slider(0, 600, value=0, step=0.1, label="Preview at (s)", elem_id="video-at")
    frame = gr.Image(label="Preview", interactive=False, elem_id="video-preview")
    run = gr.Button("Fuse video", variant="primary", elem_id="video-fuse")
    info = gr.Markdown(elem_id="video-info")
    result = gr.Video(label="Result", interactive=False, elem_id="video-result")

    def on_clip(path):
        if not path:
            return gr.update()
        return gr.update(maximum=max(0.1, round(probe(path).duration, 1)), value=0)

    def on_preview(src, video, t, r):
        try:
            return preview(fuser_factory, src, video, t, r)
        except FaceFuseError as exc:
            raise gr.Error(str(exc))

    def on_run(src, video, r, progress=gr.Progress()):
        try:
            job_id = start(jobs, src, video, r)
        except FaceFuseError as exc:
            raise gr.Error(str(exc))
        for share, status, saved in follow(jobs, job_id, settings.output.dir):
            progress(share, desc=status)
            yield status, saved

    clip.change(on_clip, clip, at)
    at.release(on_preview, [source, clip, at, ratio], frame)
    run.click(on_run, [source, clip, ratio], [info, result])
