"""One shard task of the audit, end to end, and the driver's running totals of their results.

The task reads its own rows of the sample table (the Parquet parts that hold the shard,
filtered by shard), checks the shard (:func:`longvid.audit.shardcheck.audit_shard`) and sends
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
from longvid.audit.scan import read_part_rows
from longvid.audit.shardcheck import ROW_FIELDS, audit_shard, problem
from longvid.errors import LongvidError
from longvid.shards.manifest import parse_extra

TASK_COLUMNS = ["key", "shard", "members", "extra", *(c for c, _, _ in ROW_FIELDS)]


def shard_rows(parts: list[str], url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows of shard url, problems)``: a part that cannot be read is a problem of this
    shard, not a crash."""
    rows: list[dict[str, Any]] = []
    problems = []
    for part in parts:
        try:
            rows += read_part_rows(part, TASK_COLUMNS, url)
        except LongvidError as exc:
            problems.append(problem(url, None, "unreadable_part", str(exc)))
    return rows, problems


def _prepare(rows: list[dict[str, Any]], shared_sizes: np.ndarray) -> list[str | None]:
    """Adds ``_clip_sha256`` / ``_hash_clip`` to each row (what content_pass reads); returns
    each row's licence from ``extra`` (None when it has none)."""
    licences = []
    for r in rows:
        extra = parse_extra(r.pop("extra", None))
        r["_clip_sha256"] = (extra.get("scores") or {}).get("clip_sha256")
        size = next((int(m["size"]) for m in r.get("members") or [] if m["ext"] == "mp4"), None)
        # equal clips have equal sizes: only clips whose size another clip shares need a hash
        r["_hash_clip"] = size is not None and bool(np.isin(size, shared_sizes))
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


def run_shard_task(root: str, info: dict[str, Any], parts: list[str], opts: dict[str, Any],
                   shared_sizes: np.ndarray, dropped: set[str]) -> dict[str, Any]:
    """Read the shard's rows, check the shard, summarise (what one Ray task does)."""
    started = time.monotonic()
    url = info["url"]
    rows, read_problems = shard_rows(parts, url)
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
