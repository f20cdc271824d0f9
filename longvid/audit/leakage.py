"""Leakage: corpus samples that come from an evaluation video.

Benchmarks such as VideoMME and MVBench are cut from the same YouTube pool as HowTo100M,
HD-VILA and MiraData, so a corpus can hold the very videos a model is later tested on. Two
ways to find them:

* **ids**: the evaluation list (text, CSV/TSV, JSON or JSONL; ids, URLs or file names) is
  normalised — YouTube URLs of every form become the 11-character video id, file names lose
  their folder and extension — and matched against every id a corpus record carries: its
  ``video_id`` and the ids inside any URL in its release metadata (MiraData's ``video_url``,
  HD-VILA's ``url``).
* **embeddings**: evaluation *video files* are embedded with the corpus's own open_clip model
  (see :mod:`longvid.audit.eval_embed`) and compared with every sample's embedding.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from longvid import storage
from longvid.errors import FormatError

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_YT_HOSTS = ("youtube.com", "youtube-nocookie.com", "youtu.be")
_YT_PATHS = ("embed", "shorts", "v", "live", "e")
# JSON/CSV fields that hold an id, a URL or a file name of a video
_ID_NAMES = {"id", "vid", "video", "videoid", "video_id", "youtube_id", "youtubeid", "ytid",
             "yt_id", "url", "video_url", "videourl", "link", "file", "filename", "path",
             "video_path", "video_name", "video_file"}


def id_field(name: str) -> bool:
    """Whether a JSON key / CSV column names a video id, URL or file (``question_id`` does
    not; ``videoID``, ``youtube_url``, ``video_path`` do)."""
    n = str(name).strip().lower()
    if n in _ID_NAMES:
        return True
    about_video = "video" in n or "youtube" in n or n.startswith("yt")
    return about_video and any(s in n for s in ("id", "url", "path", "name", "file"))


_VIDEO_EXT = re.compile(r"\.(mp4|mkv|webm|mov|avi|m4v|flv|ts|mpg|mpeg)$", re.IGNORECASE)


def youtube_id(text: str) -> str | None:
    """The video id of a YouTube URL (watch?v=, youtu.be/, /embed/, /shorts/, /v/, /live/), or
    None when ``text`` is not a YouTube URL."""
    s = text.strip()
    if "://" not in s and s.lower().startswith(("www.", "m.", "youtube.", "youtu.be")):
        s = "https://" + s
    try:
        u = urlparse(s)
    except ValueError:
        return None
    host = (u.hostname or "").lower()
    if not any(host == h or host.endswith("." + h) for h in _YT_HOSTS):
        return None
    if host.endswith("youtu.be"):
        cand = u.path.strip("/").split("/")[0]
    else:
        cand = (parse_qs(u.query).get("v") or [""])[0]
        parts = [p for p in u.path.split("/") if p]
        if not cand and len(parts) >= 2 and parts[0] in _YT_PATHS:
            cand = parts[1]
    return cand if YOUTUBE_ID.fullmatch(cand or "") else None


def normalise_id(text: str) -> str:
    """The comparable form of an id, URL or file name: a YouTube id for YouTube URLs; the
    last path part without a video extension for other URLs and paths; else the text."""
    s = unquote(str(text).strip())
    yt = youtube_id(s)
    if yt:
        return yt
    if "://" in s:
        s = urlparse(s).path
    if "/" in s or "\\" in s or _VIDEO_EXT.search(s):
        s = re.split(r"[/\\]", s.rstrip("/\\"))[-1]
        s = _VIDEO_EXT.sub("", s)
    return s


@dataclass(frozen=True)
class EvalItem:
    raw: str  # as written in the list
    id: str  # normalised
    where: str  # "file:line"


def _strings_in(node: Any, field_ok: bool) -> Iterator[str]:
    """String values of id-like fields anywhere in a JSON tree (top-level strings count)."""
    if isinstance(node, str):
        if field_ok:
            yield node
    elif isinstance(node, list):
        for v in node:
            yield from _strings_in(v, field_ok)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings_in(v, id_field(k))


def _from_json(text: str, name: str) -> Iterator[tuple[str, str]]:
    try:
        doc = json.loads(text)
    except ValueError:
        docs = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append((i, json.loads(line)))
                except ValueError as exc:
                    raise FormatError(f"{name}:{i}: not JSON or JSON lines: {exc}") from None
        for i, d in docs:
            for s in _strings_in(d, True):
                yield s, f"{name}:{i}"
        return
    if isinstance(doc, dict) and not any(id_field(k) for k in doc):
        # {id: {...}, ...}: the keys are the ids (what Ego4D-style and many QA files do)
        for k, v in doc.items():
            yield str(k), f"{name}:{k}"
            for s in _strings_in(v, False):
                yield s, f"{name}:{k}"
        return
    for s in _strings_in(doc, True):
        yield s, name


def _from_csv(text: str, name: str, delimiter: str) -> Iterator[tuple[str, str]]:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return
    header = rows[0]
    cols = [i for i, h in enumerate(header) if id_field(h)]
    if not cols:  # no header we know: the first column holds the ids, every line counts
        cols, start = [0], 0
    else:
        start = 1
    for n, row in enumerate(rows[start:], start + 1):
        for i in cols:
            if i < len(row) and row[i].strip():
                yield row[i], f"{name}:{n}"


def _from_text(text: str, name: str) -> Iterator[tuple[str, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("http") else line
        line = line.strip()
        if line:
            yield line.split()[0], f"{name}:{n}"


def read_eval_list(uri: str) -> list[EvalItem]:
    """The evaluation videos listed in ``uri`` (local path, s3:// or http(s)://).

    ``.json``/``.jsonl``: strings anywhere under id-like fields (``video_id``, ``videoID``,
    ``url``, ``video``, ...), or the keys of a top-level object keyed by id. ``.csv``/``.tsv``:
    id-like columns (else the first column). Anything else: one id/URL per line, ``#``
    comments. Raises FormatError when nothing usable is found.
    """
    data = storage.read_bytes(uri)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FormatError(f"{uri}: an evaluation list must be UTF-8 text") from None
    name = uri.rsplit("/", 1)[-1]
    lower = name.lower()
    if lower.endswith((".json", ".jsonl", ".ndjson")):
        found = _from_json(text, name)
    elif lower.endswith(".csv"):
        found = _from_csv(text, name, ",")
    elif lower.endswith(".tsv"):
        found = _from_csv(text, name, "\t")
    else:
        found = _from_text(text, name)
    items, seen = [], set()
    for raw, where in found:
        nid = normalise_id(raw)
        if nid and (nid, raw) not in seen:
            seen.add((nid, raw))
            items.append(EvalItem(raw=raw.strip(), id=nid, where=where))
    if not items:
        raise FormatError(f"{uri}: no video ids, URLs or file names found in it")
    return items


def _urls_in(raw: Any) -> list[str]:
    """Every URL-looking string anywhere in a record's raw release metadata (JSON text)."""
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    out: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "://" in node or node.startswith(("www.", "youtu")):
                out.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def corpus_ids(samples: Iterable[dict[str, Any]], manifest: Iterable[dict[str, Any]] | None
               ) -> dict[str, set[str]]:
    """normalised id → record ids that carry it (video ids, record ids, ids in release URLs).
    Every id of the corpus: for small inputs and tests; the audit probes with the evaluation
    ids instead (:func:`id_leaks_stream`)."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in samples:
        rid = str(r.get("record_id"))
        for i in _row_ids(r):
            out[i].add(rid)
    for m in manifest or []:
        for yt in _manifest_ids(m):
            out[yt].add(str(m["record_id"]))
    return out


def _row_ids(r: dict[str, Any]) -> list[str]:
    """The ids one sample row carries: its record id, its video id as written and normalised."""
    rid = str(r.get("record_id"))
    out = [rid]
    if r.get("video_id"):
        out += [normalise_id(str(r["video_id"])), str(r["video_id"])]
    return out


def _manifest_ids(m: dict[str, Any]) -> list[str]:
    """The YouTube ids inside the URLs of a manifest row's raw release metadata."""
    return [yt for url in _urls_in(m.get("raw")) if (yt := youtube_id(url))]


Batches = Iterable[Sequence[dict[str, Any]]]


def id_leaks(items: list[EvalItem], samples: list[dict[str, Any]],
             manifest: list[dict[str, Any]] | None, max_keys: int) -> dict[str, Any]:
    """Evaluation items whose id a corpus record carries, with the samples of those records
    (:func:`id_leaks_stream` over lists)."""
    return id_leaks_stream(items, lambda: [samples], [manifest or []], max_keys)


def id_leaks_stream(items: list[EvalItem], sample_batches: Callable[[], Batches],
                    manifest_batches: Batches, max_keys: int) -> dict[str, Any]:
    """:func:`id_leaks` with the corpus streamed: the evaluation ids are the hash set (small),
    the corpus rows probe it a batch at a time. ``sample_batches()`` gives the rows (``key``,
    ``record_id``, ``video_id``, ``duration``) afresh: one pass finds the records that carry an
    evaluation id, a second adds up their samples (bounded by the matches: ``max_keys`` keys
    per record)."""
    wanted = {it.id for it in items} | {it.raw for it in items}
    carriers: dict[str, set[str]] = defaultdict(set)  # evaluation id → record ids
    for batch in manifest_batches:
        for m in batch:
            for yt in _manifest_ids(m):
                if yt in wanted:
                    carriers[yt].add(str(m["record_id"]))
    norm: dict[str, str] = {}
    for batch in sample_batches():
        for r in batch:
            rid = str(r.get("record_id"))
            if rid in wanted:
                carriers[rid].add(rid)
            v = r.get("video_id")
            if v:
                v = str(v)
                if v not in norm:
                    if len(norm) > 100_000:  # a cache, not a table of every id
                        norm.clear()
                    norm[v] = normalise_id(v)
                for i in (norm[v], v):
                    if i in wanted:
                        carriers[i].add(rid)
    matched = set().union(*carriers.values()) if carriers else set()
    per_record: dict[str, list[Any]] = {}  # rid → [samples, seconds, max-heap of smallest keys]
    if matched:
        for batch in sample_batches():
            for r in batch:
                rid = str(r.get("record_id"))
                if rid not in matched:
                    continue
                rec = per_record.setdefault(rid, [0, 0.0, []])
                rec[0] += 1
                rec[1] += float(r.get("duration") or 0)
                _keep_smallest(rec[2], str(r["key"]), max_keys)
    matches = []
    for it in items:
        records = sorted(carriers.get(it.id, set()) | carriers.get(it.raw, set()))
        if not records:
            continue
        recs = [per_record[x] for x in records if x in per_record]
        keys = sorted(k for rec in recs for k in _heap_keys(rec[2]))[:max_keys]
        matches.append({
            "eval": it.raw, "id": it.id, "where": it.where, "records": records,
            "samples": sum(rec[0] for rec in recs),
            "hours": round(sum(rec[1] for rec in recs) / 3600, 6),
            "keys": keys,
        })
    leaked = [per_record[x] for x in matched if x in per_record]
    return {"eval_items": len(items), "matched_items": len(matches),
            "samples": sum(rec[0] for rec in leaked),
            "hours": round(sum(rec[1] for rec in leaked) / 3600, 6), "matches": matches}


def _keep_smallest(heap: list[str], key: str, n: int) -> None:
    """A max-heap (negated by a wrapper) of the ``n`` smallest keys."""
    item = _Rev(key)
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


def _heap_keys(heap: list[Any]) -> list[str]:
    return [x.key for x in heap]


class _Rev:
    """A key ordered backwards, so heapq's min-heap keeps the largest of the smallest on top."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key

    def __lt__(self, other: _Rev) -> bool:
        return self.key > other.key

    def __gt__(self, other: _Rev) -> bool:
        return self.key < other.key
