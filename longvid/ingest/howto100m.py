"""HowTo100M: ``HowTo100M_v1.csv`` (video list + categories + task id) joined with
``caption.json`` / ``raw_caption.json`` (one huge dict ``{video_id: {start, end, text}}``) and
``task_ids.csv`` (task id → name).

Input records: every row of ``HowTo100M_v1.csv``, plus every caption entry whose id is not in
the CSV (accepted without categories). The CSV (small) is held in memory as compact tuples;
``caption.json`` is streamed entry by entry with ijson, its bare ``NaN`` tokens turned into
``null`` on the fly (:class:`~longvid.ingest.streams.NanToNull`) and skipped as texts, so memory
does not grow with the caption file. Records come in caption-file order, then the CSV rows
without captions in CSV order.

Videos have no official layout: ``<root>/<video_dir>/<video_id><ext>``. YouTube ids may start
with ``-``; the URI always starts with the root, so it never reads as a command-line option.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

from longvid import storage
from longvid.errors import FormatError
from longvid.ingest.base import (
    Drops,
    Item,
    RecordIssue,
    check_id,
    locate,
    reject_from,
    resolve_root,
    under_root,
)
from longvid.ingest.config import HowTo100MSource
from longvid.ingest.streams import csv_rows, json_dict_items, sniff_table
from longvid.ingest.timeparse import normalise_seconds
from longvid.schema import TimedText, VideoRecord

log = logging.getLogger(__name__)

SOURCE = "howto100m"
CSV_COLUMNS = ["video_id", "category_1", "category_2", "rank", "task_id"]

# How many emitted words the de-duplication looks back over (a rolling caption repeats one line).
MAX_OVERLAP_WORDS = 64


def dedup_rolling_asr(
    segments: list[tuple[float, float, str]],
) -> tuple[list[tuple[float, float, str]], int]:
    """Rolling auto-ASR → clean, non-overlapping, non-repeating segments.

    ``segments`` are ``(start, end, text)`` with valid times and non-empty text. The rule:

    1. Sort by ``(start, end)`` (stable).
    2. Keep the words emitted so far (the last :data:`MAX_OVERLAP_WORDS`). For each segment,
       find the largest ``k`` such that its first ``k`` words equal the last ``k`` emitted words
       (compared case-insensitively) and remove those ``k`` words: a rolling caption that
       repeats the previous line's tail keeps only its new words.
    3. A segment with no words left repeats what was said already and is dropped (counted).
    4. A segment that starts at the same time as the previous kept one is merged into it (words
       appended, end = the later end).
    5. Otherwise the previous kept segment ends at ``min(its end, this start)``: segments never
       overlap, and gaps between them are kept.

    Returns ``(segments, number dropped as repeats)``.
    """
    ordered = sorted(segments, key=lambda s: (s[0], s[1]))
    out: list[list[Any]] = []
    emitted: list[str] = []
    repeats = 0
    for start, end, text in ordered:
        words = text.split()
        lowered = text.lower().split()
        # the largest k with emitted[-k:] == lowered[:k]: try the tail positions holding the
        # first word, earliest (largest k) first
        tail = emitted[-len(words) :]
        overlap = 0
        for i, word in enumerate(tail):
            if word == lowered[0] and tail[i:] == lowered[: len(tail) - i]:
                overlap = len(tail) - i
                break
        new_words = words[overlap:]
        if not new_words:
            repeats += 1
            continue
        emitted = (emitted + lowered[overlap:])[-MAX_OVERLAP_WORDS:]
        if out and start <= out[-1][0]:
            out[-1][1] = max(out[-1][1], end)
            out[-1][2] += " " + " ".join(new_words)
            continue
        if out:
            out[-1][1] = min(out[-1][1], start)
        out.append([start, end, " ".join(new_words)])
    return [(s, e, t) for s, e, t in out], repeats


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return normalise_seconds(value) if math.isfinite(value) and value >= 0 else None


def parse_captions(
    value: Any, drops: Drops, dedup: bool
) -> tuple[list[tuple[float, float, str]], int]:
    """One caption entry ``{"start": [...], "end": [...], "text": [...]}`` → segments.

    Items with a non-string text (NaN in the file), empty text, a non-numeric time or end before
    start are dropped and counted in ``drops``; lists of unequal length are read up to the
    shortest one (the extra items are counted as ``misaligned``). Returns
    ``(segments, raw item count)``.
    """
    if not isinstance(value, dict):
        raise RecordIssue(
            "bad_record", f"caption entry is {type(value).__name__}, expected an object"
        )
    missing = [k for k in ("start", "end", "text") if k not in value]
    if missing:
        raise RecordIssue("missing_field", f"caption entry lacks {', '.join(missing)}")
    starts, ends, texts = value["start"], value["end"], value["text"]
    if not all(isinstance(x, list) for x in (starts, ends, texts)):
        raise RecordIssue("bad_record", "caption start/end/text must be lists")
    n = min(len(starts), len(ends), len(texts))
    longest = max(len(starts), len(ends), len(texts))
    for i in range(n, longest):
        drops.add(f"item[{i}]", "misaligned", "start/end/text lists differ in length")
    segments: list[tuple[float, float, str]] = []
    for i in range(n):
        raw_text = texts[i]
        if not isinstance(raw_text, str):
            reason = (
                "nan_text" if raw_text is None or isinstance(raw_text, float) else "non_string_text"
            )
            drops.add(f"text[{i}]", reason, f"text is {raw_text!r}")
            continue
        text = " ".join(raw_text.split())
        if not text:
            drops.add(f"text[{i}]", "empty_text", "")
            continue
        start, end = _finite(starts[i]), _finite(ends[i])
        if start is None or end is None:
            drops.add(f"item[{i}]", "bad_time", f"start {starts[i]!r}, end {ends[i]!r}")
            continue
        if end <= start:
            drops.add(f"item[{i}]", "bad_span", f"end {end} is not after start {start}")
            continue
        segments.append((start, end, text))
    if dedup:
        segments, repeats = dedup_rolling_asr(segments)
        if repeats:
            drops.counts["asr_repeat"] += repeats
    return segments, n


def _task_names(uri: str) -> dict[str, str]:
    """task_ids.csv → {task_id: name}; delimiter and header are sniffed (not documented)."""
    text = storage.read_text(uri)
    delimiter, has_header = sniff_table(text[:8192])
    names: dict[str, str] = {}
    for i, line in enumerate(text.splitlines()):
        if (i == 0 and has_header) or not line.strip():
            continue
        task_id, _, name = line.partition(delimiter)
        if name.strip():
            names[task_id.strip()] = name.strip()
    return names


def _video_list(cfg: HowTo100MSource, uri: str) -> tuple[dict[str, tuple], list[Item]]:
    """HowTo100M_v1.csv → ({video_id: (line, category_1, category_2, rank, task_id)}, rejects)."""
    videos: dict[str, tuple] = {}
    rejects: list[Item] = []
    intern: dict[str, str] = {}  # categories repeat a lot: share one string per value
    with csv_rows(uri) as (header, rows):
        if "video_id" not in header:
            raise FormatError(
                f"{uri}: not a HowTo100M video list: expected columns {CSV_COLUMNS}, found {header}"
            )
        for line, row in rows:
            locator = locate(uri, line)
            vid = row.get("video_id", "")
            try:
                check_id(vid, "video_id")
                if vid in videos:
                    raise RecordIssue("duplicate_id", f"video_id {vid!r} is listed twice")
            except RecordIssue as issue:
                rejects.append(reject_from(SOURCE, vid, locator, issue))
                continue
            cats = tuple(
                intern.setdefault(v, v)
                for v in (
                    row.get("category_1", ""),
                    row.get("category_2", ""),
                    row.get("rank", ""),
                    row.get("task_id", ""),
                )
            )
            videos[vid] = (line, *cats)
    return videos, rejects


def _record(
    cfg: HowTo100MSource,
    root: str,
    vid: str,
    locator: str,
    listed: tuple | None,
    tasks: dict[str, str],
    segments: list[tuple[float, float, str]] | None,
    n_raw: int,
    drops: Drops,
    origin: str,
) -> VideoRecord:
    raw: dict[str, Any] = {"video_id": vid}
    categories: list[str] = []
    if listed is not None:
        _, cat1, cat2, rank, task_id = listed
        raw.update(category_1=cat1, category_2=cat2, rank=rank, task_id=task_id)
        task = tasks.get(task_id)
        if task:
            raw["task_name"] = task
        categories = [c for c in (cat1, cat2, task) if c]
    else:
        raw["listed"] = False  # captions for a video that is not in HowTo100M_v1.csv
    raw["asr_items"] = n_raw
    texts = [
        TimedText(start=s, end=e, text=t, kind="asr", origin=origin) for s, e, t in (segments or [])
    ]
    return VideoRecord(
        source=SOURCE,
        video_id=vid,
        video_uri=under_root(root, cfg.video_dir, vid + cfg.video_ext),
        locator=locator,
        licence=cfg.licence,
        texts=texts,
        categories=categories,
        raw=drops.into(raw),
    )


def iter_items(cfg: HowTo100MSource) -> Iterator[Item]:
    root = resolve_root(cfg.root)
    csv_uri = under_root(root, cfg.videos_csv)
    videos, rejects = _video_list(cfg, csv_uri)
    tasks: dict[str, str] = {}
    if cfg.task_ids_file:
        task_uri = under_root(root, cfg.task_ids_file)
        if storage.exists(task_uri):
            tasks = _task_names(task_uri)
        else:
            log.warning("%s: not found; HowTo100M records get no task names", task_uri)
    budget = cfg.max_records
    count = 0

    def room() -> bool:
        return budget is None or count < budget

    for item in rejects:
        if not room():
            return
        count += 1
        yield item
    if cfg.caption_file:
        cap_uri = under_root(root, cfg.caption_file)
        origin = cfg.caption_file.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # caption | raw_caption
        with json_dict_items(cap_uri, "a HowTo100M caption file") as (entries, _):
            for index, (vid, value) in enumerate(entries):
                if not room():
                    return
                count += 1
                listed = videos.pop(vid, None)
                locator = locate(csv_uri, listed[0]) if listed else locate(cap_uri, index)
                drops = Drops()
                try:
                    check_id(vid, "video_id")
                    segments, n_raw = parse_captions(value, drops, cfg.dedup_asr)
                except RecordIssue as issue:
                    yield reject_from(SOURCE, vid, locate(cap_uri, index), issue)
                    continue
                rec = _record(
                    cfg, root, vid, locator, listed, tasks, segments, n_raw, drops, origin
                )
                rec.raw["caption_locator"] = locate(cap_uri, index)
                yield rec
    for vid, listed in videos.items():
        if not room():
            return
        count += 1
        yield _record(
            cfg, root, vid, locate(csv_uri, listed[0]), listed, tasks, None, 0, Drops(), ""
        )
