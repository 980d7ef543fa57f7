"""What the WebUI saves in `output.dir`, removed once older than `output.keep_days`.

Only files of the WebUI's own naming are touched (`YYYYMMDD-HHMMSS-mmm[-N].ext` and their
`.json` sidecars), judged by their modification time; anything else a user put in the
folder, and the REST jobs' folder (`jobs/`, with its own `server.job_keep_hours`), stay.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

RESULT_NAME = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9]{3}(?:-[0-9]+)?\.(?:jpg|png|webp|mp4|webm|json)$")


def expire_results(folder: str | os.PathLike, keep_seconds: float, now: float | None = None) -> list[Path]:
    """Remove the results in `folder` older than keep_seconds (0: none); returns them."""
    if keep_seconds <= 0:
        return []
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not RESULT_NAME.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > keep_seconds:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return removed
