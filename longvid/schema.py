"""The tables that connect the stages: manifest (ingest → build), samples (build → loader/audit)
and rejects (every stage). Also the sample key, which must be deterministic and safe.

A row of the manifest is one *source video* with everything its release says about it. A row of
``samples.parquet`` is one *sample* in a shard. A row of ``rejects.parquet`` is one input record
(or one sample) that did not make it, with the stage and the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

SOURCES = ("ego4d", "howto100m", "hdvila", "miradata", "webvid", "generic")
TEXT_KINDS = ("narration", "asr", "caption", "summary", "title")

# One timed text item. ``end`` is null for point-in-time items (Ego4D narrations).
TIMED_TEXT = pa.struct(
    [
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("text", pa.string()),
        ("kind", pa.string()),  # one of TEXT_KINDS
        ("origin", pa.string()),  # the field it came from, e.g. "narration_pass_1", "dense_caption"
    ]
)

# A span that the release itself defines (HD-VILA clip, MiraData clip, Ego4D summary).
SOURCE_SPAN = pa.struct(
    [
        ("span_id", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("raw", pa.string()),  # the original text the span was parsed from
    ]
)

MANIFEST_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),  # "<source>:<video_id>", unique in a manifest
        ("source", pa.string()),
        ("video_id", pa.string()),
        ("video_uri", pa.string()),  # local path, s3://… or http(s)://…
        ("declared_duration", pa.float64()),
        ("declared_fps", pa.float64()),
        ("declared_width", pa.int32()),
        ("declared_height", pa.int32()),
        ("spans", pa.list_(SOURCE_SPAN)),
        ("texts", pa.list_(TIMED_TEXT)),
        ("categories", pa.list_(pa.string())),
        ("licence", pa.string()),
        ("locator", pa.string()),  # "<file>:<line or record index>" of the input record
        ("raw", pa.string()),  # JSON of the raw values that were parsed
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("record_id", pa.string()),  # may be null when the id itself was unreadable
        ("locator", pa.string()),
        ("stage", pa.string()),  # ingest | probe | segment | cut | annotate | filter | write
        ("reason", pa.string()),  # short tag, e.g. "missing_field", "truncated", "filter:black"
        ("detail", pa.string()),  # human-readable: names the input and what was wrong
    ]
)

MEMBER = pa.struct([("ext", pa.string()), ("offset", pa.int64()), ("size", pa.int64())])


@dataclass
class Reject:
    source: str
    record_id: str | None
    locator: str
    stage: str
    reason: str
    detail: str

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TimedText:
    start: float
    end: float | None
    text: str
    kind: str
    origin: str


@dataclass
class SourceSpan:
    span_id: str
    start: float
    end: float
    raw: str = ""


@dataclass
class VideoRecord:
    """One manifest row, as the ingest adapters produce it."""

    source: str
    video_id: str
    video_uri: str
    locator: str
    licence: str
    declared_duration: float | None = None
    declared_fps: float | None = None
    declared_width: int | None = None
    declared_height: int | None = None
    spans: list[SourceSpan] = field(default_factory=list)
    texts: list[TimedText] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def record_id(self) -> str:
        return f"{self.source}:{self.video_id}"

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["record_id"] = self.record_id
        row["raw"] = json.dumps(self.raw, sort_keys=True, ensure_ascii=False, default=str)
        return row


_KEY_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def sample_key(source: str, video_id: str, start: float, end: float) -> str:
    """Deterministic shard key for (source, video id, span).

    No dots or slashes (webdataset splits the member name at the first dot), at most 82
    characters so that ``KEY.emb.npy`` still fits a plain ustar name field (100 bytes: wids reads
    only that field), unique: when the id had to be sanitised or shortened, a hash of the
    original id is appended so that two ids that sanitise alike stay distinct.
    """
    safe = _KEY_SAFE.sub("_", video_id)
    if safe != video_id or len(safe) > 40:
        digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:10]
        safe = f"{safe[:30]}_{digest}"
    start_ms = int(round(start * 1000))
    end_ms = int(round(end * 1000))
    return f"{source}_{safe}_{start_ms:09d}_{end_ms:09d}"
