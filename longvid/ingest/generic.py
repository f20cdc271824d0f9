"""A source of your own: a folder of videos, or a JSONL/CSV list of them.

Folder mode (``manifest: null``): every file under ``root`` (recursively) whose extension is in
``extensions`` is one input record; its id is its path below the root without the extension,
with ``/`` written as ``__`` (``cooking/day1.mp4`` → ``cooking__day1``).

List mode (``manifest: list.jsonl`` or ``list.csv``): each line/row is one input record with

- ``path`` (required): the video, relative to ``root`` (absolute paths, URIs and ``..`` are
  rejected as ``unsafe_id``);
- ``id``: the video id (default: derived from ``path`` as in folder mode);
- ``text``: a string (a text over the whole video) or a list of timed items ``{"start", "end",
  "text"}`` / ``[start, end, text]`` (``end`` may be null for a point in time); times are seconds
  or ``H:MM:SS.fff`` strings;
- ``spans``: a list of ``[start, end]`` / ``{"start", "end", "id"}`` (in a CSV: a list literal);
- ``duration``, ``fps``, ``width``, ``height``, ``categories`` (list, or ``;``-separated in a
  CSV), ``licence`` (overrides the configured tag): optional.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from longvid import storage
from longvid.errors import FormatError
from longvid.ingest.base import (
    Item,
    RecordIssue,
    check_id,
    check_relpath,
    clean_text,
    locate,
    reject_from,
    resolve_root,
    under_root,
)
from longvid.ingest.config import GenericSource
from longvid.ingest.streams import BadLine, csv_rows, jsonl_lines, relative_name
from longvid.ingest.timeparse import TimeParseError, parse_list_literal, parse_number, parse_time
from longvid.schema import SourceSpan, TimedText, VideoRecord

SOURCE = "generic"


def id_from_path(rel: str) -> str:
    """``a/b/clip.mp4`` → ``a__b__clip``."""
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return stem.replace("/", "__")


def _optional_number(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    try:
        return parse_number(value)
    except TimeParseError as exc:
        raise RecordIssue("bad_value", f"{key}: {exc}") from None


def _texts(value: Any, kind: str, duration: float | None) -> list[TimedText]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = clean_text(value)
        return (
            [TimedText(start=0.0, end=duration, text=text, kind=kind, origin="text")]
            if text
            else []
        )
    if not isinstance(value, list):
        raise RecordIssue(
            "bad_text", f"text must be a string or a list, got {type(value).__name__}"
        )
    texts: list[TimedText] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            start, end, text = item.get("start"), item.get("end"), item.get("text")
        elif isinstance(item, list) and len(item) in (2, 3):
            start, end, text = (item[0], None, item[1]) if len(item) == 2 else item
        else:
            raise RecordIssue(
                "bad_text", f"text[{i}] must be {{start, end, text}} or [start, end, text]"
            )
        if not isinstance(text, str):
            raise RecordIssue("bad_text", f"text[{i}].text is {type(text).__name__}, not a string")
        try:
            t0 = parse_time(start)
            t1 = parse_time(end) if end is not None else None
        except TimeParseError as exc:
            raise RecordIssue("bad_time", f"text[{i}]: {exc}") from None
        if t1 is not None and t1 <= t0:
            raise RecordIssue("bad_span", f"text[{i}]: end {t1} is not after start {t0}")
        if clean_text(text):
            texts.append(
                TimedText(start=t0, end=t1, text=clean_text(text), kind=kind, origin="text")
            )
    return sorted(texts, key=lambda t: (t.start, t.end or 0.0))


def _spans(value: Any) -> list[SourceSpan]:
    if value is None or value == "":
        return []
    raw_string = value if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            value = parse_list_literal(value)
        except TimeParseError as exc:
            raise RecordIssue("bad_span", f"spans: {exc}") from None
    if not isinstance(value, list):
        raise RecordIssue("bad_span", f"spans must be a list, got {type(value).__name__}")
    spans: list[SourceSpan] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            start, end, span_id = item.get("start"), item.get("end"), item.get("id", str(i))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            (start, end), span_id = item, str(i)
        else:
            raise RecordIssue("bad_span", f"spans[{i}] must be [start, end] or {{start, end}}")
        try:
            t0, t1 = parse_time(start), parse_time(end)
        except TimeParseError as exc:
            raise RecordIssue("bad_time", f"spans[{i}]: {exc}") from None
        if t1 <= t0:
            raise RecordIssue("bad_span", f"spans[{i}]: end {t1} is not after start {t0}")
        raw = raw_string if raw_string is not None else json.dumps([start, end])
        spans.append(SourceSpan(span_id=str(span_id), start=t0, end=t1, raw=raw))
    return sorted(spans, key=lambda s: (s.start, s.end))


def _categories(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(";") if c.strip()]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return value
    raise RecordIssue("bad_value", "categories must be a list of strings")


def _entry_record(cfg: GenericSource, root: str, entry: Any, locator: str) -> VideoRecord:
    if not isinstance(entry, dict):
        raise RecordIssue("bad_record", f"expected an object, got {type(entry).__name__}")
    rel = check_relpath(entry.get("path"), "path")
    vid = entry.get("id")
    vid = check_id(vid, "id") if vid not in (None, "") else check_id(id_from_path(rel), "path")
    duration = _optional_number(entry, "duration")
    licence = (
        entry.get("licence")
        if isinstance(entry.get("licence"), str) and entry.get("licence")
        else cfg.licence
    )
    width, height = _optional_number(entry, "width"), _optional_number(entry, "height")
    return VideoRecord(
        source=SOURCE,
        video_id=vid,
        video_uri=under_root(root, rel),
        locator=locator,
        licence=licence,
        declared_duration=duration,
        declared_fps=_optional_number(entry, "fps"),
        declared_width=int(width) if width is not None else None,
        declared_height=int(height) if height is not None else None,
        spans=_spans(entry.get("spans")),
        texts=_texts(entry.get("text"), cfg.text_kind, duration),
        categories=_categories(entry.get("categories")),
        raw={k: v for k, v in entry.items() if k != "text"},
    )


def _entries(uri: str) -> Iterator[tuple[str, Any]]:
    name = uri.rsplit("/", 1)[-1].lower()
    if name.endswith((".jsonl", ".json", ".ndjson")):
        for number, obj in jsonl_lines(uri):
            yield locate(uri, number), obj
    elif name.endswith((".csv", ".tsv")):
        with csv_rows(uri) as (header, rows):
            if "path" not in header:
                raise FormatError(
                    f"{uri}: a generic video list needs a 'path' column; found {header}"
                )
            for line, row in rows:
                yield locate(uri, line), row
    else:
        raise FormatError(f"{uri}: a generic video list must be .jsonl or .csv")


def _folder(cfg: GenericSource, root: str) -> Iterator[Item]:
    extensions = tuple(e.lower() for e in cfg.extensions)
    for uri in storage.list_files(root):
        if not uri.lower().endswith(extensions):
            continue
        rel = relative_name(root, uri)
        locator = rel
        try:
            vid = check_id(id_from_path(rel), "path")
        except RecordIssue as issue:
            yield reject_from(SOURCE, None, locator, issue)
            continue
        yield VideoRecord(
            source=SOURCE,
            video_id=vid,
            video_uri=uri,
            locator=locator,
            licence=cfg.licence,
            raw={"path": rel},
        )


def iter_items(cfg: GenericSource) -> Iterator[Item]:
    root = resolve_root(cfg.root)
    if cfg.manifest is None:
        items: Iterator[Item] = _folder(cfg, root)
    else:
        manifest = (
            cfg.manifest
            if storage.is_remote(cfg.manifest) or cfg.manifest.startswith("/")
            else under_root(root, cfg.manifest)
        )
        items = _list_items(cfg, root, manifest)
    for count, item in enumerate(items):
        if cfg.max_records is not None and count >= cfg.max_records:
            return
        yield item


def _list_items(cfg: GenericSource, root: str, manifest: str) -> Iterator[Item]:
    for locator, entry in _entries(manifest):
        if isinstance(entry, BadLine):
            yield reject_from(SOURCE, None, locator, RecordIssue(entry.reason, entry.detail))
            continue
        try:
            yield _entry_record(cfg, root, entry, locator)
        except RecordIssue as issue:
            vid = entry.get("id") if isinstance(entry, dict) else None
            yield reject_from(SOURCE, vid if isinstance(vid, str) else None, locator, issue)
