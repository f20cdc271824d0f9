"""The audit report as one JSON-ready dict: totals, distributions, accounting, duplicates,
licences, the build's run summary, the checks and their verdict (and leakage / comparison when
asked). The HTML page draws exactly this dict, so the JSON holds every number it shows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from longvid.audit import accounting, duplicates
from longvid.audit.checks import verdicts
from longvid.audit.config import AuditConfig
from longvid.audit.corpus import Corpus
from longvid.audit.stats import histogram, hours, ranked
from longvid.dedup import DedupResult, Pairs, find_duplicates

REPORT_FORMAT = "longvid-audit-v1"


def _words(text: Any) -> int | None:
    return len(str(text).split()) if text else None


def totals(corpus: Corpus) -> dict[str, Any]:
    """Counts and hours from the tables alone (what a comparison of two builds needs too)."""
    rows = corpus.samples
    by_source: dict[str, Counter] = defaultdict(Counter)
    by_bucket: dict[str, Counter] = defaultdict(Counter)
    videos: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        src, bucket, dur = str(r.get("source")), str(r.get("bucket")), float(r.get("duration") or 0)
        size = sum(int(m["size"]) for m in r.get("members") or [])
        c = by_source[src]
        c["samples"] += 1
        c["seconds"] += dur
        c[f"{bucket}_samples"] += 1
        c[f"{bucket}_seconds"] += dur
        c["member_bytes"] += size
        by_bucket[bucket]["samples"] += 1
        by_bucket[bucket]["seconds"] += dur
        videos[src].add(str(r.get("record_id")))
    probed = {str(v.get("record_id")): float(v.get("duration") or 0) for v in corpus.ledger_videos}
    total_s = sum(float(r.get("duration") or 0) for r in rows)

    def src_row(src: str, c: Counter) -> dict[str, Any]:
        return {
            "samples": c["samples"], "hours": hours(c["seconds"]),
            "short": c["short_samples"], "short_hours": hours(c["short_seconds"]),
            "long": c["long_samples"], "long_hours": hours(c["long_seconds"]),
            "videos": len(videos[src]), "member_bytes": c["member_bytes"],
            "source_hours": hours(sum(probed.get(v, 0.0) for v in videos[src])),
        }

    all_videos = set().union(*videos.values()) if videos else set()
    return {
        "samples": len(rows),
        "hours": hours(total_s),
        "shards": len(corpus.index.shards),
        "bytes": sum(s.filesize for s in corpus.index.shards),
        "videos": len(all_videos),
        "source_hours": hours(sum(probed.get(v, 0.0) for v in all_videos)),
        "by_source": {s: src_row(s, c) for s, c in sorted(by_source.items())},
        "by_bucket": {b: {"samples": c["samples"], "hours": hours(c["seconds"]),
                          "share_of_hours": round(c["seconds"] / total_s, 6) if total_s else 0.0}
                      for b, c in sorted(by_bucket.items())},
    }


def distributions(corpus: Corpus, facts: dict[str, dict[str, Any]], cfg: AuditConfig
                  ) -> dict[str, Any]:
    rc = cfg.report
    h = lambda values, unit="", integer=False: histogram(  # noqa: E731
        values, rc.bins, rc.percentiles, unit=unit, integer=integer)
    rows = corpus.samples
    dur = [r.get("duration") for r in rows]
    long_keys = {r["key"] for r in rows if r.get("bucket") == "long"}
    f = [facts.get(r["key"], {}) for r in rows]
    qa_tasks: Counter = Counter()
    qa_per_sample = []
    for x in f:
        if x.get("qa_tasks") is not None:
            qa_tasks.update(x["qa_tasks"])
            qa_per_sample.append(len(x["qa_tasks"]))
    res = Counter(f"{r.get('width')}x{r.get('height')}" for r in rows)
    fps = Counter(f"{float(r['fps']):.3f}".rstrip("0").rstrip(".") for r in rows
                  if r.get("fps") is not None)
    return {
        "duration": h(dur, "s"),
        "duration_short": h([r.get("duration") for r in rows if r.get("bucket") == "short"], "s"),
        "duration_long": h([r.get("duration") for r in rows if r.get("bucket") == "long"], "s"),
        "short_side": h([min(r["width"], r["height"]) if r.get("width") and r.get("height")
                         else None for r in rows], "px"),
        "resolution": ranked(res),
        "fps": h([r.get("fps") for r in rows], "fps"),
        "fps_values": ranked(fps),
        "caption_words": h([_words(r.get("caption")) for r in rows], "words"),
        "events_per_long_sample": h([x.get("events") for x in f if x.get("key") in long_keys],
                                    "events", integer=True),
        "qa_by_task": ranked(qa_tasks),
        "qa_per_sample": h(qa_per_sample, "pairs", integer=True),
        "video_text_score": h([x.get("video_text") for x in f], "cosine"),
        "motion": h([x.get("motion") for x in f], "mean |Δluma|"),
    }


def annotations(corpus: Corpus, facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How many samples carry each annotation (0 everywhere for a build without the annotate
    stages)."""
    n = len(corpus.samples)
    extras = corpus.extras
    has: Counter = Counter()
    for r, e in zip(corpus.samples, extras, strict=True):
        x = facts.get(r["key"], {})
        exts = {m["ext"] for m in r.get("members") or []}
        has["caption"] += bool(r.get("caption"))
        has["events"] += x.get("events") is not None
        has["qa"] += bool(x.get("qa_tasks"))
        has["embedding"] += "emb.npy" in exts or bool(e.get("embedding"))
        has["video_text_score"] += x.get("video_text") is not None
        has["motion"] += x.get("motion") is not None
        has["model_captions"] += x.get("captions") is not None
    return {"samples": n, "with": {k: has[k] for k in sorted(has)},
            "annotated": any(has[k] for k in ("events", "qa", "embedding", "video_text_score"))}


def licences(corpus: Corpus, facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    per: dict[tuple[str, str], Counter] = defaultdict(Counter)
    total = 0.0
    for r, e in zip(corpus.samples, corpus.extras, strict=True):
        lic = e.get("licence") or facts.get(r["key"], {}).get("licence") or "unknown"
        c = per[(str(r.get("source")), str(lic))]
        c["samples"] += 1
        c["seconds"] += float(r.get("duration") or 0)
        total += float(r.get("duration") or 0)
    by_licence: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, set[str]] = defaultdict(set)
    for (src, lic), c in per.items():
        by_licence[lic].update(c)
        sources[lic].add(src)
    return {
        "by_source": [{"source": s, "licence": lic, "samples": c["samples"],
                       "hours": hours(c["seconds"]),
                       "share_of_hours": round(c["seconds"] / total, 6) if total else 0.0}
                      for (s, lic), c in sorted(per.items())],
        "by_licence": [{"licence": lic, "samples": c["samples"], "hours": hours(c["seconds"]),
                        "share_of_hours": round(c["seconds"] / total, 6) if total else 0.0,
                        "sources": sorted(sources[lic])}
                       for lic, c in sorted(by_licence.items(), key=lambda kv: -kv[1]["seconds"])],
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


def corpus_duplicates(corpus: Corpus, facts: dict[str, dict[str, Any]], cfg: AuditConfig,
                      exact_found: Pairs | None = None) -> DedupResult:
    """The duplicates table of the accepted samples (longvid.dedup, the build filter's search);
    ``exact_found``: exact pairs a distributed group-by already found."""
    dc = cfg.duplicates
    s = duplicates.corpus_samples(corpus.samples, corpus.extras, facts)
    return find_duplicates(s, dc.search, exact=dc.exact, near_cosine=dc.near_cosine,
                           exact_found=exact_found)


def duplicates_section(corpus: Corpus, found: DedupResult, cfg: AuditConfig) -> dict[str, Any]:
    dc = cfg.duplicates
    st = found.stats
    listed, per_signal = duplicates.groups(found.table, dc.max_clusters)
    hashed = sum(1 for r, e in zip(corpus.samples, corpus.extras, strict=True)
                 if (e.get("scores") or {}).get("clip_sha256")) if dc.exact else 0
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
        "removed_by_build": duplicates.removed_by_build(corpus.rejects),
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


def table_problems(corpus: Corpus, shard_problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Problems only the whole corpus shows: duplicate keys in samples.parquet, stray shard
    files; and samples the build dropped as duplicates are not 'unexpected' in their shard."""
    out = []
    dropped = {accounting.sample_reject_key(r) for r in corpus.rejects
               if accounting.is_sample_reject(r)}
    for p in shard_problems:
        if p["reason"] == "unexpected_key" and p["key"] in dropped:
            continue
        out.append(p)
    counts = Counter(r["key"] for r in corpus.samples)
    for key, n in sorted(counts.items()):
        if n > 1:
            out.append({"shard": None, "key": key, "reason": "duplicate_key",
                        "message": f"samples.parquet lists key {key!r} {n} times"})
    listed = {s.url for s in corpus.index.shards}
    for f in corpus.shard_files or []:
        if f not in listed:
            out.append({"shard": f, "key": None, "reason": "orphan_shard",
                        "message": f"{f}: a file under shards/ that index.json does not list"})
    return out


def build_report(corpus: Corpus, shard_results: list[dict[str, Any]], cfg: AuditConfig,
                 audit_run: dict[str, Any], leakage: dict[str, Any] | None = None,
                 compare: dict[str, Any] | None = None,
                 found: DedupResult | None = None) -> dict[str, Any]:
    """The whole report (see the module docstring); ``found``: the duplicates when the caller
    computed them already."""
    facts = {f["key"]: f for res in shard_results for f in res.get("facts", [])}
    if found is None:
        found = corpus_duplicates(corpus, facts, cfg)
    problems = table_problems(corpus, [p for res in shard_results for p in res["problems"]])
    ingest, p_ingest = accounting.ingest_accounting(corpus)
    build, p_build = accounting.build_accounting(corpus, cfg.report.examples)
    agreement, p_summary = accounting.summary_agreement(corpus, build)
    problems += p_ingest + p_build + p_summary
    if leakage is not None:
        problems += leakage.pop("problems", [])
    checks = verdicts(problems, with_leakage=leakage is not None,
                      max_listed=cfg.checks.max_listed)
    failed = [c["name"] for c in checks if not c["passed"]]
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "root": corpus.root,
        "verdict": "fail" if failed else "pass",
        "failed_checks": failed,
        "checks": checks,
        "totals": totals(corpus),
        "annotations": annotations(corpus, facts),
        "distributions": distributions(corpus, facts, cfg),
        "accounting": {
            "ingest": ingest,
            "build": build,
            "rejects": accounting.rejects_breakdown(corpus, cfg.report.examples),
            "declared_vs_probed": accounting.declared_vs_probed(
                corpus, list(facts.values()), cfg.report.max_rows),
            "summary_agreement": agreement,
        },
        "duplicates": duplicates_section(corpus, found, cfg),
        "licences": licences(corpus, facts),
        "run": run_section(corpus, audit_run),
        "config": cfg.model_dump(mode="json", exclude={"s3"}),
    }
    if leakage is not None:
        report["leakage"] = leakage
    if compare is not None:
        report["compare"] = compare
    return report
