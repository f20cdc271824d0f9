"""Finish a build from its commit markers. Writes only small files: ``index.json`` (wids),
``parts.json`` (every Parquet part, with its rows), ``summary.json`` (added up from the per-unit
stats in the markers), and ``rejects.parquet/ingest.parquet`` (the ingest's rejects, carried
over). The sample rows stay in the per-unit parts the workers wrote."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.dedup.filter import DuplicateFilter
from longvid.errors import NotFoundError
from longvid.pipelines.dedup_filter import filter_parts
from longvid.pipelines.plan import Unit
from longvid.pipelines.uploads import sweep_stale_uploads
from longvid.schema import REJECTS_SCHEMA
from longvid.shards import SAMPLES_SCHEMA, ShardInfo, ledger, read_table, write_index

SUMMARY_NAME = "summary.json"


def _add(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        into[k] = into.get(k, 0) + v


def _write_parquet(uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


def _ensure_schema_part(root: str, dataset: str, schema: pa.Schema, has_parts: bool) -> None:
    """A dataset with no unit part gets one empty part, so that it exists and has a schema."""
    uri = storage.join(root, dataset, ledger.EMPTY_PART)
    if not has_parts:
        _write_parquet(uri, schema.empty_table())


def finalize(
    root: str,
    units: list[Unit],
    markers: dict[str, ledger.CommitMarker],
    ingest_rejects_uri: str | None,
    run: dict[str, Any],
    corpus_filter: DuplicateFilter | None = None,
) -> dict[str, Any]:
    """Write index.json, parts.json and summary.json from the markers (in unit order).

    ``corpus_filter`` (duplicates, longvid.dedup.filter): when one is configured, the
    partitioned search runs over the sample parts and the parts that lose rows are rewritten;
    its rejects accumulate in ``rejects.parquet/corpus-filter``."""
    run["stale_uploads_aborted"] = run.get("stale_uploads_aborted", 0) + sweep_stale_uploads(root)
    committed = [markers[u.unit_id] for u in units if u.unit_id in markers]
    shards = [ShardInfo.from_dict(s) for m in committed for s in m.shards]
    write_index(root, shards, name="longvid")
    ingest_rejects = 0
    ingest_reasons: Counter = Counter()
    ingest_by_source: Counter = Counter()
    if ingest_rejects_uri:
        table = read_table(ingest_rejects_uri)
        ingest_rejects = table.num_rows
        for src, reason in zip(table.column("source").to_pylist(),
                               table.column("reason").to_pylist(), strict=True):
            ingest_by_source[src] += 1
            ingest_reasons[f"ingest:{reason}"] += 1
        _write_parquet(
            storage.join(root, ledger.REJECTS_PARTS, ledger.INGEST_REJECTS_PART),
            table.select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA),
        )
    corpus_rejects: list[dict[str, Any]] = []
    kept = 0
    if corpus_filter is not None:
        corpus_rejects, kept = apply_corpus_filter(root, committed, corpus_filter)
    for dataset, schema in ((ledger.SAMPLES_PARTS, SAMPLES_SCHEMA),
                            (ledger.REJECTS_PARTS, REJECTS_SCHEMA),
                            (ledger.VIDEOS_PARTS, ledger.VIDEOS_SCHEMA)):
        has = any(dataset in m.parts for m in committed) or (
            dataset == ledger.REJECTS_PARTS and (ingest_rejects_uri or corpus_rejects))
        _ensure_schema_part(root, dataset, schema, bool(has))
    parts = {
        d: [{"url": m.parts[d], "unit_id": m.unit_id,
             "rows": m.counts["samples" if d == ledger.SAMPLES_PARTS else "rejects"]
             if d != ledger.VIDEOS_PARTS else m.counts["records"]}
            for m in committed if d in m.parts]
        for d in ledger.PART_TABLES
    }
    storage.write_bytes(
        storage.join(root, ledger.PARTS_INDEX),
        (json.dumps({"format": ledger.BUILD_FORMAT, "parts": parts}, indent=0) + "\n").encode(),
    )
    summary = summarize(units, committed, ingest_rejects, ingest_reasons, ingest_by_source,
                        shards, run)
    if corpus_rejects:
        apply_corpus_rejects(summary, corpus_rejects, kept)
    storage.write_bytes(
        storage.join(root, SUMMARY_NAME),
        (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode(),
    )
    return summary


def apply_corpus_filter(
    root: str, committed: list[ledger.CommitMarker], corpus_filter: DuplicateFilter
) -> tuple[list[dict[str, Any]], int]:
    """Run the corpus-wide filter over the sample parts (partitioned: no sample row comes to
    the driver, longvid.pipelines.dedup_filter); the parts that lose rows are rewritten by
    their tasks. Returns every corpus-filter reject so far (earlier finalizes' included) and
    the samples kept."""
    uri = storage.join(root, ledger.REJECTS_PARTS, ledger.CORPUS_REJECTS_PART)
    try:
        earlier = read_table(uri).to_pylist()
    except NotFoundError:  # no corpus-filter reject yet
        earlier = []
    parts = [m.parts[ledger.SAMPLES_PARTS] for m in committed if ledger.SAMPLES_PARTS in m.parts]
    kept, rejects, _ = filter_parts(root, parts, corpus_filter)
    seen = {(r["locator"], r["reason"]) for r in earlier}
    everything = earlier + [r for r in rejects if (r["locator"], r["reason"]) not in seen]
    if everything:
        _write_parquet(uri, pa.Table.from_pylist(everything, schema=REJECTS_SCHEMA))
    return everything, kept


def apply_corpus_rejects(
    summary: dict[str, Any], rejects: list[dict[str, Any]], samples: int
) -> None:
    """Count the corpus filter's rejects in the summary: a record-level row (no ``#`` in its
    locator) moves its video from accepted to rejected, a sample-level row is a sample reject."""
    summary["samples"] = samples
    reasons = Counter(summary["rejects_by_reason"])
    for r in rejects:
        reasons[f"{r['stage']}:{r['reason']}"] += 1
        counts = summary["by_source"].setdefault(r["source"], {})
        if "#" in (r["locator"] or ""):
            summary["sample_rejects"] += 1
            counts["sample_rejects"] = counts.get("sample_rejects", 0) + 1
        else:
            summary["records"]["accepted"] -= 1
            summary["records"]["rejected"] += 1
            counts["accepted"] = counts.get("accepted", 0) - 1
            counts["rejected"] = counts.get("rejected", 0) + 1
    summary["rejects_by_reason"] = dict(reasons.most_common())
    summary["corpus_filter_rejects"] = len(rejects)


def qa_by_task(by_source: dict[str, dict[str, Any]]) -> dict[str, int]:
    """QA items per task over all sources (the ``qa_<task>`` counts of the unit stats)."""
    total: Counter = Counter()
    for counts in by_source.values():
        total.update({k[3:]: v for k, v in counts.items() if k.startswith("qa_")})
    return dict(sorted(total.items()))


def summarize(
    units: list[Unit],
    committed: list[ledger.CommitMarker],
    ingest_rejects: int,
    ingest_reasons: Counter,
    ingest_by_source: Counter,
    shards: list[ShardInfo],
    run: dict[str, Any],
) -> dict[str, Any]:
    """The summary, added up from the markers' per-unit stats (no sample row is read)."""
    by_source: dict[str, dict[str, Any]] = defaultdict(dict)
    stage_seconds: dict[str, float] = {}
    reasons: Counter = Counter(ingest_reasons)
    unit_wall = unit_cpu = 0.0
    for m in committed:
        for src, counts in m.stats.get("by_source", {}).items():
            _add(by_source[src], counts)
        _add(stage_seconds, m.stats.get("stage_seconds", {}))
        reasons.update(m.stats.get("reject_reasons", {}))
        unit_wall += m.stats.get("wall_seconds", 0.0)
        unit_cpu += m.stats.get("cpu_seconds", 0.0)
    for src, n in ingest_by_source.items():
        by_source[src]["ingest_rejected"] = by_source[src].get("ingest_rejected", 0) + n
    records = sum(c.get("records", 0) for c in by_source.values())
    accepted = sum(c.get("accepted", 0) for c in by_source.values())
    rejected = sum(c.get("rejected", 0) for c in by_source.values())
    source_seconds = sum(c.get("source_seconds", 0.0) for c in by_source.values())
    wall = run.get("wall_seconds") or 0.0
    run_source_seconds = run.get("source_seconds_this_run", 0.0)
    return {
        "complete": len(committed) == len(units),
        "units": {
            "total": len(units),
            "committed": len(committed),
            "skipped_this_run": run.get("skipped", 0),
            "failed_this_run": run.get("failed", []),
        },
        "records": {
            "manifest": records,
            "accepted": accepted,
            "rejected": rejected,
            "ingest_rejected": ingest_rejects,
        },
        "samples": sum(int(m.counts["samples"]) for m in committed),
        "sample_rejects": sum(c.get("sample_rejects", 0) for c in by_source.values()),
        "shards": {"count": len(shards), "bytes": sum(s.filesize for s in shards)},
        "by_source": {
            s: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in sorted(c.items())}
            for s, c in sorted(by_source.items())
        },
        "rejects_by_reason": dict(reasons.most_common()),
        "qa_by_task": qa_by_task(by_source),
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stage_seconds.items())},
        "unit_task_seconds": round(unit_wall, 3),
        "unit_task_cpu_seconds": round(unit_cpu, 3),
        "source_hours": round(source_seconds / 3600, 4),
        "run": {
            **{k: v for k, v in run.items() if k != "failed"},
            "source_hours_per_hour": round(run_source_seconds / wall, 2) if wall else None,
        },
    }
