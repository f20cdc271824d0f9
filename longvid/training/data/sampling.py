"""Duration-based frame sampling (VideoChat-Flash): about one frame per second, a multiple of the
clip length, clamped per stage, taken at the midpoints of equal intervals."""

from __future__ import annotations

import math

import numpy as np

from longvid.training.data.config import CLIP_LEN


def frame_count(duration: float, t_min: int, t_max: int, clip_len: int = CLIP_LEN) -> int:
    """``T = clamp(clip_len · floor(D / clip_len), t_min, t_max)`` for a video of ``D`` seconds.

    Short videos are sampled densely (up to ``t_min`` frames even below 1 fps), long ones
    sparsely (at most ``t_max``).
    """
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    t = clip_len * math.floor(duration / clip_len)
    return int(min(max(t, t_min), t_max))


def midpoint_times(duration: float, n: int) -> np.ndarray:
    """Times (seconds, float64 [n]) at the midpoints of ``n`` equal intervals of ``[0, D)``:
    ``t_i = (i + 1/2) · D / n``."""
    if n < 1:
        raise ValueError(f"need at least one frame, got {n}")
    return (np.arange(n, dtype=np.float64) + 0.5) * (duration / n)
