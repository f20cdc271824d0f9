"""Load one sample: ranged read of its members, frames at the sampled times, tokens.

Everything here is a function of (catalog row, stage config): no randomness, so any worker
produces the same sample. Failures that belong to the *sample* (a clip that does not decode,
metadata that is not JSON) raise :class:`SampleError` and are replaced by the caller; failures
of the *storage* (a missing or truncated shard) propagate and stop the run loudly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from longvid import storage
from longvid.errors import MediaError
from longvid.shards.reader import read_sample
from longvid.training.data.config import StageData
from longvid.training.data.decode import FrameDecoder
from longvid.training.data.sampling import frame_count, midpoint_times

VIDEO_EXT = "mp4"
META_EXT = "json"
# Keyframe times of the clip in KEY.json (in its "clip" object, or at the top level), under the
# first of these names that is present.
KEYFRAME_FIELDS = ("keyframes", "keyframe_times", "keyframe_pts")


class SampleError(MediaError):
    """A sample that cannot be used (decode failure, bad metadata); it gets a substitute."""


@dataclass
class LoadedSample:
    """One sample ready to batch. ``frames`` is ``uint8 [T, 3, S, S]`` (an image: T = 1)."""

    key: str
    source: str
    duration: float
    times: np.ndarray  # float64 [T], seconds from the clip start
    frames: torch.Tensor
    conversations: list[dict[str, str]]
    input_ids: torch.Tensor | None = None  # int64 [L]
    labels: torch.Tensor | None = None  # int64 [L], -100 outside the answers
    is_image: bool = False  # a still image (no duration, no timestamp prompt)


def sample_uri(row: dict[str, Any]) -> str:
    """``<shard uri>#<key>``: how errors name a sample."""
    return f"{storage.join(row['root'], row['shard'])}#{row['key']}"


def read_members(row: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(metadata dict, clip bytes) of a catalog row, by one ranged read."""
    wanted = [m for m in row["members"] if m["ext"] in (META_EXT, VIDEO_EXT)]
    uri = sample_uri(row)
    if not any(m["ext"] == VIDEO_EXT for m in wanted):
        raise SampleError(
            uri, "no_video_member", f"members are {[m['ext'] for m in row['members']]}"
        )
    got = read_sample(row["root"], {**row, "members": wanted})
    meta: dict[str, Any] = {}
    if META_EXT in got:
        try:
            meta = json.loads(got[META_EXT])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SampleError(
                uri, "bad_metadata", f"{row['key']}.json is not JSON: {exc}"
            ) from None
        if not isinstance(meta, dict):
            raise SampleError(uri, "bad_metadata", f"{row['key']}.json is not a JSON object")
    return meta, got[VIDEO_EXT]


def keyframes_of(meta: dict[str, Any]) -> list[float] | None:
    """The clip's keyframe times from ``KEY.json`` (the build writes them under ``clip``);
    None when absent, and then the decoder finds them with one extra demux pass."""
    clip = meta.get("clip")
    for where in (clip if isinstance(clip, dict) else {}, meta):
        for name in KEYFRAME_FIELDS:
            value = where.get(name)
            if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
                return [float(v) for v in value]
    return None


def default_conversation(meta: dict[str, Any], row: dict[str, Any], question: str) -> list[dict]:
    """The sample's LLaVA-style conversation; without one, ``question`` → the main caption."""
    conv = meta.get("conversations")
    if isinstance(conv, list) and conv and all(isinstance(t, dict) for t in conv):
        return [{"from": str(t.get("from", "")), "value": str(t.get("value", ""))} for t in conv]
    caption = row.get("caption") or ""
    if not caption:
        caps = meta.get("captions") or []
        caption = next((c.get("text", "") for c in caps if isinstance(c, dict)), "")
    return [{"from": "human", "value": question}, {"from": "gpt", "value": caption}]


def load_frames(
    row: dict[str, Any], cfg: StageData, decoder: FrameDecoder
) -> tuple[dict[str, Any], float, np.ndarray, torch.Tensor]:
    """(metadata, duration, times [T], uint8 frames [T, 3, S, S]) of one catalog row."""
    meta, video = read_members(row)
    uri = sample_uri(row)
    duration = float(row["duration"])
    n = frame_count(duration, cfg.t_min, cfg.t_max)
    times = midpoint_times(duration, n)
    try:
        frames = decoder(video, times, cfg.resolution, keyframes=keyframes_of(meta), uri=uri)
    except SampleError:
        raise
    except MediaError as exc:
        raise SampleError(uri, exc.reason, exc.detail) from None
    want = (n, 3, cfg.resolution, cfg.resolution)
    if tuple(frames.shape) != want:
        raise SampleError(uri, "decode_failed", f"got frames {tuple(frames.shape)}, want {want}")
    return meta, duration, times, frames
