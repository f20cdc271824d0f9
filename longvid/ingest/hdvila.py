"""HD-VILA-100M: ``hdvila_part*.jsonl`` (one YouTube video per line with its ``clip`` list)
and ``hdvila_clip_text_100m.jsonl`` (``{"clip_id", "text"}``, one ASR sentence per clip).

Input records: one per metadata line (raw-video mode, the default: the record is the raw video
``<root>/<video_dir>/<video_id><ext>`` with every clip as a span), or one per clip
(``use_clip_files``: the record is the pre-cut file ``<root>/<clips_dir>/<video_id>/<clip_id>``;
a line that cannot be read at all then counts as one input).

In raw-video mode a clip with a bad span or id is dropped from its video (counted in
``raw["dropped"]``) and the video is rejected only when no clip is left.

The clip-text file can hold 100M lines, more than fits in memory: it is streamed once into a
temporary SQLite index on disk (clip_id → text) and looked up per clip.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Any

from longvid.errors import FormatError
from longvid.ingest.base import (
    Drops,
    Item,
    RecordIssue,
    check_id,
    clean_text,
    locate,
    reject_from,
    resolve_root,
    under_root,
)
from longvid.ingest.config import HDVilaSource
from longvid.ingest.streams import BadLine, jsonl_lines, match_files
from longvid.ingest.timeparse import TimeParseError, parse_span
from longvid.schema import SourceSpan, TimedText, VideoRecord

SOURCE = "hdvila"
TEXT_ORIGIN = "hdvila_clip_text"
_INSERT_BATCH = 10_000


class ClipTextIndex:
    """clip_id → ASR text, on disk. The first text seen for a clip wins; lines without a string
    ``clip_id`` or with a non-string ``text`` are counted in ``skipped``."""

    def __init__(self, uri: str):
        self.uri = uri
        self.skipped = 0
        self._dir = tempfile.mkdtemp(prefix="longvid-hdvila-text-")
        self._db = sqlite3.connect(os.path.join(self._dir, "text.sqlite"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE t (clip_id TEXT PRIMARY KEY, text TEXT) WITHOUT ROWID")
        batch: list[tuple[str, str]] = []
        for number, obj in jsonl_lines(uri):
            if number == 1 and isinstance(obj, dict) and "clip" in obj and "clip_id" not in obj:
                raise FormatError(
                    f"{uri}: this is an HD-VILA metadata file (lines with 'clip'), "
                    "expected the clip-text file with lines {clip_id, text}"
                )
            if not isinstance(obj, dict) or not isinstance(obj.get("clip_id"), str):
                self.skipped += 1
                continue
            text = clean_text(obj.get("text"))
            if text is None:
                self.skipped += 1
                continue
            batch.append((obj["clip_id"], text))
            if len(batch) >= _INSERT_BATCH:
                self._insert(batch)
        self._insert(batch)
        self._db.commit()

    def _insert(self, batch: list[tuple[str, str]]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO t VALUES (?, ?)", batch)
        batch.clear()

    def get(self, clip_id: str) -> str | None:
        row = self._db.execute("SELECT text FROM t WHERE clip_id = ?", (clip_id,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()
        for name in os.listdir(self._dir):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._dir, name))
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def _parse_clip(item: Any, index: int) -> tuple[str, float, float, list[Any]]:
    """One ``clip`` entry → (clip_id, start, end, raw span). Raises RecordIssue."""
    if not isinstance(item, dict):
        raise RecordIssue(
            "bad_record", f"clip[{index}] is {type(item).__name__}, expected an object"
        )
    clip_id = check_id(item.get("clip_id"), f"clip[{index}].clip_id")
    span = item.get("span")
    if not isinstance(span, list) or len(span) != 2:
        raise RecordIssue("bad_span", f"clip[{index}].span must be [start, end], got {span!r}")
    try:
        start, end = parse_span(span[0], span[1])
    except TimeParseError as exc:
        reason = "bad_span" if "not after" in str(exc) else "bad_time"
        raise RecordIssue(reason, f"clip {clip_id!r}: {exc}") from None
    return clip_id, start, end, span


def _line_record(obj: Any) -> tuple[str, list[Any]]:
    """The video id and clip list of one metadata line. Raises RecordIssue."""
    if not isinstance(obj, dict):
        raise RecordIssue("bad_record", f"line is {type(obj).__name__}, expected an object")
    if "clip" not in obj and "clips" in obj:
        raise RecordIssue("missing_field", "no 'clip' list (the key is singular; found 'clips')")
    vid = check_id(obj.get("video_id"), "video_id")
    clips = obj.get("clip")
    if not isinstance(clips, list) or not clips:
        raise RecordIssue("missing_field", "'clip' is missing or not a non-empty list")
    return vid, clips


def _video_record(
    cfg: HDVilaSource,
    root: str,
    obj: dict[str, Any],
    vid: str,
    clips: list[Any],
    locator: str,
    texts_index: ClipTextIndex | None,
) -> VideoRecord:
    drops = Drops()
    spans: list[SourceSpan] = []
    texts: list[TimedText] = []
    seen: set[str] = set()
    first_issue: RecordIssue | None = None
    for i, item in enumerate(clips):
        try:
            clip_id, start, end, span = _parse_clip(item, i)
            if clip_id in seen:
                raise RecordIssue("duplicate_id", f"clip_id {clip_id!r} appears twice")
        except RecordIssue as issue:
            drops.add(f"clip[{i}]", issue.reason, issue.detail)
            first_issue = first_issue or issue
            continue
        seen.add(clip_id)
        spans.append(SourceSpan(span_id=clip_id, start=start, end=end, raw=json.dumps(span)))
        text = texts_index.get(clip_id) if texts_index else None
        if text:
            texts.append(TimedText(start=start, end=end, text=text, kind="asr", origin=TEXT_ORIGIN))
    if not spans:
        assert first_issue is not None
        raise RecordIssue(first_issue.reason, f"no usable clip: {first_issue.detail}")
    spans.sort(key=lambda s: (s.start, s.end))
    texts.sort(key=lambda t: (t.start, t.end or 0.0))
    raw = {"video_id": vid, "url": obj.get("url"), "clips": len(clips)}
    return VideoRecord(
        source=SOURCE,
        video_id=vid,
        video_uri=under_root(root, cfg.video_dir, vid + cfg.video_ext),
        locator=locator,
        licence=cfg.licence,
        spans=spans,
        texts=texts,
        raw=drops.into(raw),
    )


def _clip_records(
    cfg: HDVilaSource, root: str, obj: Any, locator: str, texts_index: ClipTextIndex | None
) -> Iterator[Item]:
    """Clip-file mode: one record (or reject) per clip of a line."""
    try:
        vid, clips = _line_record(obj)
    except RecordIssue as issue:
        clips = obj.get("clip") if isinstance(obj, dict) else None
        n = len(clips) if isinstance(clips, list) and clips else 1
        for i in range(n):
            yield reject_from(SOURCE, None, f"{locator}:clip[{i}]" if n > 1 else locator, issue)
        return
    for i, item in enumerate(clips):
        clip_locator = f"{locator}:clip[{i}]"
        try:
            clip_id, start, end, span = _parse_clip(item, i)
        except RecordIssue as issue:
            cid = item.get("clip_id") if isinstance(item, dict) else None
            yield reject_from(
                SOURCE,
                cid.removesuffix(".mp4") if isinstance(cid, str) else None,
                clip_locator,
                issue,
            )
            continue
        clip_vid = clip_id.removesuffix(".mp4")
        duration = round(end - start, 6)
        text = texts_index.get(clip_id) if texts_index else None
        yield VideoRecord(
            source=SOURCE,
            video_id=clip_vid,
            video_uri=under_root(root, cfg.clips_dir, vid, clip_id),
            locator=clip_locator,
            licence=cfg.licence,
            declared_duration=duration,
            texts=[TimedText(start=0.0, end=duration, text=text, kind="asr", origin=TEXT_ORIGIN)]
            if text
            else [],
            raw={
                "video_id": vid,
                "url": obj.get("url"),
                "clip_id": clip_id,
                "span": span,
                "span_seconds": [start, end],
            },
        )


def iter_items(cfg: HDVilaSource) -> Iterator[Item]:
    root = resolve_root(cfg.root)
    files = match_files(root, cfg.metadata_files)
    texts_index = None
    if cfg.text_file:
        text_uri = under_root(root, cfg.text_file)
        files = [f for f in files if f != text_uri]
        texts_index = ClipTextIndex(text_uri)
    try:
        count = 0
        for uri in files:
            for number, obj in jsonl_lines(uri):
                locator = locate(uri, number)
                if number == 1 and isinstance(obj, dict) and "clip_id" in obj and "clip" not in obj:
                    raise FormatError(
                        f"{uri}: this looks like the clip-text file (lines with "
                        "clip_id/text), expected metadata lines with keys "
                        f"[video_id, url, clip], found {sorted(obj)}"
                    )
                if isinstance(obj, BadLine):
                    items: Iterator[Item] = iter(
                        [reject_from(SOURCE, None, locator, RecordIssue(obj.reason, obj.detail))]
                    )
                elif cfg.use_clip_files:
                    items = _clip_records(cfg, root, obj, locator, texts_index)
                else:
                    items = _one_video(cfg, root, obj, locator, texts_index)
                for item in items:
                    if cfg.max_records is not None and count >= cfg.max_records:
                        return
                    count += 1
                    yield item
    finally:
        if texts_index is not None:
            texts_index.close()


def _one_video(
    cfg: HDVilaSource, root: str, obj: Any, locator: str, texts_index: ClipTextIndex | None
) -> Iterator[Item]:
    vid = obj.get("video_id") if isinstance(obj, dict) else None
    try:
        vid, clips = _line_record(obj)
        yield _video_record(cfg, root, obj, vid, clips, locator, texts_index)
    except RecordIssue as issue:
        yield reject_from(SOURCE, vid, locator, issue)
