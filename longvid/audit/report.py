"""The audit report as one JSON-ready dict: totals, distributions, accounting, duplicates,
licences, the build's run summary, the checks and their verdict (and leakage / comparison when
asked). The HTML page draws exactly this dict, so the JSON holds every number it shows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longvid.audit import accounting, duplicates
from longvid.audit.checks import verdicts
from longvid.audit.config import AuditConfig
from longvid.audit.corpus import Corpus
from longvid.audit.scan import duplicate_keys
from longvid.audit.shardtask import ShardTotals
from longvid.audit.stats import histogram_array, hours, ranked
from longvid.audit.tablepass import TablePass, licence_cells
from longvid.dedup import DedupResult

REPORT_FORMAT = "longvid-audit-v1"


def _probed_seconds(corpus: Corpus) -> pa.Table:
    """``(record_id, seconds)`` of every probed source video (the last probe of an id wins)."""
    lv = corpus.ledger_videos
    t = pa.table({"record_id": pc.cast(lv.column("record_id"), pa.string()),
                  "seconds": pc.fill_null(pc.cast(lv.column("duration"), pa.float64()), 0.0)})
    last = t.group_by("record_id", use_threads=False).aggregate([("seconds", "last")])
    return last.rename_columns({"seconds_last": "seconds"}).select(["record_id", "seconds"])


def _source_seconds(videos: pa.Table, probed: pa.Table) -> dict[str, float]:
    """Probed seconds of the distinct source videos, per corpus source (an Arrow join)."""
    if videos.num_rows == 0:
        return {}
    joined = videos.join(probed, "record_id", join_type="left outer")
    sums = joined.group_by("source").aggregate([("seconds", "sum")])
    return {s: float(x or 0.0) for s, x in zip(sums.column("source").to_pylist(),
                                                sums.column("seconds_sum").to_pylist(),
                                                strict=True)}


def totals(corpus: Corpus) -> dict[str, Any]:
    """Counts and hours from the tables alone (what a comparison of two builds needs too),
    from one streaming scan of the sample table (:mod:`longvid.audit.scan`)."""
    sc = corpus.scan
    probed = _probed_seconds(corpus)
    per_source = _source_seconds(sc.videos, probed)
    vid_sources = sc.videos.column("source").to_pylist() if sc.videos.num_rows else []
    n_videos = Counter(vid_sources)
    all_ids = pc.unique(sc.videos.column("record_id")) if sc.videos.num_rows else \
        pa.array([], pa.string())
    all_seconds = _source_seconds(pa.table({"source": pa.array([""] * len(all_ids), pa.string()),
                                            "record_id": all_ids}), probed).get("", 0.0)
    bi = {b: i for i, b in enumerate(sc.buckets)}

    def cell(s: int, bucket: str, what: int) -> float:
        return float(sc.cells[s, bi[bucket], what]) if bucket in bi else 0.0

    def src_row(i: int, src: str) -> dict[str, Any]:
        c = sc.cells[i]
        return {
            "samples": int(c[:, 0].sum()), "hours": hours(c[:, 1].sum()),
            "short": int(cell(i, "short", 0)), "short_hours": hours(cell(i, "short", 1)),
            "long": int(cell(i, "long", 0)), "long_hours": hours(cell(i, "long", 1)),
            "videos": n_videos.get(src, 0), "member_bytes": int(c[:, 2].sum()),
            "source_hours": hours(per_source.get(src, 0.0)),
        }

    total_s = float(sc.cells[..., 1].sum())
    by_bucket = {}
    for b, j in sorted(bi.items()):
        secs = float(sc.cells[:, j, 1].sum())
        by_bucket[b] = {"samples": int(sc.cells[:, j, 0].sum()), "hours": hours(secs),
                        "share_of_hours": round(secs / total_s, 6) if total_s else 0.0}
    return {
        "samples": sc.rows,
        "hours": hours(total_s),
        "shards": len(corpus.index.shards),
        "bytes": sum(s.filesize for s in corpus.index.shards),
        "videos": len(all_ids),
        "source_hours": hours(all_seconds),
        "by_source": {s: src_row(i, s) for i, s in sorted(enumerate(sc.sources),
                                                          key=lambda x: x[1])},
        "by_bucket": by_bucket,
    }


def _fps_name(x: float) -> str:
    return f"{float(x):.3f}".rstrip("0").rstrip(".")


def distributions(corpus: Corpus, st: ShardTotals, cfg: AuditConfig) -> dict[str, Any]:
    """Histograms of the table's columns (from the scan's numpy columns) and of what the shard
    tasks read from the samples' KEY.json (their summaries, added up in ``st``)."""
    rc = cfg.report

    def h(values: np.ndarray, unit: str, integer: bool = False, missing: int = 0
          ) -> dict[str, Any]:
        x = np.concatenate([values, np.full(missing, np.nan)]) if missing else values
        return histogram_array(x, rc.bins, rc.percentiles, unit=unit, integer=integer)

    sc = corpus.scan
    bi = {b: i for i, b in enumerate(sc.buckets)}
    in_bucket = lambda b: sc.bucket == bi.get(b, -1)  # noqa: E731
    fps_values, fps_counts = np.unique(sc.fps[np.isfinite(sc.fps)], return_counts=True)
    fps: Counter = Counter()
    for v, c in zip(fps_values.tolist(), fps_counts.tolist(), strict=True):
        fps[_fps_name(v)] += c
    video_text, motion = st.scores("video_text"), st.scores("motion")
    return {
        "duration": histogram_array(sc.duration, rc.bins, rc.percentiles, unit="s"),
        "duration_short": histogram_array(sc.duration[in_bucket("short")], rc.bins,
                                          rc.percentiles, unit="s"),
        "duration_long": histogram_array(sc.duration[in_bucket("long")], rc.bins,
                                         rc.percentiles, unit="s"),
        "short_side": histogram_array(sc.short_side, rc.bins, rc.percentiles, unit="px"),
        "resolution": ranked(sc.resolution),
        "fps": histogram_array(sc.fps, rc.bins, rc.percentiles, unit="fps"),
        "fps_values": ranked(fps),
        "caption_words": histogram_array(sc.caption_words, rc.bins, rc.percentiles,
                                         unit="words"),
        "events_per_long_sample": h(st.events_long_values(), "events", integer=True),
        "qa_by_task": ranked(st.qa_tasks),
        "qa_per_sample": h(st.qa_per_sample_values(), "pairs", integer=True),
        # one value per sample row: the histogram's ``missing`` counts samples without it
        "video_text_score": h(video_text, "cosine", missing=sc.rows - len(video_text)),
        "motion": h(motion, "mean |Δluma|", missing=sc.rows - len(motion)),
    }


def annotations(corpus: Corpus, tp: TablePass, st: ShardTotals) -> dict[str, Any]:
    """How many samples carry each annotation (0 everywhere for a build without the annotate
    stages)."""
    n = corpus.scan.rows
    names = ("caption", "embedding", "events", "model_captions", "motion", "qa",
             "video_text_score")
    has = {"caption": tp.with_caption, "embedding": tp.with_embedding,
           **{k: int(st.has.get(k, 0)) for k in names[2:]}} if n else {}
    return {"samples": n, "with": {k: has[k] for k in sorted(has)},
            "annotated": any(has.get(k) for k in ("events", "qa", "embedding",
                                                  "video_text_score"))}


def licences(tp: TablePass, st: ShardTotals) -> dict[str, Any]:
    """Samples and hours per (source, licence): ``extra.licence`` of the table, else the one in
    KEY.json (shard tasks), else unknown."""
    per = licence_cells(tp, st.licences, st.licence_seconds)
    total = sum(sec for _, sec in per.values())
    by_licence: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    sources: dict[str, set[str]] = defaultdict(set)
    for (src, lic), (n, sec) in per.items():
        by_licence[lic][0] += n
        by_licence[lic][1] += sec
        sources[lic].add(src)
    return {
        "by_source": [{"source": s, "licence": lic, "samples": int(c[0]),
                       "hours": hours(c[1]),
                       "share_of_hours": round(c[1] / total, 6) if total else 0.0}
                      for (s, lic), c in sorted(per.items())],
        "by_licence": [{"licence": lic, "samples": int(c[0]), "hours": hours(c[1]),
                        "share_of_hours": round(c[1] / total, 6) if total else 0.0,
                        "sources": sorted(sources[lic])}
                       for lic, c in sorted(by_licence.items(), key=lambda kv: -kv[1][1])],
    }


def run_section(corpus: Corpus, audit_run: dict[str, Any]) -> dict[str, Any]:
    """The build's run summary (wall time and throughput per stage) and the audit's own."""
    s = corpus.summary or {}
    run = s.get("run") or {}
    src_h = float(s.get("source_hours") or 0.0)
    stages = []
    by_time = sorted((s.get("stage_seconds") or {}).items(), key=lambda kv: -float(kv[1]))
    for name, sec in by_time:
        sec = float(sec)
        stages.append({"stage": name, "task_seconds": round(sec, 3),
                       "source_hours_per_task_hour": round(src_h / (sec / 3600), 3) if sec > 0
                       else None})
    ingest = []
    for x in (corpus.ingest_summary or {}).get("sources", []):
        sec = float(x.get("seconds") or 0)
        ingest.append({"source": x.get("source"), "inputs": x.get("inputs"), "seconds": sec,
                       "inputs_per_second": round(x.get("inputs", 0) / sec, 1) if sec else None})
    return {
        "available": bool(s),
        "complete": s.get("complete"),
        "wall_seconds": run.get("wall_seconds"),
        "source_hours": s.get("source_hours"),
        "source_hours_per_hour": run.get("source_hours_per_hour"),
        "unit_task_seconds": s.get("unit_task_seconds"),
        "units": s.get("units"),
        "driver_seconds": run.get("driver_seconds"),
        "ray_address": run.get("ray_address"),
        "stages": stages,
        "ingest": ingest,
        "audit": audit_run,
    }


def duplicates_section(corpus: Corpus, found: DedupResult, cfg: AuditConfig, hashed: int
                       ) -> dict[str, Any]:
    """``hashed``: rows whose ``extra`` carries the clip's SHA-256 (the streaming pass)."""
    dc = cfg.duplicates
    st = found.stats
    listed, per_signal = duplicates.groups(found.table, dc.max_clusters)
    hashed = hashed if dc.exact else 0
    notes = []
    if dc.near_cosine is None:
        notes.append("embedding duplicates off (duplicates.near_cosine is null)")
    elif not st.get("embedded"):
        notes.append("embedding duplicates not checked: no embeddings in the corpus")
    if dc.search.fingerprint_max_bits is None:
        notes.append("fingerprint copies off (duplicates.search.fingerprint_max_bits is null)")
    elif not st.get("fingerprinted"):
        notes.append("fingerprint copies not checked: no fingerprints in the corpus (built "
                     "before they were computed)")
    return {
        "removed_by_build": duplicates.removed_by_build(corpus.rejects, cfg.report.max_rows),
        "signals": {"exact": dc.exact, "near_cosine": dc.near_cosine,
                    "fingerprint_max_bits": dc.search.fingerprint_max_bits},
        "checked": {"samples": st.get("samples", 0), "hashed_in_table": hashed,
                    "exact_pairs": st.get("exact_pairs", 0),
                    "embedded": st.get("embedded", 0), "clusters": st.get("clusters", 0),
                    "fingerprinted": st.get("fingerprinted", 0)},
        "notes": notes,
        "groups": len({d for d in found.table.column("kept_key").to_pylist()}),
        "duplicates": found.table.num_rows,
        "by_signal": per_signal,
        "list": listed,
    }


def table_problems(corpus: Corpus, tp: TablePass, max_keys: int = 1000,
                   unlisted: Counter | None = None) -> list[dict[str, Any]]:
    """Problems only the whole corpus shows: duplicate keys in samples.parquet, rows placed in
    a shard the index does not list, stray shard files (the first ``max_keys`` of each; the
    rest counted in ``unlisted``)."""
    unlisted = unlisted if unlisted is not None else Counter()
    out = []
    n_dup, dups = duplicate_keys(corpus.scan.keys, max_keys)
    unlisted["duplicate_key"] += n_dup - len(dups)  # counted, not listed
    for key, n in dups:
        out.append({"shard": None, "key": key, "reason": "duplicate_key",
                    "message": f"samples.parquet lists key {key!r} {n} times"})
    unlisted["not_in_index"] += tp.not_in_index - len(tp.not_in_index_rows)
    for r in tp.not_in_index_rows:
        out.append({"shard": r["shard"], "key": r["key"], "reason": "not_in_index",
                    "message": f"samples.parquet places {r['key']!r} in {r['shard']!r}, "
                               "which index.json does not list"})
    listed = {s.url for s in corpus.index.shards}
    stray = [f for f in corpus.shard_files or [] if f not in listed]
    unlisted["orphan_shard"] += max(0, len(stray) - max_keys)
    for f in stray[:max_keys]:
        out.append({"shard": f, "key": None, "reason": "orphan_shard",
                    "message": f"{f}: a file under shards/ that index.json does not list"})
    return out


def build_report(corpus: Corpus, tp: TablePass, st: ShardTotals, cfg: AuditConfig,
                 audit_run: dict[str, Any], found: DedupResult,
                 leakage: dict[str, Any] | None = None,
                 compare: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report (see the module docstring) from the streaming pass ``tp``, the shard
    tasks' totals ``st`` and the duplicates ``found``. Problem rows are capped per reason
    (``checks.max_listed``); every check's count has them all."""
    unlisted: Counter = Counter(st.unlisted)
    cap = cfg.checks.max_listed
    problems = list(st.problems) + table_problems(corpus, tp, cap, unlisted)
    ingest, p_ingest = accounting.ingest_accounting(corpus)
    build, p_build = accounting.build_accounting(corpus, tp.records, cfg.report.examples, cap,
                                                 unlisted)
    agreement, p_summary = accounting.summary_agreement(corpus, build)
    problems += p_ingest + p_build + p_summary
    if leakage is not None:
        problems += leakage.pop("problems", [])
    checks = verdicts(problems, with_leakage=leakage is not None, max_listed=cap,
                      unlisted=unlisted)
    failed = [c["name"] for c in checks if not c["passed"]]
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "root": corpus.root,
        "verdict": "fail" if failed else "pass",
        "failed_checks": failed,
        "checks": checks,
        "totals": totals(corpus),
        "annotations": annotations(corpus, tp, st),
        "distributions": distributions(corpus, st, cfg),
        "accounting": {
            "ingest": ingest,
            "build": build,
            "rejects": accounting.rejects_breakdown(corpus, cfg.report.examples),
            "declared_vs_probed": accounting.declared_vs_probed(
                corpus, st.source_videos(), cfg.report.max_rows),
            "summary_agreement": agreement,
        },
        "duplicates": duplicates_section(corpus, found, cfg, tp.hashed),
        "licences": licences(tp, st),
        "run": run_section(corpus, audit_run),
        "config": cfg.model_dump(mode="json", exclude={"s3"}),
    }
    if leakage is not None:
        report["leakage"] = leakage
    if compare is not None:
        report["compare"] = compare
    return report
