"""Where every input went: inputs → accepted + rejected, per source, recomputed from the tables.

Two levels. *Ingest*: rows of the release files → manifest records + ingest rejects (from
``ingest/ingest_summary.json`` when the build ingested its sources itself). *Build*: manifest
records → records with samples + records rejected by a build stage. A record that is in neither
is *lost*; one that is in both is *doubled*; either fails the accounting check. The numbers in
``summary.json`` are compared with the tables too, so a summary that says something the tables
do not is caught.

A reject row is about a whole record unless its locator names a sample (``record#KEY``): then
one sample of an accepted record was dropped (a filter, a duplicate).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from longvid.audit.corpus import Corpus


def is_sample_reject(row: dict[str, Any]) -> bool:
    return "#" in str(row.get("locator") or "")


def sample_reject_key(row: dict[str, Any]) -> str | None:
    loc = str(row.get("locator") or "")
    return loc.rsplit("#", 1)[1] if "#" in loc else None


def _source_of(record_id: str) -> str:
    return record_id.split(":", 1)[0] if ":" in record_id else "?"


def _problem(reason: str, message: str, key: str | None = None) -> dict[str, Any]:
    return {"shard": None, "key": key, "reason": reason, "message": message}


def ingest_accounting(corpus: Corpus) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per source: inputs, accepted, rejected, manifest rows, and the ingest rejects in the
    corpus's rejects table."""
    table_rejects = Counter(r["source"] for r in corpus.rejects if r.get("stage") == "ingest")
    if corpus.ingest_summary is None:
        return {"available": False, "rejects_in_table": dict(table_rejects)}, []
    problems = []
    by_source: dict[str, dict[str, Any]] = {}
    for s in corpus.ingest_summary.get("sources", []):
        src = str(s.get("source"))
        row = {k: int(s.get(k, 0) or 0) for k in ("inputs", "accepted", "rejected", "rows")}
        row["rejects_in_table"] = int(table_rejects.get(src, 0))
        by_source[src] = row
        if row["inputs"] != row["accepted"] + row["rejected"]:
            problems.append(_problem(
                "ingest_sum", f"ingest {src}: {row['inputs']} inputs but {row['accepted']} "
                f"accepted + {row['rejected']} rejected"))
        if row["rejected"] != row["rejects_in_table"]:
            problems.append(_problem(
                "ingest_rejects", f"ingest {src}: the ingest summary counts {row['rejected']} "
                f"rejects, rejects.parquet holds {row['rejects_in_table']}"))
    if corpus.manifest is not None:
        rows = sum(v["rows"] for v in by_source.values())
        if rows != len(corpus.manifest):
            problems.append(_problem(
                "ingest_rows", f"ingest: the summary counts {rows} manifest rows, "
                f"manifest.parquet holds {len(corpus.manifest)}"))
    return {"available": True, "by_source": dict(sorted(by_source.items()))}, problems


def record_outcomes(corpus: Corpus) -> dict[str, dict[str, Any]]:
    """record id → {source, samples, record_rejects [(stage, reason)], sample_rejects, listed}."""
    out: dict[str, dict[str, Any]] = {}

    def rec(rid: str, source: str | None = None) -> dict[str, Any]:
        if rid not in out:
            out[rid] = {"source": source or _source_of(rid), "samples": 0, "seconds": 0.0,
                        "record_rejects": [], "sample_rejects": 0}
        return out[rid]

    for rid in corpus.ledger_records:
        rec(rid)
    for m in corpus.manifest or []:
        rec(str(m["record_id"]), m.get("source"))
    for r in corpus.samples:
        o = rec(str(r.get("record_id")), r.get("source"))
        o["samples"] += 1
        o["seconds"] += float(r.get("duration") or 0.0)
    for r in corpus.rejects:
        if r.get("stage") == "ingest" or r.get("record_id") is None:
            continue  # never became a manifest record
        o = rec(str(r["record_id"]), r.get("source"))
        if is_sample_reject(r):
            o["sample_rejects"] += 1
        else:
            o["record_rejects"].append((r.get("stage"), r.get("reason")))
    return out


def build_accounting(corpus: Corpus, examples: int) -> tuple[dict[str, Any], list[dict]]:
    """Per source: records = accepted + rejected, with the lost and doubled ones named."""
    outcomes = record_outcomes(corpus)
    by_source: dict[str, Counter] = defaultdict(Counter)
    lost: list[str] = []
    doubled: list[str] = []
    for rid, o in sorted(outcomes.items()):
        c = by_source[o["source"]]
        c["records"] += 1
        c["samples"] += o["samples"]
        c["sample_rejects"] += o["sample_rejects"]
        rejected = bool(o["record_rejects"])
        accepted = o["samples"] > 0 or (o["sample_rejects"] > 0 and not rejected)
        if rejected and o["samples"] > 0:
            doubled.append(rid)
            c["doubled"] += 1
        elif rejected:
            c["rejected"] += 1
            if len(o["record_rejects"]) > 1:
                doubled.append(rid)
                c["doubled"] += 1
        elif accepted:
            c["accepted"] += 1
        else:
            lost.append(rid)
            c["lost"] += 1
    problems = [
        _problem("lost_record", f"record {rid}: no sample and no reject row (lost)", rid)
        for rid in lost
    ] + [
        _problem("doubled_record", f"record {rid}: counted twice "
                 f"(samples {outcomes[rid]['samples']}, reject rows "
                 f"{outcomes[rid]['record_rejects']})", rid)
        for rid in doubled
    ]
    keys = ("records", "accepted", "rejected", "lost", "doubled", "samples", "sample_rejects")
    table = {s: {k: int(c.get(k, 0)) for k in keys} for s, c in sorted(by_source.items())}
    totals = {k: sum(v[k] for v in table.values()) for k in keys}
    return {"by_source": table, "totals": totals, "lost": lost[:examples * 10],
            "doubled": doubled[:examples * 10]}, problems


def rejects_breakdown(corpus: Corpus, examples: int) -> dict[str, Any]:
    """Rejects by stage and by (stage, reason), with example ids and details."""
    by_stage = Counter(str(r.get("stage")) for r in corpus.rejects)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in corpus.rejects:
        groups[(str(r.get("stage")), str(r.get("reason")))].append(r)
    reasons = []
    for (stage, reason), rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        reasons.append({
            "stage": stage,
            "reason": reason,
            "count": len(rows),
            "sources": dict(sorted(Counter(str(r.get("source")) for r in rows).items())),
            "examples": [{"record_id": r.get("record_id"), "locator": r.get("locator"),
                          "detail": r.get("detail")} for r in rows[:examples]],
        })
    return {"total": len(corpus.rejects), "by_stage": dict(by_stage.most_common()),
            "by_reason": reasons}


def summary_agreement(corpus: Corpus, build: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """summary.json against the tables: (rows of the comparison, problems)."""
    s = corpus.summary
    if s is None:
        return [], []
    index_bytes = sum(x.filesize for x in corpus.index.shards)
    dropped = sum(1 for r in corpus.rejects if is_sample_reject(r))
    rec = s.get("records", {})
    # (what, summary value, table value, other table values that also agree)
    pairs: list[tuple[str, Any, int, set[int]]] = [
        ("records in the manifest", rec.get("manifest"), build["totals"]["records"], set()),
        ("records accepted", rec.get("accepted"), build["totals"]["accepted"], set()),
        ("records rejected by the build", rec.get("rejected"), build["totals"]["rejected"], set()),
        ("shards", (s.get("shards") or {}).get("count"), len(corpus.index.shards), set()),
        ("shard bytes", (s.get("shards") or {}).get("bytes"), index_bytes, set()),
        # samples dropped after their unit was written (duplicates) may or may not be in the
        # summary's count, depending on when it was made
        ("samples", s.get("samples"), len(corpus.samples), {len(corpus.samples) + dropped}),
    ]
    rows, problems = [], []
    for what, said, found, also in pairs:
        if said is None:
            continue
        ok = int(said) == found or int(said) in also
        rows.append({"what": what, "summary": said, "tables": found, "ok": ok})
        if not ok:
            problems.append(_problem("summary_mismatch",
                                     f"summary.json says {what} = {said}, the tables give {found}"))
    return rows, problems


def declared_vs_probed(corpus: Corpus, facts: list[dict[str, Any]], max_rows: int
                       ) -> dict[str, Any]:
    """Declared (release metadata) vs probed values per source video: counts per source and
    field, and the disagreeing videos with both values."""
    videos: dict[str, dict[str, Any]] = {}
    rid_of = {r["key"]: r.get("record_id") for r in corpus.samples}
    src_of = {r["key"]: r.get("source") for r in corpus.samples}
    for f in facts:
        sv = f.get("source_video")
        rid = rid_of.get(f["key"])
        if not isinstance(sv, dict) or rid is None or rid in videos:
            continue
        videos[rid] = {"source": src_of.get(f["key"]), **sv}
    # videos the build probed but that have no sample: the ledger names the fields
    declared = {str(m["record_id"]): m for m in corpus.manifest or []}
    for v in corpus.ledger_videos:
        rid = str(v.get("record_id"))
        if rid in videos or not v.get("declared_mismatch"):
            continue
        m = declared.get(rid, {})
        entry = {"source": _source_of(rid), "mismatch": list(v["declared_mismatch"])}
        for field in ("duration", "fps"):
            entry[field] = v.get(field)
            if m.get(f"declared_{field}") is not None:
                entry[f"declared_{field}"] = m[f"declared_{field}"]
        videos[rid] = entry
    per_source: dict[str, Counter] = defaultdict(Counter)
    rows = []
    for rid, v in sorted(videos.items()):
        c = per_source[str(v.get("source"))]
        c["videos"] += 1
        if any(f"declared_{f}" in v for f in ("duration", "fps", "width", "height")):
            c["with_declared"] += 1
        for field in v.get("mismatch") or []:
            c[field] += 1
            d, p = v.get(f"declared_{field}"), v.get(field)
            diff = None
            if isinstance(d, int | float) and isinstance(p, int | float):
                diff = round(float(p) - float(d), 6)
            rows.append({"record_id": rid, "source": v.get("source"), "field": field,
                         "declared": d, "probed": p, "difference": diff})
    return {
        "by_source": {s: dict(c) for s, c in sorted(per_source.items())},
        "mismatches": len(rows),
        "rows": rows[:max_rows],
    }
