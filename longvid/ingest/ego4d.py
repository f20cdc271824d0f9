"""Ego4D v2: ``ego4d.json`` (one object with ``videos[]``) joined with ``narration.json`` (a dict
keyed by ``video_uid``).

Input records: every entry of ``videos[]``, plus every ``narration.json`` entry whose uid is not
among the videos (rejected as ``unknown_video``). Both files are streamed: the videos' compact
metadata (a few hundred bytes each) is held by uid while ``narration.json`` streams past, so
memory grows with the number of videos, not with the narration file.

Each record: ``video_uri = <root>/<video_dir>/<video_uid><ext>``, declared duration/fps/size from
``duration_sec`` and ``video_metadata``, scenarios as categories, narrations as point-in-time
texts (kind ``narration``, origin = the pass), summaries as texts (kind ``summary``) and as spans.
Narration tags become words (:func:`untag`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from longvid.errors import FormatError
from longvid.ingest.base import (
    Drops,
    Item,
    RecordIssue,
    check_id,
    locate,
    reject,
    reject_from,
    resolve_root,
    under_root,
)
from longvid.ingest.config import Ego4DSource
from longvid.ingest.streams import json_array_items, json_dict_items, json_top_keys
from longvid.ingest.timeparse import TimeParseError, frames_to_seconds, parse_number, parse_span
from longvid.schema import SourceSpan, TimedText, VideoRecord

SOURCE = "ego4d"

# Video fields kept in ``raw`` (the audit shows them); everything else is tolerated and ignored.
_RAW_VIDEO_FIELDS = (
    "video_uid",
    "duration_sec",
    "scenarios",
    "video_source",
    "device",
    "split_em",
    "split_av",
    "split_fho",
)

_FLAGS = re.IGNORECASE
_TAG_SUMMARY = re.compile(r"#summary\b", _FLAGS)
_TAG_C_SUBJECT = re.compile(r"#c\s+c\b", _FLAGS)
_TAG_O_SUBJECT = re.compile(r"#o\s+o\b", _FLAGS)
_TAG_PERSON = re.compile(r"#[co]\b\s*", _FLAGS)
_UNSURE_WITH_ARTICLE = re.compile(r"\b(?:the|a|an|some)\s+#unsure\b", _FLAGS)
_UNSURE = re.compile(r"#unsure\b", _FLAGS)
_BARE_C = re.compile(r"(?<![\w'’-])C(?![\w-])")
_BARE_O = re.compile(r"(?<![\w'’-])O(?![\w-])")
_ANY_TAG = re.compile(r"#\S*")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")


def untag(text: str) -> str:
    """Ego4D narration tags → plain words. The rules, in order:

    - ``#summary`` is removed; a text of nothing but tags (a lone ``#unsure``) becomes "";
    - ``#C C`` (the camera wearer as subject) → "the camera wearer"; ``#O O`` → "another person";
    - ``#C``/``#O`` before a description of the person (``#O man X``) are removed;
    - ``#unsure`` → "something", swallowing an article before it ("picks the #unsure" →
      "picks something"), except at the end of a complete clause, where it only marks the
      annotator's doubt and is removed ("C looks at the screen #unsure");
    - a bare ``C`` elsewhere (``gives C a cup``, ``C's hand``) → "the camera wearer", a bare ``O``
      → "the other person";
    - any other ``#tag`` and stray ``#`` are removed, whitespace is collapsed and the first letter
      is capitalised.

    ``"#C C opens a door"`` → ``"The camera wearer opens a door"``. No ``#`` is ever left.
    """
    t = _TAG_SUMMARY.sub(" ", text)
    if not _UNSURE.sub("", _TAG_PERSON.sub("", t)).strip(" .,;:!?"):
        return ""  # only tags (e.g. a lone "#unsure"): nothing was said
    t = _trailing_unsure(t)
    t = _TAG_C_SUBJECT.sub("the camera wearer", t)
    t = _TAG_O_SUBJECT.sub("another person", t)
    t = _TAG_PERSON.sub("", t)
    t = _UNSURE_WITH_ARTICLE.sub("something", t)
    t = _UNSURE.sub("something", t)
    t = _BARE_C.sub("the camera wearer", t)
    t = _BARE_O.sub("the other person", t)
    t = _ANY_TAG.sub(" ", t).replace("#", " ")
    t = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(t.split()))
    return t[:1].upper() + t[1:]


_TRAILING_UNSURE = re.compile(r"\s*#unsure\s*([.!?]?)\s*$", _FLAGS)
_OBJECT_SLOT = {
    "the",
    "a",
    "an",
    "some",
    "of",
    "at",
    "on",
    "in",
    "into",
    "onto",
    "to",
    "from",
    "with",
    "for",
    "by",
    "under",
    "over",
    "his",
    "her",
    "their",
    "its",
    "c's",
}


def _trailing_unsure(text: str) -> str:
    """A ``#unsure`` that ends a narration: it stands for a missing object when the words before
    it leave one open (they end with an article or preposition, or are only subject + verb:
    ``#C C picks #unsure``) and then stays for :func:`untag` to turn into "something"; after a
    complete clause (``C looks at the screen #unsure``) it is the annotator's doubt and goes."""
    m = _TRAILING_UNSURE.search(text)
    if not m:
        return text
    before = text[: m.start()]
    words = _TAG_PERSON.sub("", before).split()
    if words and (words[-1].lower() in _OBJECT_SLOT or len(words) <= 2):
        return text
    return before + m.group(1)


def _num_or_none(value: Any) -> float | None:
    try:
        return parse_number(value)
    except TimeParseError:
        return None


def _int_or_none(value: Any) -> int | None:
    number = _num_or_none(value)
    return int(number) if number is not None and number == int(number) else None


def _compact_video(video: dict[str, Any], locator: str) -> dict[str, Any]:
    """What a record needs from one ``videos[]`` entry (the rest of the entry is dropped)."""
    meta = video.get("video_metadata") if isinstance(video.get("video_metadata"), dict) else {}
    scenarios = video.get("scenarios")
    return {
        "locator": locator,
        "duration": _num_or_none(video.get("duration_sec")),
        "fps": _num_or_none(meta.get("fps")),
        "width": _int_or_none(meta.get("display_resolution_width")),
        "height": _int_or_none(meta.get("display_resolution_height")),
        "categories": [s for s in scenarios if isinstance(s, str)]
        if isinstance(scenarios, list)
        else [],
        "raw": {k: video.get(k) for k in _RAW_VIDEO_FIELDS if k in video},
    }


def _passes(entry: dict[str, Any], cfg: Ego4DSource) -> list[str]:
    present = [
        p
        for p in cfg.narration_passes
        if isinstance(entry.get(p), dict)
        and (entry[p].get("narrations") or entry[p].get("summaries"))
    ]  # an empty first pass does not hide a filled second one
    return present if cfg.all_passes else present[:1]


def _narration_texts(
    entry: Any, info: dict[str, Any], cfg: Ego4DSource, drops: Drops
) -> tuple[list[TimedText], list[SourceSpan], list[str]]:
    """Narrations and summaries of the chosen passes → texts, summary spans, passes used."""
    texts: list[TimedText] = []
    spans: list[SourceSpan] = []
    if not isinstance(entry, dict):
        drops.add(
            "narration.json",
            "bad_narration_entry",
            f"expected an object, got {type(entry).__name__}",
        )
        return texts, spans, []
    fps = info["fps"] or cfg.default_fps
    passes = _passes(entry, cfg)
    for name in passes:
        block = entry[name]
        narrations = block.get("narrations") or []
        for i, item in enumerate(narrations if isinstance(narrations, list) else []):
            where = f"{name}.narrations[{i}]"
            if not isinstance(item, dict):
                drops.add(where, "bad_item", f"expected an object, got {type(item).__name__}")
                continue
            raw_text = item.get("narration_text")
            if not isinstance(raw_text, str):
                drops.add(where, "non_string_text", f"narration_text is {raw_text!r}")
                continue
            try:
                if item.get("timestamp_sec") is not None:
                    t = parse_number(item["timestamp_sec"])
                elif item.get("timestamp_frame") is not None:
                    t = frames_to_seconds(item["timestamp_frame"], fps)
                else:
                    raise TimeParseError("no timestamp_sec or timestamp_frame")
            except TimeParseError as exc:
                drops.add(where, "bad_time", str(exc))
                continue
            text = untag(raw_text)
            if not text:
                drops.add(where, "empty_text", f"{raw_text!r} has no words once tags are removed")
                continue
            texts.append(
                TimedText(start=round(t, 6), end=None, text=text, kind="narration", origin=name)
            )
        summaries = block.get("summaries") or []
        for i, item in enumerate(summaries if isinstance(summaries, list) else []):
            where = f"{name}.summaries[{i}]"
            if not isinstance(item, dict):
                drops.add(where, "bad_item", f"expected an object, got {type(item).__name__}")
                continue
            raw_text = item.get("summary_text")
            if not isinstance(raw_text, str):
                drops.add(where, "non_string_text", f"summary_text is {raw_text!r}")
                continue
            try:
                start, end = parse_span(item.get("start_sec"), item.get("end_sec"))
            except TimeParseError as exc:
                drops.add(where, "bad_span", str(exc))
                continue
            text = untag(raw_text)
            if not text:
                drops.add(where, "empty_text", f"{raw_text!r} has no words once tags are removed")
                continue
            texts.append(TimedText(start=start, end=end, text=text, kind="summary", origin=name))
            spans.append(
                SourceSpan(
                    span_id=f"{name}.summary.{i}",
                    start=start,
                    end=end,
                    raw=json.dumps([item.get("start_sec"), item.get("end_sec")]),
                )
            )
    texts.sort(key=lambda t: (t.start, t.kind))
    spans.sort(key=lambda s: s.start)
    return texts, spans, passes


def _record(
    uid: str, info: dict[str, Any], root: str, cfg: Ego4DSource, narration: Any | None
) -> VideoRecord:
    drops = Drops()
    raw = dict(info["raw"])
    texts: list[TimedText] = []
    spans: list[SourceSpan] = []
    if narration is not None:
        texts, spans, passes = _narration_texts(narration, info, cfg, drops)
        raw["narration_passes"] = passes
        if isinstance(narration, dict) and "status" in narration:
            raw["narration_status"] = narration["status"]
    return VideoRecord(
        source=SOURCE,
        video_id=uid,
        video_uri=under_root(root, cfg.video_dir, uid + cfg.video_ext),
        locator=info["locator"],
        licence=cfg.licence,
        declared_duration=info["duration"],
        declared_fps=info["fps"],
        declared_width=info["width"],
        declared_height=info["height"],
        spans=spans,
        texts=texts,
        categories=info["categories"],
        raw=drops.into(raw),
    )


def iter_items(cfg: Ego4DSource) -> Iterator[Item]:
    root = resolve_root(cfg.root)
    meta_uri = under_root(root, cfg.metadata_file)
    videos: dict[str, dict[str, Any]] = {}
    budget = cfg.max_records
    count = 0
    with json_array_items(meta_uri, "videos.item") as items:
        for index, video in enumerate(items):
            if budget is not None and count >= budget:
                break
            count += 1
            locator = locate(meta_uri, f"videos[{index}]")
            uid = video.get("video_uid") if isinstance(video, dict) else None
            try:
                if not isinstance(video, dict):
                    raise RecordIssue(
                        "bad_record", f"expected an object, got {type(video).__name__}"
                    )
                check_id(uid, "video_uid")
                if uid in videos:
                    raise RecordIssue(
                        "duplicate_id", f"video_uid {uid!r} appears twice in videos[]"
                    )
            except RecordIssue as issue:
                yield reject_from(SOURCE, uid, locator, issue)
                continue
            videos[uid] = _compact_video(video, locator)
    if count == 0:
        keys = json_top_keys(meta_uri)
        if "videos" not in keys:
            raise FormatError(
                f"{meta_uri}: not an Ego4D ego4d.json: expected top-level keys [date, version, "
                f"description, videos, clips, ...], found {keys}"
            )
    if cfg.narration_file:
        yield from _join_narrations(cfg, root, videos, budget, count)
    for uid, info in videos.items():
        yield _record(uid, info, root, cfg, None)


def _join_narrations(
    cfg: Ego4DSource, root: str, videos: dict[str, dict[str, Any]], budget: int | None, count: int
) -> Iterator[Item]:
    narr_uri = under_root(root, cfg.narration_file or "")
    with json_dict_items(narr_uri, "Ego4D narration.json") as (entries, _):
        for index, (uid, entry) in enumerate(entries):
            info = videos.pop(uid, None)
            if info is not None:
                yield _record(uid, info, root, cfg, entry)
                continue
            if budget is not None and count >= budget:
                continue  # a trial run stops adding records, but still joins its videos
            count += 1
            locator = locate(narr_uri, index)
            yield reject(
                SOURCE,
                f"{SOURCE}:{uid}",
                locator,
                "unknown_video",
                f"{locator}: narrations for video_uid {uid!r}, which is not among the "
                "videos of ego4d.json (or appeared twice)",
            )
