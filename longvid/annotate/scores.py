"""Per-sample scores and the filters that read them.

The cheap scores come from what the build already measured: the clip's duration and size (probe
of the cut clip), and black/static frames and motion from the one decode pass (the cut stage's
``scores``: mean luma per frame below ``detect.black_luma`` counts as black, mean |Δluma| below
0.5 as static). Here they are gathered, the clip's SHA-256 is added (for exact duplicates), and
each filter compares one score with its limit. The video–text cosine comes from the embed stage.

Filters, in the order they are checked (the first that fails names the reject):
``min_duration``, ``max_duration``, ``resolution``, ``black``, ``static``, ``motion`` (cheap,
``filter`` stage), then ``no_caption`` and ``video_text`` (``filter_final`` stage).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from longvid.annotate.config import FiltersConfig


@dataclass(frozen=True)
class FilterHit:
    name: str  # the filter, e.g. "black"
    value: Any  # the sample's score
    limit: Any  # the configured limit
    rule: str  # e.g. "at most", "at least"

    @property
    def reason(self) -> str:
        return f"filter:{self.name}"

    def reject(self, uri: str, key: str) -> tuple[str, str]:
        """(reason, detail) of the reject row."""
        return self.reason, (f"{uri}: sample {key}: {self.name} = {self.value} "
                             f"(must be {self.rule} {self.limit})")


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def sample_scores(meta: dict[str, Any], clip: bytes) -> dict[str, Any]:
    """The scores of one sample from its ``KEY.json`` and clip bytes."""
    c = meta.get("clip") or {}
    base = dict(meta.get("scores") or {})
    w, h = c.get("width"), c.get("height")
    return {
        **base,
        "duration": _r(c.get("duration")),
        "width": w,
        "height": h,
        "short_side": min(w, h) if w and h else None,
        "clip_sha256": hashlib.sha256(clip).hexdigest(),
    }


# (name, score field, rule, config field): "min" fails below the limit, "max" above it
_CHEAP: tuple[tuple[str, str, str, str], ...] = (
    ("min_duration", "duration", "min", "min_duration_s"),
    ("max_duration", "duration", "max", "max_duration_s"),
    ("resolution", "short_side", "min", "min_short_side"),
    ("black", "black_fraction", "max", "max_black_fraction"),
    ("static", "static_fraction", "max", "max_static_fraction"),
    ("motion", "motion_mean", "min", "min_motion"),
)
_FINAL: tuple[tuple[str, str, str, str], ...] = (
    ("video_text", "video_text_cosine", "min", "min_video_text_cosine"),
)

_RULES: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "min": ("at least", lambda v, lim: v < lim),
    "max": ("at most", lambda v, lim: v > lim),
}


def _check(scores: dict[str, Any], table, cfg: FiltersConfig) -> FilterHit | None:
    for name, field, rule, limit_field in table:
        limit = getattr(cfg, limit_field)
        value = scores.get(field)
        if limit is None or value is None:
            continue  # filter off, or nothing measured (e.g. no frames decoded)
        words, fails = _RULES[rule]
        if fails(float(value), float(limit)):
            return FilterHit(name, value, limit, words)
    return None


def cheap_filter(scores: dict[str, Any], cfg: FiltersConfig) -> FilterHit | None:
    """The first cheap filter the sample fails, or None."""
    return _check(scores, _CHEAP, cfg)


def final_filter(scores: dict[str, Any], has_caption: bool, cfg: FiltersConfig) -> FilterHit | None:
    """After the model stages: a sample without any caption (``require_caption``), then the
    video–text cosine."""
    if cfg.require_caption and not has_caption:
        return FilterHit("no_caption", 0, 1, "at least")
    return _check(scores, _FINAL, cfg)
