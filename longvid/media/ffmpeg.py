"""Locate and run the ffmpeg binary. Argument lists only, never a shell string.

Order: ``LONGVID_FFMPEG`` (a path), then an ``ffmpeg`` on PATH, then the binary that ships inside
the imageio-ffmpeg wheel (always there, so a pip-only install works).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from longvid.errors import MediaError


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    explicit = os.environ.get("LONGVID_FFMPEG")
    if explicit:
        return explicit
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, uri: str, reason: str, timeout: float | None = None) -> None:
    """Run ``ffmpeg <args>``; on failure raise MediaError(uri, reason, last lines of stderr).

    Inputs and outputs in ``args`` should be absolute paths (or ``file:`` URLs) so that a name
    starting with ``-`` can never read as an option.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(uri, reason, f"ffmpeg timed out after {timeout}s") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise MediaError(uri, reason, " | ".join(tail) or f"ffmpeg exit {proc.returncode}")
