"""What flows through the per-video stages: one :class:`VideoWork` per manifest record.

Stages read and fill its fields in order (probe → scan → segment → cut → annotate stages...). A
stage that fails for the whole video calls :meth:`VideoWork.fail`; later stages are skipped and
the record becomes one reject row with the stage and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longvid.schema import Reject


@dataclass
class StageContext:
    """Per-task things every stage may need."""

    cfg: Any  # the build config (longvid.pipelines.config.BuildConfig), which sits above stages
    content_hash: str
    work_dir: Path  # scratch folder of this unit task (removed after the unit)
    tools: dict[str, str]  # tool versions for lineage


@dataclass
class SampleSpec:
    """One sample to cut: an exact span ``[start, end)`` of the source video in seconds, made by
    segmentation (:mod:`longvid.segment.policy`), with the texts inside it re-timed to its start."""

    start: float
    end: float
    bucket: str  # "short" | "long"
    origin: str  # "span" | "joined_spans" | "shot" | "stride" | "whole" | "chunk"
    span_ids: list[str] = field(default_factory=list)
    texts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class SampleOutput:
    """One finished sample: its key, its shard members, and its samples.parquet row (without the
    shard and member locations, which the writer fills in)."""

    key: str
    members: dict[str, bytes]
    row: dict[str, Any]


@dataclass
class VideoWork:
    record: dict[str, Any]  # the manifest row
    ctx: StageContext
    path: Path | None = None  # local file with the video's bytes
    probe: Any = None  # longvid.media.probe.ProbeResult
    input_checksum: dict[str, Any] = field(default_factory=dict)
    cuts: list[float] = field(default_factory=list)  # shot boundary times (s)
    frame_times: np.ndarray | None = None  # (N,) float64, times of the decoded frames
    motion: np.ndarray | None = None  # (N,) float32, mean |Δluma| to the previous frame, 0..255
    luma: np.ndarray | None = None  # (N,) float32, mean luma per frame, 0..255
    frame_hashes: np.ndarray | None = None  # (N,) uint64, DCT hash per frame (dedup.fingerprint)
    frame_colours: np.ndarray | None = None  # (N, 3) uint8, mean colour per frame
    kept_frames: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (t, H×W×3 RGB)
    specs: list[SampleSpec] = field(default_factory=list)
    outputs: list[SampleOutput] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    failed: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. declared vs measured duration

    @property
    def source(self) -> str:
        return str(self.record["source"])

    @property
    def record_id(self) -> str:
        return str(self.record["record_id"])

    @property
    def uri(self) -> str:
        return str(self.record["video_uri"])

    def reject_row(
        self, stage: str, reason: str, detail: str, locator: str | None = None
    ) -> Reject:
        return Reject(
            source=self.source,
            record_id=self.record_id,
            locator=locator or str(self.record.get("locator") or ""),
            stage=stage,
            reason=reason,
            detail=detail,
        )

    def fail(self, stage: str, reason: str, detail: str) -> None:
        """The whole record is rejected; later stages do not run for it. A rejected record is
        exactly one row: sample-level rows it had so far fold into its detail."""
        dropped = [r for r in self.rejects if r.record_id == self.record_id]
        if dropped:
            detail += f" (also: {dropped[0].detail}" + (
                f"; and {len(dropped) - 1} more)" if len(dropped) > 1 else ")"
            )
        self.rejects = [r for r in self.rejects if r.record_id != self.record_id]
        self.rejects.append(self.reject_row(stage, reason, detail))
        self.failed = True
        self.outputs = []

    def reject_sample(self, stage: str, reason: str, key_or_span: str, detail: str) -> None:
        """One sample (or one release span) is dropped; the rest of the video goes on. Its row's
        locator is the record's locator + ``#`` + the sample key or ``span:<id>``."""
        locator = f"{self.record.get('locator') or ''}#{key_or_span}"
        self.rejects.append(self.reject_row(stage, reason, detail, locator))
