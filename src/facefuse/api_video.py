"""REST video jobs, added to the FastAPI app of api.py:

    POST   /api/v1/video            multipart: source (photo), video (clip) + fusion fields,
                                    start, end, quality, format (mp4 | webm) -> 202 {"id", ...}
    GET    /api/v1/jobs/{id}        state, progress, error (and the report when done)
    GET    /api/v1/jobs/{id}/result the fused clip (409 until the job is done)
    DELETE /api/v1/jobs/{id}        cancel a queued or running job

Errors are JSON `{"error": code, "message": one line}` as in api.py: 400 bad parameter,
404 unknown job, 409 no result yet, 413 upload over the limit, 415 not a video, 422 a clip
over the limits (duration, pixels per frame) or damaged.

`add_video_routes` puts its routes before the app's catch-all /api/v1/{path} route, so it
can be called after `api.create_app` (wiring: `add_video_routes(app, JobStore(...), settings)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from .errors import ConfigError, InputError
from .video.io import VideoLimits, probe
from .video.jobs import JobStore

API_PREFIX = "/api/v1"
MB = 1024 * 1024
VIDEO_FORMATS = {"mp4": ".mp4", "webm": ".webm"}
UNSUPPORTED = {"not_a_video", "no_video", "empty"}  # -> 415; other input errors -> 422


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _read_limited(upload: UploadFile, limit: int) -> bytes | None:
    """The upload's bytes, or None when it is over `limit` (read in pieces, never whole)."""
    chunks, size = [], 0
    while piece := await upload.read(1 << 20):
        size += len(piece)
        if size > limit:
            return None
        chunks.append(piece)
    return b"".join(chunks)


def add_video_routes(app: FastAPI, jobs: JobStore, settings, limits: VideoLimits = VideoLimits(),
                     max_upload_mb: float | None = None, dependencies: list | None = None) -> None:
    """Add the video job routes to `app` (see the module docstring)."""
    max_bytes = int((max_upload_mb or settings.server.max_upload_mb) * MB)
    deps = dependencies or []
    before = len(app.router.routes)

    @app.post(f"{API_PREFIX}/video", tags=["video"], dependencies=deps, status_code=202,
              summary="Fuse the source's face into every frame of a clip (a job)")
    async def submit_video(
        source: UploadFile = File(..., description="image with the face to use"),
        video: UploadFile = File(..., description="the clip"),
        ratio: Optional[float] = Form(None), mode: Optional[str] = Form(None),
        smoothing: Optional[float] = Form(None), brightness: Optional[float] = Form(None),
        contrast: Optional[float] = Form(None), saturation: Optional[float] = Form(None),
        resolution: Optional[str] = Form(None), face_index: Optional[int] = Form(None),
        all_faces: Optional[bool] = Form(None), source_face_index: Optional[int] = Form(None),
        threshold: Optional[float] = Form(None), padding: Optional[float] = Form(None),
        start: Optional[float] = Form(None, description="first second"),
        end: Optional[float] = Form(None, description="second to stop at"),
        quality: Optional[int] = Form(None, description="1-100, mapped to CRF"),
        format: str = Form("mp4", description="mp4 | webm"),
    ):
        overrides = dict(ratio=ratio, mode=mode, smoothing=smoothing, brightness=brightness, contrast=contrast,
                         saturation=saturation, resolution=resolution, face_index=face_index, all_faces=all_faces,
                         source_face_index=source_face_index, threshold=threshold, padding=padding)
        try:
            settings.fusion_params(**overrides)  # validated now: a bad value is 400, not a failed job
        except ConfigError as exc:
            return _error(400, "bad_parameter", str(exc))
        fmt = format.strip().lower().lstrip(".")
        if fmt not in VIDEO_FORMATS:
            return _error(400, "bad_parameter", f"format: must be mp4 or webm, got {format!r}")
        if quality is not None and not 1 <= quality <= 100:
            return _error(400, "bad_parameter", f"quality: must be 1-100, got {quality}")
        for name, value in (("start", start), ("end", end)):
            if value is not None and not value >= 0:
                return _error(400, "bad_parameter", f"{name}: must be >= 0 seconds, got {value}")
        if start is not None and end is not None and end <= start:
            return _error(400, "bad_parameter", "end: must be after start")
        src, clip = await _read_limited(source, max_bytes), await _read_limited(video, max_bytes)
        if src is None or clip is None:
            return _error(413, "too_large", f"upload over {max_bytes / MB:.0f} MB")
        suffix = Path(video.filename or "").suffix.lower()
        params = {k: v for k, v in overrides.items() if v is not None}
        params.update({k: v for k, v in (("start", start), ("end", end), ("quality", quality)) if v is not None})
        try:
            job = jobs.submit(src, clip, video_suffix=suffix if suffix in (".mp4", ".mov", ".mkv", ".webm") else ".mp4",
                              result_suffix=VIDEO_FORMATS[fmt], params=params,
                              check=lambda path: probe(path, limits, name="video"))
        except InputError as exc:
            return _error(415 if exc.reason in UNSUPPORTED else 422, exc.reason or "bad_input", str(exc))
        return JSONResponse(job.public(), status_code=202)

    @app.get(f"{API_PREFIX}/jobs/{{job_id}}", tags=["video"], dependencies=deps, summary="A job's state and progress")
    async def job_state(job_id: str):
        job = jobs.get(job_id)
        return _error(404, "not_found", f"job {job_id[:40]}: no such job") if job is None else job.public()

    @app.get(f"{API_PREFIX}/jobs/{{job_id}}/result", tags=["video"], dependencies=deps, summary="A done job's clip")
    async def job_result(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return _error(404, "not_found", f"job {job_id[:40]}: no such job")
        path = jobs.result(job_id)
        if path is None:
            return _error(409, "not_ready", f"job {job_id}: {job.state}, no result")
        media = "video/webm" if path.suffix == ".webm" else "video/mp4"
        return FileResponse(path, media_type=media, filename=f"fused{path.suffix}")

    @app.delete(f"{API_PREFIX}/jobs/{{job_id}}", tags=["video"], dependencies=deps, summary="Cancel a job")
    async def cancel_job(job_id: str):
        job = jobs.cancel(job_id)
        return _error(404, "not_found", f"job {job_id[:40]}: no such job") if job is None else job.public()

    # ahead of a catch-all route the app may already have (api.py answers unknown paths with 404)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added

