"""MiraData v1 CSV: one row per clip.

Input records: the CSV rows. ``clip_id`` is kept as the string written in the file
(``1462616.30`` and ``1462616.3`` are different clips); its integer part names the raw source
video ``<root>/<source_dir>/<id//1000:09d>/<id:012d><ext>``.

Layouts (``layout`` in the config):

- ``source`` (default): one record per source video with all its clip rows as spans, so the
  build can cut long stretches of the raw video. Rows are grouped by source id whatever their
  order in the file: a first pass counts the rows of each source (a small dict of ints), the
  second pass emits a video as soon as its last row has been read. For a file sorted by clip id
  (the release is) only one video's rows are in memory at a time.
- ``clips``: one record per row, the clip file at ``<root>/<file_path>``, times relative to it.

Captions: the six caption columns become texts (kind ``caption``, origin = the column name) over
the clip span; a column holding 120-second windows (``[|||0||| 120||| text |||,…]``, times
relative to the clip, in any order) becomes one timed text per window, sorted by start, shifted
by the clip start and clipped to the clip end.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from longvid.errors import FormatError
from longvid.ingest.base import (
    Drops,
    Item,
    RecordIssue,
    check_relpath,
    inputs_of,
    locate,
    reject_from,
    resolve_root,
    under_root,
)
from longvid.ingest.config import MiraDataSource
from longvid.ingest.streams import csv_rows
from longvid.ingest.timeparse import (
    TimeParseError,
    frames_to_seconds,
    normalise_seconds,
    parse_hms,
    parse_list_literal,
    parse_number,
)
from longvid.schema import SourceSpan, TimedText, VideoRecord

SOURCE = "miradata"
V1_COLUMNS = [
    "clip_id",
    "source",
    "video_url",
    "video_id",
    "width",
    "height",
    "fps",
    "seconds",
    "timestamp",
    "frame_number",
    "framestamp",
    "file_path",
    "short_caption",
    "dense_caption",
    "background_caption",
    "main_object_caption",
    "style_caption",
    "camera_caption",
]
REQUIRED = ["clip_id", "timestamp", "file_path"]
CAPTION_COLUMNS = [
    "short_caption",
    "dense_caption",
    "background_caption",
    "main_object_caption",
    "style_caption",
    "camera_caption",
]
V0_MARKERS = {"start_frame", "end_frame", "start_timestep", "end_timestep"}

_CLIP_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")
_WINDOW = re.compile(
    r"\s*\|\|\|\s*([^|]*?)\s*\|\|\|\s*([^|]*?)\s*\|\|\|(.*?)\|\|\|\s*,?", re.DOTALL
)


def source_index(clip_id: str) -> int:
    """The integer part of a clip id (the source video's number). Raises RecordIssue."""
    m = _CLIP_ID.match(clip_id)
    if not m:
        raise RecordIssue("bad_id", f"clip_id {clip_id!r} is not <number>.<number>")
    return int(m.group(1))


def source_path(index: int, ext: str) -> str:
    """``<id//1000:09d>/<id:012d><ext>``: where MiraData keeps the raw source video."""
    return f"{index // 1000:09d}/{index:012d}{ext}"


def parse_windows(value: str) -> list[tuple[float, float, str]] | None:
    """``[|||0||| 120||| text |||,|||120||| 240||| text |||,]`` → ``[(0, 120, text), …]`` sorted
    by start; None when ``value`` is not in the windowed form. Raises TimeParseError for a
    window whose times cannot be read."""
    body = value.strip()
    if not (body.startswith("[") and body.endswith("]") and "|||" in body[:8]):
        return None
    body = body[1:-1]
    windows: list[tuple[float, float, str]] = []
    pos = 0
    while pos < len(body) and body[pos:].strip():
        m = _WINDOW.match(body, pos)
        if not m:
            raise TimeParseError(f"window caption unreadable at character {pos + 1}")
        start, end = parse_number(m.group(1)), parse_number(m.group(2))
        windows.append(
            (normalise_seconds(start), normalise_seconds(end), " ".join(m.group(3).split()))
        )
        pos = m.end()
    windows.sort(key=lambda w: (w[0], w[1]))
    return windows


def _clip_span(row: dict[str, str]) -> tuple[float, float, str]:
    """The clip's (start, end) in the source video and the raw string it came from."""
    raw = row.get("timestamp", "").strip()
    try:
        if raw:
            values = parse_list_literal(raw)
            if len(values) != 2:
                raise TimeParseError(f"timestamp {raw!r} must hold two times")
            start, end = (
                parse_hms(v) if isinstance(v, str) else normalise_seconds(parse_number(v))
                for v in values
            )
        elif row.get("framestamp", "").strip():
            raw = row["framestamp"].strip()
            values = parse_list_literal(raw)
            if len(values) != 2:
                raise TimeParseError(f"framestamp {raw!r} must hold two frame numbers")
            start, end = (frames_to_seconds(v, row.get("fps")) for v in values)
        else:
            raise RecordIssue("missing_field", "timestamp and framestamp are both empty")
    except TimeParseError as exc:
        raise RecordIssue("bad_time", str(exc)) from None
    if end <= start:
        raise RecordIssue("bad_span", f"span {raw!r}: end {end} is not after start {start}")
    return start, end, raw


def _captions(row: dict[str, str], offset: float, end: float, drops: Drops) -> list[TimedText]:
    """The six caption columns → texts; times relative to the source video (``offset`` = clip
    start in it; ``end`` = clip end)."""
    texts: list[TimedText] = []
    for column in CAPTION_COLUMNS:
        value = row.get(column, "")
        if not value or not value.strip():
            continue
        try:
            windows = parse_windows(value)
        except TimeParseError as exc:
            drops.add(column, "bad_window_caption", str(exc))
            continue
        if windows is None:
            texts.append(
                TimedText(
                    start=offset,
                    end=end,
                    text=" ".join(value.split()),
                    kind="caption",
                    origin=column,
                )
            )
            continue
        for w_start, w_end, text in windows:
            start = normalise_seconds(offset + w_start)
            stop = min(normalise_seconds(offset + w_end), end)
            if not text or stop <= start:
                drops.add(
                    column,
                    "window_outside_clip" if text else "empty_text",
                    f"window [{w_start}, {w_end}] of a clip ending at {end - offset}",
                )
                continue
            texts.append(TimedText(start=start, end=stop, text=text, kind="caption", origin=column))
    return texts


def _float_or_none(value: str | None) -> float | None:
    try:
        return parse_number(value) if value not in (None, "") else None
    except TimeParseError:
        return None


def _int_or_none(value: str | None) -> int | None:
    number = _float_or_none(value)
    return int(number) if number is not None and number == int(number) else None


def _categories(source: str) -> tuple[str, list[str]]:
    """``"youtube, movies"`` → ("youtube", ["movies"]); ``"pixabay"`` → ("pixabay", [])."""
    platform, _, category = source.partition(",")
    return platform.strip(), [category.strip()] if category.strip() else []


def _check_header(uri: str, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if not missing:
        return
    hint = ""
    if V0_MARKERS & set(header):
        hint = (
            " (this looks like a MiraData v0 CSV with start_frame/end_frame columns; "
            "only v1 is supported)"
        )
    raise FormatError(
        f"{uri}: not a MiraData v1 CSV{hint}: expected columns {V1_COLUMNS}, "
        f"found {header} (missing {missing})"
    )


class _Clip:
    """One accepted clip row."""

    __slots__ = ("clip_id", "start", "end", "raw_span", "texts", "row", "locator")

    def __init__(
        self,
        clip_id: str,
        start: float,
        end: float,
        raw_span: str,
        texts: list[TimedText],
        row: dict[str, str],
        locator: str,
    ):
        self.clip_id, self.start, self.end, self.raw_span = clip_id, start, end, raw_span
        self.texts, self.row, self.locator = texts, row, locator


def _read_clip(row: dict[str, str], locator: str, drops: Drops, relative: bool) -> _Clip:
    """Validate one row. Times are relative to the clip when ``relative``, else to the source."""
    clip_id = row.get("clip_id", "").strip()
    if not clip_id:
        raise RecordIssue("missing_field", "clip_id is empty")
    source_index(clip_id)
    start, end, raw_span = _clip_span(row)
    base, stop = (0.0, normalise_seconds(end - start)) if relative else (start, end)
    texts = _captions(row, base, stop, drops)
    return _Clip(clip_id, start, end, raw_span, texts, row, locator)


def _row_raw(row: dict[str, str]) -> dict[str, Any]:
    """The parsed row's values for ``raw`` (captions excluded: they are in ``texts``)."""
    return {k: v for k, v in row.items() if k not in CAPTION_COLUMNS}


def _iter_clips_layout(cfg: MiraDataSource, root: str, uri: str) -> Iterator[Item]:
    with csv_rows(uri) as (header, rows):
        _check_header(uri, header)
        for line, row in rows:
            locator = locate(uri, line)
            drops = Drops()
            try:
                clip = _read_clip(row, locator, drops, relative=True)
                rel = check_relpath(row.get("file_path", ""), "file_path")
            except RecordIssue as issue:
                yield reject_from(SOURCE, row.get("clip_id") or None, locator, issue)
                continue
            platform, categories = _categories(row.get("source", ""))
            duration = normalise_seconds(clip.end - clip.start)
            yield VideoRecord(
                source=SOURCE,
                video_id=clip.clip_id,
                video_uri=under_root(root, rel),
                locator=locator,
                licence=cfg.licence,
                declared_duration=_float_or_none(row.get("seconds")) or duration,
                declared_fps=_float_or_none(row.get("fps")),
                declared_width=_int_or_none(row.get("width")),
                declared_height=_int_or_none(row.get("height")),
                texts=clip.texts,
                categories=categories,
                raw=drops.into(
                    {**_row_raw(row), "platform": platform, "span_seconds": [clip.start, clip.end]}
                ),
            )


def _count_rows(uri: str) -> Counter[int]:
    """First pass: rows per source index (rows with an unreadable clip id are not counted)."""
    counts: Counter[int] = Counter()
    with csv_rows(uri) as (header, rows):
        _check_header(uri, header)
        for _, row in rows:
            try:
                counts[source_index(row.get("clip_id", "").strip())] += 1
            except RecordIssue:
                pass
    return counts


def _source_record(
    cfg: MiraDataSource, root: str, index: int, clips: list[_Clip], drops: Drops
) -> VideoRecord:
    clips.sort(key=lambda c: (c.start, c.end))
    first = clips[0].row
    platform, categories = _categories(first.get("source", ""))
    texts = sorted((t for c in clips for t in c.texts), key=lambda t: (t.start, t.end or 0.0))
    spans = [SourceSpan(span_id=c.clip_id, start=c.start, end=c.end, raw=c.raw_span) for c in clips]
    raw = {
        "source_index": index,
        "video_id": first.get("video_id"),
        "video_url": first.get("video_url"),
        "platform": platform,
        "input_records": len(clips),
        "clips": [{**_row_raw(c.row), "locator": c.locator} for c in clips],
    }
    return VideoRecord(
        source=SOURCE,
        video_id=str(index),
        video_uri=under_root(root, cfg.source_dir, source_path(index, cfg.video_ext)),
        locator=clips[0].locator,
        licence=cfg.licence,
        declared_fps=_float_or_none(first.get("fps")),
        declared_width=_int_or_none(first.get("width")),
        declared_height=_int_or_none(first.get("height")),
        spans=spans,
        texts=texts,
        categories=categories,
        raw=drops.into(raw),
    )


def _iter_source_layout(cfg: MiraDataSource, root: str, uri: str) -> Iterator[Item]:
    remaining = _count_rows(uri)
    open_videos: dict[int, tuple[list[_Clip], Drops, set[str]]] = {}
    with csv_rows(uri) as (_, rows):
        for line, row in rows:
            locator = locate(uri, line)
            clip_id = row.get("clip_id", "").strip()
            try:
                index = source_index(clip_id) if clip_id else None
            except RecordIssue as issue:
                yield reject_from(SOURCE, None, locator, issue)
                continue
            if index is None:
                yield reject_from(
                    SOURCE, None, locator, RecordIssue("missing_field", "clip_id is empty")
                )
                continue
            clips, drops, seen = open_videos.setdefault(index, ([], Drops(), set()))
            try:
                if clip_id in seen:
                    raise RecordIssue("duplicate_id", f"clip_id {clip_id!r} appears twice")
                clip = _read_clip(row, locator, drops, relative=False)
                seen.add(clip_id)
                clips.append(clip)
            except RecordIssue as issue:
                yield reject_from(SOURCE, clip_id, locator, issue)
            remaining[index] -= 1
            if remaining[index] == 0:
                del open_videos[index]
                if clips:
                    yield _source_record(cfg, root, index, clips, drops)
    # Only reached with videos left open if the file changed between the two passes.
    for index, (clips, drops, _) in open_videos.items():
        if clips:
            yield _source_record(cfg, root, index, clips, drops)


def iter_items(cfg: MiraDataSource) -> Iterator[Item]:
    root = resolve_root(cfg.root)
    uri = under_root(root, cfg.metadata_file)
    items = (
        _iter_clips_layout(cfg, root, uri)
        if cfg.layout == "clips"
        else _iter_source_layout(cfg, root, uri)
    )
    count = 0
    for item in items:
        if cfg.max_records is not None and count >= cfg.max_records:
            return
        count += inputs_of(item) if isinstance(item, VideoRecord) else 1
        yield item
