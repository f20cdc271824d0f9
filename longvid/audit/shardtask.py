"""The audit's shard tasks, end to end, and the driver's running totals of their results.

Shards are checked in *groups*: consecutive shards of the index whose rows live in the same
Parquet parts of the sample table (:func:`group_shards`). One task reads each part of its group
once, splits the rows by shard (a build writes ~10 shards' rows per unit part, so a task per
shard read every part ~10 times), then checks each shard in turn (:func:`longvid.audit.shardcheck.audit_shard`) and sends
back a *summary*: counts, histogram inputs and the first ``max_listed`` problems of each reason
with the total per reason — never a record per sample. The driver folds the summaries into
:class:`ShardTotals` as they arrive, so what it holds is bounded by the problem cap and by a few
numbers per sample (the scores the histograms need as float64 arrays).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from longvid import storage
from longvid.audit.scan import read_part_shards
from longvid.audit.shardcheck import ROW_FIELDS, audit_shard, problem
from longvid.errors import LongvidError
from longvid.shards.manifest import parse_extra

TASK_COLUMNS = ["key", "shard", "members", "extra", *(c for c, _, _ in ROW_FIELDS)]


def group_shards(shard_parts: list[list[str]], max_shards: int) -> list[list[int]]:
    """The shards (given, in index order, as the parts that hold their rows) cut into runs of
    consecutive shards that one task checks: a shard joins the run before it when it shares a
    part with it (or either has none) and the run has fewer than ``max_shards`` shards. The runs
    concatenated are the index order, so summaries come back in it."""
    groups: list[list[int]] = []
    parts_of_group: set[str] = set()
    for i, parts in enumerate(shard_parts):
        mine = set(parts)
        if groups and len(groups[-1]) < max_shards and (
                not mine or not parts_of_group or mine & parts_of_group):
            groups[-1].append(i)
            parts_of_group |= mine
        else:
            groups.append([i])
            parts_of_group = mine
    return groups


def group_rows(parts_by_shard: dict[str, list[str]]
               ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """``(rows by shard, read problems by shard)`` for the shards of one group: every part is
    read once for all the group's shards that it holds. A part that cannot be read is a problem
    of each shard it holds, not a crash; a shard's rows follow the order of its parts."""
    wanted: dict[str, list[str]] = {}  # part → the shards to take from it
    for url, parts in parts_by_shard.items():
        for part in parts:
            wanted.setdefault(part, []).append(url)
    by_part: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failed: dict[str, str] = {}
    for part, urls in wanted.items():
        try:
            by_part[part] = read_part_shards(part, TASK_COLUMNS, urls)
        except LongvidError as exc:
            failed[part] = str(exc)
    rows: dict[str, list[dict[str, Any]]] = {}
    problems: dict[str, list[dict[str, Any]]] = {}
    for url, parts in parts_by_shard.items():
        rows[url] = [r for part in parts if part in by_part for r in by_part[part].get(url, [])]
        problems[url] = [problem(url, None, "unreadable_part", failed[part])
                         for part in parts if part in failed]
    return rows, problems


def _is_sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or np.all(a[1:] >= a[:-1]))


def _contains(sorted_values: np.ndarray, value: int) -> bool:
    """``value in sorted_values`` in O(log n)."""
    i = int(np.searchsorted(sorted_values, value))
    return i < len(sorted_values) and int(sorted_values[i]) == value


def _prepare(rows: list[dict[str, Any]], shared_sizes: np.ndarray) -> list[str | None]:
    """Adds ``_clip_sha256`` / ``_hash_clip`` to each row (what content_pass reads); returns
    each row's licence from ``extra`` (None when it has none)."""
    licences = []
    shared = shared_sizes if _is_sorted(shared_sizes) else np.sort(shared_sizes)
    for r in rows:
        extra = parse_extra(r.pop("extra", None))
        r["_clip_sha256"] = (extra.get("scores") or {}).get("clip_sha256")
        size = next((int(m["size"]) for m in r.get("members") or [] if m["ext"] == "mp4"), None)
        # equal clips have equal sizes: only clips whose size another clip shares need a hash
        # (a binary search: np.isin per row costs a pass over every shared size, which made
        # the shard pass quadratic in the corpus)
        r["_hash_clip"] = size is not None and _contains(shared, size)
        licences.append(extra.get("licence") or None)
    return licences


def cap_problems(problems: list[dict[str, Any]], cap: int) -> tuple[list[dict[str, Any]], dict]:
    """The first ``cap`` problems of each reason, and the count of each reason."""
    counts: Counter = Counter()
    kept = []
    for p in problems:
        counts[p["reason"]] += 1
        if counts[p["reason"]] <= cap:
            kept.append(p)
    return kept, dict(counts)


def summarise(url: str, rows: list[dict[str, Any]], licences: list[str | None],
              out: dict[str, Any], dropped: set[str], cap: int) -> dict[str, Any]:
    """The small result of one shard task (see the module docstring)."""
    by_key = {r["key"]: (r, lic) for r, lic in zip(rows, licences, strict=True)}
    facts = out.get("facts", [])
    has: Counter = Counter()
    qa_tasks: Counter = Counter()
    qa_per_sample: Counter = Counter()
    events_long: Counter = Counter()
    events_missing = 0
    video_text, motion, hashes, embeddings, videos = [], [], [], [], []
    lic_cells: dict[str, list[Any]] = {}
    seen_records: set[str] = set()
    for f in facts:
        row, lic = by_key.get(f["key"], ({}, None))
        has["events"] += f.get("events") is not None
        has["qa"] += bool(f.get("qa_tasks"))
        has["video_text_score"] += f.get("video_text") is not None
        has["motion"] += f.get("motion") is not None
        has["model_captions"] += f.get("captions") is not None
        if f.get("qa_tasks") is not None:
            qa_tasks.update(f["qa_tasks"])
            qa_per_sample[len(f["qa_tasks"])] += 1
        if str(row.get("bucket")) == "long":
            if f.get("events") is None:
                events_missing += 1
            else:
                events_long[int(f["events"])] += 1
        if f.get("video_text") is not None:
            video_text.append(float(f["video_text"]))
        if f.get("motion") is not None:
            motion.append(float(f["motion"]))
        if f.get("clip_sha256") and f["clip_sha256"] != row.get("_clip_sha256"):
            hashes.append([f["key"], f["clip_sha256"]])
        if f.get("embedding"):
            embeddings.append([f["key"], f["embedding"]])
        if lic is None:  # the table has no licence for it: KEY.json's, else unknown
            name = f"{row.get('source')}\0{f.get('licence') or 'unknown'}"
            cell = lic_cells.setdefault(name, [0, 0.0])
            cell[0] += 1
            cell[1] += float(row.get("duration") or 0)
        rid, sv = row.get("record_id"), f.get("source_video")
        if isinstance(sv, dict) and rid is not None and str(rid) not in seen_records:
            seen_records.add(str(rid))
            videos.append([str(rid), row.get("source"), json.dumps(sv, default=str)])
    problems = [p for p in out.get("problems", [])
                if not (p["reason"] == "unexpected_key" and p["key"] in dropped)]
    listed, counts = cap_problems(problems, cap)
    return {
        "url": url, "bytes": out.get("bytes", 0), "seconds": out.get("seconds", 0.0),
        "decoded": out.get("decoded", 0), "samples_read": len(facts), "rows": len(rows),
        "embedding_model": out.get("embedding_model"),
        "problems": listed, "problem_counts": counts,
        "has": dict(has), "qa_tasks": dict(qa_tasks),
        "qa_per_sample": {str(k): v for k, v in qa_per_sample.items()},
        "events_long": {str(k): v for k, v in events_long.items()},
        "events_missing": events_missing,
        "video_text": video_text, "motion": motion, "hashes": hashes, "embeddings": embeddings,
        "licences": lic_cells, "videos": videos,
    }


def check_shard(root: str, info: dict[str, Any], rows: list[dict[str, Any]],
                read_problems: list[dict[str, Any]], opts: dict[str, Any],
                shared_sizes: np.ndarray, dropped: set[str]) -> dict[str, Any]:
    """Check one shard whose rows were read, and summarise it."""
    started = time.monotonic()
    url = info["url"]
    licences = _prepare(rows, shared_sizes)
    try:
        out = audit_shard(root, info, rows, opts)
    except Exception as exc:  # e.g. access denied: this shard fails, the job goes on
        why = str(exc) if isinstance(exc, LongvidError) else f"{type(exc).__name__}: {exc}"
        out = {"url": url, "facts": [], "decoded": 0, "bytes": 0, "embedding_model": None,
               "problems": [problem(url, None, "unreadable_shard",
                                    f"{storage.join(root, url)}: {why}")]}
    out["problems"] = read_problems + out["problems"]
    out["seconds"] = round(time.monotonic() - started, 4)
    return summarise(url, rows, licences, out, dropped, int(opts.get("max_listed", 50)))


def run_group_task(root: str, infos: list[dict[str, Any]], parts: list[list[str]],
                   opts: dict[str, Any], shared_sizes: np.ndarray, dropped: set[str]
                   ) -> list[dict[str, Any]]:
    """What one Ray task does: read the group's parts once, check each of its shards (``infos``,
    with ``parts[i]`` the parts that hold shard i) and return their summaries in that order.
    Each summary's ``seconds`` is its own check plus an equal share of the reading."""
    started = time.monotonic()
    rows, problems = group_rows({i["url"]: p for i, p in zip(infos, parts, strict=True)})
    read_share = (time.monotonic() - started) / max(len(infos), 1)
    left = Counter(i["url"] for i in infos)
    out = []
    for info in infos:
        url = info["url"]
        left[url] -= 1
        # checking a shard edits its rows: a shard the index lists twice gets a fresh copy
        mine = rows.pop(url) if not left[url] else [dict(r) for r in rows[url]]
        s = check_shard(root, info, mine, problems[url], opts, shared_sizes, dropped)
        s["seconds"] = round(s["seconds"] + read_share, 4)
        out.append(s)
    return out


def run_shard_task(root: str, info: dict[str, Any], parts: list[str], opts: dict[str, Any],
                   shared_sizes: np.ndarray, dropped: set[str]) -> dict[str, Any]:
    """One shard on its own: a group of one."""
    return run_group_task(root, [info], [parts], opts, shared_sizes, dropped)[0]


def _counter_array(c: Counter) -> np.ndarray:
    """``{value: count}`` expanded to a float64 array of the values (for a histogram)."""
    if not c:
        return np.zeros(0)
    values = np.asarray([float(k) for k in c], np.float64)
    return np.repeat(values, np.asarray(list(c.values()), np.int64))


@dataclass
class ShardTotals:
    """The shard tasks' summaries added up on the driver, in index order."""

    max_listed: int
    shards: int = 0
    bytes: int = 0
    task_seconds: float = 0.0
    decoded: int = 0
    samples_read: int = 0
    rows: int = 0
    embedding_model: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    listed: Counter = field(default_factory=Counter)
    unlisted: Counter = field(default_factory=Counter)
    has: Counter = field(default_factory=Counter)
    qa_tasks: Counter = field(default_factory=Counter)
    qa_per_sample: Counter = field(default_factory=Counter)
    events_long: Counter = field(default_factory=Counter)
    events_missing: int = 0
    video_text: list[np.ndarray] = field(default_factory=list)
    motion: list[np.ndarray] = field(default_factory=list)
    hash_keys: list[pa.Array] = field(default_factory=list)
    hash_values: list[pa.Array] = field(default_factory=list)
    emb_keys: list[str] = field(default_factory=list)
    emb_vectors: list[np.ndarray] = field(default_factory=list)
    licences: Counter = field(default_factory=Counter)  # (source, licence) → samples
    licence_seconds: Counter = field(default_factory=Counter)
    video_ids: list[pa.Array] = field(default_factory=list)
    video_sources: list[pa.Array] = field(default_factory=list)
    video_json: list[pa.Array] = field(default_factory=list)

    def add(self, s: dict[str, Any]) -> None:
        self.shards += 1
        self.bytes += int(s["bytes"])
        self.task_seconds += float(s.get("seconds") or 0)
        self.decoded += int(s["decoded"])
        self.samples_read += int(s["samples_read"])
        self.rows += int(s["rows"])
        if self.embedding_model is None and s.get("embedding_model"):
            self.embedding_model = s["embedding_model"]
        listed_here: Counter = Counter()
        for p in s["problems"]:
            listed_here[p["reason"]] += 1
            if self.listed[p["reason"]] < self.max_listed:
                self.listed[p["reason"]] += 1
                self.problems.append(p)
            else:
                self.unlisted[p["reason"]] += 1
        for reason, n in s["problem_counts"].items():
            self.unlisted[reason] += n - listed_here[reason]  # the task's own cap
        self.has.update(s["has"])
        self.qa_tasks.update(s["qa_tasks"])
        self.qa_per_sample.update({int(k): v for k, v in s["qa_per_sample"].items()})
        self.events_long.update({int(k): v for k, v in s["events_long"].items()})
        self.events_missing += int(s["events_missing"])
        if s["video_text"]:
            self.video_text.append(np.asarray(s["video_text"], np.float64))
        if s["motion"]:
            self.motion.append(np.asarray(s["motion"], np.float64))
        if s["hashes"]:
            self.hash_keys.append(pa.array([k for k, _ in s["hashes"]], pa.string()))
            self.hash_values.append(pa.array([h for _, h in s["hashes"]], pa.string()))
        for k, v in s["embeddings"]:
            self.emb_keys.append(k)
            self.emb_vectors.append(np.asarray(v, np.float32))
        for name, (n, sec) in s["licences"].items():
            src, lic = name.split("\0", 1)
            self.licences[(src, lic)] += n
            self.licence_seconds[(src, lic)] += sec
        if s["videos"]:
            self.video_ids.append(pa.array([v[0] for v in s["videos"]], pa.string()))
            self.video_sources.append(pa.array([v[1] for v in s["videos"]], pa.string()))
            self.video_json.append(pa.array([v[2] for v in s["videos"]], pa.string()))

    def scores(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)

    def qa_per_sample_values(self) -> np.ndarray:
        return _counter_array(self.qa_per_sample)

    def events_long_values(self) -> np.ndarray:
        return np.concatenate([_counter_array(self.events_long),
                               np.full(self.events_missing, np.nan)])

    def computed_hashes(self) -> tuple[pa.Array, pa.Array]:
        """(keys, SHA-256) of the clips the tasks hashed (their rows carried none)."""
        if not self.hash_keys:
            return pa.array([], pa.string()), pa.array([], pa.string())
        return pa.concat_arrays(self.hash_keys), pa.concat_arrays(self.hash_values)

    def source_videos(self) -> pa.Table:
        """record_id, source, source_video JSON: the first met per record, in shard order."""
        if not self.video_ids:
            return pa.table({"record_id": pa.array([], pa.string()),
                             "source": pa.array([], pa.string()),
                             "video": pa.array([], pa.string())})
        t = pa.table({"record_id": pa.concat_arrays(self.video_ids),
                      "source": pa.concat_arrays(self.video_sources),
                      "video": pa.concat_arrays(self.video_json)})
        first = t.group_by("record_id", use_threads=False).aggregate(
            [("source", "first"), ("video", "first")])
        return first.rename_columns({"source_first": "source", "video_first": "video"})
