"""Finish a build from its ledger: ``index.json`` (wids), ``samples.parquet``,
``rejects.parquet`` (ingest rejects carried over + build rejects) and ``summary.json``."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from longvid import storage
from longvid.pipelines.units import WorkUnit
from longvid.pipelines.uploads import sweep_stale_uploads
from longvid.schema import REJECTS_SCHEMA
from longvid.shards import SAMPLES_SCHEMA, ShardInfo, ledger, read_table, write_index, write_table

SUMMARY_NAME = "summary.json"


def _add(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        into[k] = into.get(k, 0) + v


def finalize(
    root: str,
    units: list[WorkUnit],
    entries: dict[str, ledger.LedgerEntry],
    ingest_rejects_uri: str | None,
    run: dict[str, Any],
    corpus_filter: Callable[[list[dict[str, Any]]], tuple[list, list]] | None = None,
) -> dict[str, Any]:
    """Write the corpus tables from the committed entries (in unit order) and the summary.

    ``corpus_filter`` (rows → kept rows, reject rows) is applied to the whole corpus's sample
    rows first: filters that need every sample at once (duplicates, longvid.dedup.filter)."""
    run["stale_uploads_aborted"] = run.get("stale_uploads_aborted", 0) + sweep_stale_uploads(root)
    committed = [entries[u.unit_id] for u in units if u.unit_id in entries]
    shards = [ShardInfo.from_dict(s) for e in committed for s in e.shards]
    write_index(root, shards, name="longvid")
    samples = [row for e in committed for row in e.samples]
    corpus_rejects: list[dict[str, Any]] = []
    if corpus_filter is not None:
        samples, corpus_rejects = corpus_filter(samples)
    write_table(storage.join(root, "samples.parquet"), samples, SAMPLES_SCHEMA)
    ingest_rejects: list[dict[str, Any]] = []
    if ingest_rejects_uri:
        ingest_rejects = read_table(ingest_rejects_uri).to_pylist()
    build_rejects = [r for e in committed for r in e.rejects]
    write_table(
        storage.join(root, "rejects.parquet"),
        ingest_rejects + build_rejects + corpus_rejects,
        REJECTS_SCHEMA,
    )
    summary = summarize(units, committed, ingest_rejects, shards, run)
    if corpus_rejects:
        apply_corpus_rejects(summary, corpus_rejects, len(samples))
    storage.write_bytes(
        storage.join(root, SUMMARY_NAME),
        (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode(),
    )
    return summary


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
    units: list[WorkUnit],
    committed: list[ledger.LedgerEntry],
    ingest_rejects: list[dict[str, Any]],
    shards: list[ShardInfo],
    run: dict[str, Any],
) -> dict[str, Any]:
    by_source: dict[str, dict[str, Any]] = defaultdict(dict)
    stage_seconds: dict[str, float] = {}
    reasons: Counter = Counter()
    unit_wall = 0.0
    for e in committed:
        for src, counts in e.stats.get("by_source", {}).items():
            _add(by_source[src], counts)
        _add(stage_seconds, e.stats.get("stage_seconds", {}))
        reasons.update(e.stats.get("reject_reasons", {}))
        unit_wall += e.stats.get("wall_seconds", 0.0)
    for r in ingest_rejects:
        by_source[r["source"]]["ingest_rejected"] = (
            by_source[r["source"]].get("ingest_rejected", 0) + 1
        )
        reasons[f"ingest:{r['reason']}"] += 1
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
            "ingest_rejected": len(ingest_rejects),
        },
        "samples": sum(len(e.samples) for e in committed),
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
        "source_hours": round(source_seconds / 3600, 4),
        "run": {
            **{k: v for k, v in run.items() if k != "failed"},
            "source_hours_per_hour": round(run_source_seconds / wall, 2) if wall else None,
        },
    }
