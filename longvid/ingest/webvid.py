"""WebVid-2M / 10M ``results_*.csv``: one clip per row, columns mapped by name (the 2M and 10M
releases order them differently).

Input records: the CSV rows. ``videoid`` is unique only together with ``page_dir``, so the
record's video id is ``<page_dir>_<videoid>`` (no slash); both are kept in ``raw``. The video is
``<root>/<video_dir>/<page_dir>/<videoid><ext>``. ``name`` becomes a ``title`` text over the
whole clip and the ISO-8601 ``duration`` the declared duration (it was scraped and can be wrong:
the build's probe has the last word).
"""

from __future__ import annotations

from collections.abc import Iterator

from longvid.errors import FormatError
from longvid.ingest.base import (
    Item,
    RecordIssue,
    check_id,
    clean_text,
    locate,
    reject_from,
    resolve_root,
    under_root,
)
from longvid.ingest.config import WebVidSource
from longvid.ingest.streams import csv_rows, match_files
from longvid.ingest.timeparse import TimeParseError, parse_iso_duration
from longvid.schema import TimedText, VideoRecord

SOURCE = "webvid"
REQUIRED = ["videoid", "page_dir", "name"]
KNOWN = ["videoid", "contentUrl", "duration", "page_dir", "name", "page_idx"]


def _row(cfg: WebVidSource, root: str, row: dict[str, str], locator: str) -> VideoRecord:
    videoid = check_id(row.get("videoid", "").strip(), "videoid")
    page_dir = check_id(row.get("page_dir", "").strip(), "page_dir")
    name = clean_text(row.get("name"))
    if name is None:
        raise RecordIssue("missing_field", "name (the caption) is empty")
    raw_duration = row.get("duration", "").strip()
    duration = None
    if raw_duration:
        try:
            duration = parse_iso_duration(raw_duration)
        except TimeParseError as exc:
            raise RecordIssue("bad_time", f"duration: {exc}") from None
        if duration <= 0:
            raise RecordIssue("bad_span", f"duration {raw_duration!r} is zero")
    raw = {k: row[k] for k in KNOWN if k in row}
    return VideoRecord(
        source=SOURCE,
        video_id=f"{page_dir}_{videoid}",
        video_uri=under_root(root, cfg.video_dir, page_dir, videoid + cfg.video_ext),
        locator=locator,
        licence=cfg.licence,
        declared_duration=duration,
        texts=[TimedText(start=0.0, end=duration, text=name, kind="title", origin="name")],
        raw=raw,
    )


def iter_items(cfg: WebVidSource) -> Iterator[Item]:
    root = resolve_root(cfg.root)
    count = 0
    for uri in match_files(root, cfg.metadata_files):
        with csv_rows(uri) as (header, rows):
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise FormatError(
                    f"{uri}: not a WebVid results CSV: expected columns "
                    f"{KNOWN} (in any order), found {header} (missing {missing})"
                )
            for line, row in rows:
                if cfg.max_records is not None and count >= cfg.max_records:
                    return
                count += 1
                locator = locate(uri, line)
                try:
                    yield _row(cfg, root, row, locator)
                except RecordIssue as issue:
                    vid = row.get("videoid", "").strip()
                    page = row.get("page_dir", "").strip()
                    yield reject_from(
                        SOURCE, f"{page}_{vid}" if vid and page else None, locator, issue
                    )
