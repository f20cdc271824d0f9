"""Helpers for the ingest tests: run one adapter, write small release files by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from longvid.ingest.base import get_adapter, inputs_of
from longvid.schema import Reject, VideoRecord


def collect(cfg: Any) -> tuple[list[VideoRecord], list[Reject]]:
    """Every item one source's adapter yields, split into records and rejects."""
    records: list[VideoRecord] = []
    rejects: list[Reject] = []
    for item in get_adapter(cfg.name).iter_items(cfg):
        (records if isinstance(item, VideoRecord) else rejects).append(item)
    return records, rejects


def by_id(records: list[VideoRecord]) -> dict[str, VideoRecord]:
    return {r.video_id: r for r in records}


def reasons(rejects: list[Reject]) -> dict[str, str]:
    """locator → reason."""
    return {r.locator: r.reason for r in rejects}


def accepted_inputs(records: list[VideoRecord]) -> int:
    return sum(inputs_of(r) for r in records)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def texts(record: VideoRecord) -> list[tuple[float, float | None, str, str, str]]:
    return [(t.start, t.end, t.text, t.kind, t.origin) for t in record.texts]


def spans(record: VideoRecord) -> list[tuple[str, float, float, str]]:
    return [(s.span_id, s.start, s.end, s.raw) for s in record.spans]
