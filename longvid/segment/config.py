"""Config of segmentation: the build's one decode pass with its shot detector
(:class:`DetectConfig`) and how each source's videos become samples (:class:`SegmentConfig`).
Both are sections of the build config (``conf/build/default.yaml``: ``detect`` and ``segment``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from longvid.config import Section


class DetectConfig(Section):
    """The one decode pass: shot detection plus cheap per-frame scores, at low resolution."""

    detector: Literal["content", "adaptive", "transnetv2", "none"] = Field(
        "adaptive",
        description="content/adaptive = PySceneDetect detectors fed our frames (CPU); "
        "transnetv2 = neural detector (GPU when present); none = no shots (stride fallback)",
    )
    width: int = Field(64, ge=16, description="detection frame width (transnetv2 uses 48)")
    height: int = Field(36, ge=9, description="detection frame height (transnetv2 uses 27)")
    threshold: float = Field(27.0, gt=0, description="content detector score threshold")
    adaptive_threshold: float = Field(3.0, gt=0, description="adaptive detector ratio threshold")
    transnet_threshold: float = Field(
        0.5, gt=0, lt=1, description="transnetv2 cut probability threshold"
    )
    min_shot_s: float = Field(0.6, ge=0, description="shots shorter than this merge into the next")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transnetv2 device: auto = cuda when available"
    )
    black_luma: float = Field(
        16.0, ge=0, description="a frame whose mean luma is below this counts as black"
    )
    keep_frames: int = Field(
        8, ge=0, description="frames kept per video from the same pass for later model stages"
    )
    keep_side: int = Field(224, ge=16, description="short side of the kept frames")
    decode_threads: int = Field(
        0, ge=0, description="decoder threads per video (0 = the CPUs a unit task asks for)"
    )
    max_decode_errors: int = Field(
        0, ge=0, description="packets that may fail to decode before the video is rejected"
    )
    max_missing_frames: int = Field(
        0, ge=0, description="frames the probe counted but the decoder did not deliver, at most"
    )


class SegmentPolicy(Section):
    """How one source's videos become samples."""

    mode: Literal["source_spans", "shots", "whole"] = Field(
        "shots",
        description="source_spans: the release's clips (joined into long samples when "
        "contiguous); shots: short clips at shot boundaries + long chunks; whole: the video",
    )
    short: bool = Field(True, description="emit short clips")
    long: bool = Field(True, description="emit long samples")
    short_min_s: float = Field(2.0, gt=0, description="shortest short clip")
    short_max_s: float = Field(60.0, gt=0, description="longest short clip")
    long_min_s: float = Field(60.0, gt=0, description="shortest long sample")
    long_max_s: float = Field(3600.0, gt=0, description="longest long sample (longer → chunks)")
    stride_s: float = Field(
        20.0,
        gt=0,
        description="fixed-stride fallback: a shot longer than short_max_s is split "
        "into pieces of about this length",
    )
    min_join: int = Field(
        4,
        ge=2,
        description="source_spans: at least this many contiguous clips join into a long sample",
    )
    join_gap_s: float = Field(
        0.5, ge=0, description="source_spans: clips whose gap is at most this are contiguous"
    )
    snap_s: float = Field(
        10.0, ge=0, description="long chunks: move an even split point to a shot boundary this near"
    )
    out_of_range: Literal["reject", "clip"] = Field(
        "reject", description="a span past the measured end: reject it, or clip it to the end"
    )
    end_tolerance_s: float = Field(
        0.25, ge=0, description="a span ending at most this far past the end is clipped silently"
    )
    fallback: Literal["shots", "whole"] = Field(
        "shots", description="source_spans mode, record without spans: segment this way instead"
    )

    @model_validator(mode="after")
    def _ordered(self) -> SegmentPolicy:
        if self.short_min_s > self.short_max_s:
            raise ValueError("short_min_s must be <= short_max_s")
        if self.long_min_s > self.long_max_s:
            raise ValueError("long_min_s must be <= long_max_s")
        return self


# What differs from the default policy per source (merged over ``segment.default``).
SOURCE_POLICIES: dict[str, dict[str, Any]] = {
    "ego4d": {"mode": "shots"},
    "howto100m": {"mode": "shots"},
    "hdvila": {"mode": "source_spans"},
    "miradata": {"mode": "source_spans"},
    "webvid": {"mode": "whole", "long": False},
    "generic": {"mode": "shots"},
}


class SegmentConfig(Section):
    """``default`` plus per-source entries; an entry gives only the keys that differ from
    ``default`` (without a ``sources`` key, :data:`SOURCE_POLICIES` is used)."""

    default: SegmentPolicy = Field(
        default_factory=SegmentPolicy, description="policy for a source not listed under sources"
    )
    sources: dict[str, SegmentPolicy] = Field(
        default_factory=dict,
        description="per-source policy, by source name: the keys that differ from default",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_over_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        default = data.get("default") or {}
        if isinstance(default, SegmentPolicy):
            default = default.model_dump()
        entries = data.get("sources", SOURCE_POLICIES)
        if not isinstance(entries, dict) or not isinstance(default, dict):
            return data  # validation reports the wrong type
        merged: dict[str, Any] = {}
        for name, entry in entries.items():
            if isinstance(entry, SegmentPolicy):
                entry = entry.model_dump(exclude_unset=True)
            merged[name] = {**default, **entry} if isinstance(entry, dict) else entry
        return {**data, "sources": merged}

    def policy(self, source: str) -> SegmentPolicy:
        return self.sources.get(source, self.default)
