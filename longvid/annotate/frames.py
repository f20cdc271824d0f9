"""Which frames of a sample the model stages see, and decoding them from the cut clip.

Times follow HiCo's rule of midpoints of equal intervals: a short sample gets ``frames_short``
of them; a long sample one per ``long_stride_s`` seconds (clamped to
``[frames_long_min, frames_long_max]``) plus the middle of every shot (of the
``frames_long_max`` longest when there are more), so that shots have a frame for their own
embedding. Frames come from the clip bytes already in the sample
(``KEY.mp4``) with the keyframes recorded in ``KEY.json``: a few seeks of a small, already cut
file, at the short side the models want.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from longvid.annotate.config import FramesConfig
from longvid.media.decode import FrameSampler


def midpoints(duration: float, n: int) -> list[float]:
    """Centres of ``n`` equal parts of ``[0, duration]``."""
    return [(i + 0.5) * duration / n for i in range(n)]


def shot_spans(duration: float, cuts: Sequence[float]) -> list[tuple[float, float]]:
    """Cut times inside the sample → consecutive shots covering it."""
    pts = [0.0] + sorted(c for c in cuts if 1e-6 < c < duration - 1e-6) + [duration]
    return [(a, b) for a, b in zip(pts, pts[1:], strict=False) if b - a > 1e-6]


def sample_times(duration: float, bucket: str, cuts: Sequence[float],
                 cfg: FramesConfig) -> list[float]:
    """Sorted frame times (seconds from the sample start) for one sample."""
    if bucket != "long":
        return midpoints(duration, cfg.frames_short)
    n = min(max(math.ceil(duration / cfg.long_stride_s), cfg.frames_long_min), cfg.frames_long_max)
    shots = shot_spans(duration, cuts)
    if len(shots) > cfg.frames_long_max:  # bounded: the longest shots get a frame of their own
        shots = sorted(sorted(shots, key=lambda s: (s[0] - s[1], s[0]))[: cfg.frames_long_max])
    times = midpoints(duration, n) + [(a + b) / 2 for a, b in shots]
    out: list[float] = []
    for t in sorted(times):
        if not out or t - out[-1] > 1e-3:
            out.append(round(t, 6))
    return out


def caption_segments(duration: float, cuts: Sequence[float], window_s: float,
                     max_segments: int) -> list[tuple[float, float]]:
    """The segments a long sample's dense captions describe: its shots, a shot longer than
    ``window_s`` split into equal windows no longer than that; at most ``max_segments`` (then
    evenly chosen, first and last kept)."""
    out: list[tuple[float, float]] = []
    for a, b in shot_spans(duration, cuts):
        n = max(1, math.ceil((b - a) / window_s - 1e-9))
        out += [(round(a + k * (b - a) / n, 3), round(a + (k + 1) * (b - a) / n, 3))
                for k in range(n)]
    if len(out) > max_segments:
        keep = sorted({round(i * (len(out) - 1) / max(1, max_segments - 1))
                       for i in range(max_segments)})
        out = [out[i] for i in keep]
    return out


def nearest(times: Sequence[float], t: float) -> int:
    """Index of the frame time nearest to ``t`` (ties: the earlier)."""
    return min(range(len(times)), key=lambda i: (abs(times[i] - t), i))


def pick(times: Sequence[float], duration: float, n: int) -> list[int]:
    """Indices of the ``n`` frames nearest to ``n`` evenly spread midpoints (no repeats while
    there are enough frames), ascending."""
    if n >= len(times):
        return list(range(len(times)))
    chosen: list[int] = []
    for t in midpoints(duration, n):
        order = sorted(range(len(times)), key=lambda i: (abs(times[i] - t), i))
        chosen.append(next(i for i in order if i not in chosen))
    return sorted(chosen)


def decode_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (never enlarged)."""
    scale = min(1.0, short_side / max(1, min(width, height)))
    return max(2, round(width * scale)), max(2, round(height * scale))


def decode_frames(clip: bytes, times: Sequence[float], width: int, height: int,
                  keyframes: Sequence[float] | None, short_side: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 frames of the clip at ``times`` (seconds from the clip start),
    scaled so the short side is ``short_side``."""
    size = decode_size(width, height, short_side)
    with FrameSampler(clip, size=size, keyframes=keyframes or None, threads=1) as sampler:
        return sampler.decode_at(times)
