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

import json
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    if corpus.manifest_rows is not None:
        rows = sum(v["rows"] for v in by_source.values())
        if rows != corpus.manifest_rows:
            problems.append(_problem(
                "ingest_rows", f"ingest: the summary counts {rows} manifest rows, "
                f"manifest.parquet holds {corpus.manifest_rows}"))
    return {"available": True, "by_source": dict(sorted(by_source.items()))}, problems


def _source_of_ids(ids: pa.Array) -> pa.Array:
    """The source prefix of record ids (``source:rest``), ``?`` without one."""
    parts = pc.split_pattern(ids, ":", max_splits=1)
    has = pc.match_substring(ids, ":")
    return pc.if_else(has, pc.list_element(parts, 0), pa.scalar("?"))


def _distinct_ids(ids: pa.Array, sources: pa.Array) -> pa.Table:
    t = pa.table({"record_id": ids, "source": sources})
    return t.group_by("record_id", use_threads=False).aggregate([("source", "first")]) \
        .rename_columns({"source_first": "source"})


def record_outcomes(corpus: Corpus, per_record: pa.Table) -> pa.Table:
    """One row per record id met anywhere (ledger, manifest, sample table, build rejects):
    ``record_id, source, samples, record_rejects, sample_rejects``, as Arrow columns.
    ``per_record``: the sample table's ``record_id, source, samples, seconds`` (the streaming
    pass). The source is the first one met in that order (the ledger's is the id's prefix)."""
    str_ = pa.string()
    parts: list[tuple[str, pa.Table]] = []
    lid = pc.unique(pc.cast(corpus.ledger_videos.column("record_id"), str_))
    parts.append(("ledger", pa.table({"record_id": lid, "source": _source_of_ids(lid)})))
    mids, msrc = [], []
    for b in corpus.manifest_batches(["record_id", "source"]):
        mids.append(pc.cast(b.column("record_id"), str_))
        msrc.append(pc.cast(b.column("source"), str_))
    if mids:
        parts.append(("manifest", _distinct_ids(pa.concat_arrays(mids), pa.concat_arrays(msrc))))
    parts.append(("samples", per_record.select(["record_id", "source"])))
    rej = [r for r in corpus.rejects
           if r.get("stage") != "ingest" and r.get("record_id") is not None]
    rej_ids = pa.array([str(r["record_id"]) for r in rej], str_)
    rej_src = pa.array([r.get("source") for r in rej], str_)
    sample_rej = pa.array([is_sample_reject(r) for r in rej], pa.bool_())
    parts.append(("rejects", _distinct_ids(rej_ids, rej_src)))
    # every id once, with the source of the first table that has it
    ranked = pa.concat_tables([t.append_column("rank", pa.array(np.full(t.num_rows, i)))
                               for i, (_, t) in enumerate(parts)])
    ranked = ranked.set_column(1, "source", pc.coalesce(
        ranked.column("source"), _source_of_ids(ranked.column("record_id"))))
    ranked = ranked.sort_by([("record_id", "ascending"), ("rank", "ascending")])
    ids = ranked.group_by("record_id", use_threads=False).aggregate([("source", "first")]) \
        .rename_columns({"source_first": "source"}).sort_by("record_id")
    n = ids.num_rows
    rid = ids.column("record_id")
    samples = np.zeros(n, np.int64)
    where = pc.index_in(per_record.column("record_id"), value_set=rid).to_numpy(
        zero_copy_only=False)
    np.add.at(samples, where, per_record.column("samples").to_numpy())
    rec_rej = np.zeros(n, np.int64)
    smp_rej = np.zeros(n, np.int64)
    if len(rej_ids):
        at = pc.index_in(rej_ids, value_set=rid).to_numpy(zero_copy_only=False)
        is_s = sample_rej.to_numpy(zero_copy_only=False)
        np.add.at(smp_rej, at[is_s], 1)
        np.add.at(rec_rej, at[~is_s], 1)
    source = pc.fill_null(ids.column("source"), "None")
    return pa.table({"record_id": rid, "source": source, "samples": samples,
                     "record_rejects": rec_rej, "sample_rejects": smp_rej})


def build_accounting(corpus: Corpus, per_record: pa.Table, examples: int, max_listed: int,
                     unlisted: Counter | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Per source: records = accepted + rejected, with the lost and doubled ones named (the
    first ``max_listed`` as problems, the rest counted in ``unlisted``)."""
    t = record_outcomes(corpus, per_record)
    samples = t.column("samples").to_numpy()
    rr = t.column("record_rejects").to_numpy()
    sr = t.column("sample_rejects").to_numpy()
    rejected = rr > 0
    has = samples > 0
    doubled = (rejected & has) | (rejected & ~has & (rr > 1))
    rejected_only = rejected & ~has
    accepted = ~rejected & (has | (sr > 0))
    lost = ~rejected & ~accepted
    names, codes = np.unique(np.asarray(t.column("source").to_pylist(), dtype=object)
                             .astype(str), return_inverse=True) if t.num_rows else ([], [])
    codes = np.asarray(codes, np.int64).ravel()
    k = len(names)

    def per_source(mask: np.ndarray | None = None, weights: np.ndarray | None = None
                   ) -> np.ndarray:
        w = weights if mask is None else (mask.astype(np.int64) if weights is None
                                          else weights * mask)
        return np.bincount(codes, weights=w, minlength=k).astype(np.int64)

    cols = {"records": per_source(), "accepted": per_source(accepted),
            "rejected": per_source(rejected_only), "lost": per_source(lost),
            "doubled": per_source(doubled), "samples": per_source(None, samples),
            "sample_rejects": per_source(None, sr)}
    keys = ("records", "accepted", "rejected", "lost", "doubled", "samples", "sample_rejects")
    table = {str(s): {c: int(cols[c][i]) for c in keys} for i, s in enumerate(names)}
    totals = {c: sum(v[c] for v in table.values()) for c in keys}
    rid = t.column("record_id")  # sorted
    lost_ids = pc.filter(rid, pa.array(lost)).to_pylist() if lost.any() else []
    doubled_ids = pc.filter(rid, pa.array(doubled)).to_pylist() if doubled.any() else []
    unlisted = unlisted if unlisted is not None else Counter()
    unlisted["lost_record"] += max(0, len(lost_ids) - max_listed)
    unlisted["doubled_record"] += max(0, len(doubled_ids) - max_listed)
    listed_doubled = doubled_ids[:max_listed]
    reasons: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    wanted = set(listed_doubled)
    for r in corpus.rejects:
        if (str(r.get("record_id")) in wanted and r.get("stage") != "ingest"
                and not is_sample_reject(r)):
            reasons[str(r["record_id"])].append((r.get("stage"), r.get("reason")))
    n_samples = dict(zip(rid.to_pylist(), samples.tolist(), strict=True)) if wanted else {}
    problems = [
        _problem("lost_record", f"record {x}: no sample and no reject row (lost)", x)
        for x in lost_ids[:max_listed]
    ] + [
        _problem("doubled_record", f"record {x}: counted twice "
                 f"(samples {n_samples[x]}, reject rows {reasons[x]})", x)
        for x in listed_doubled
    ]
    return {"by_source": table, "totals": totals, "lost": lost_ids[:examples * 10],
            "doubled": doubled_ids[:examples * 10]}, problems


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
        ("samples", s.get("samples"), corpus.scan.rows, {corpus.scan.rows + dropped}),
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


def declared_vs_probed(corpus: Corpus, source_videos: pa.Table, max_rows: int
                       ) -> dict[str, Any]:
    """Declared (release metadata) vs probed values per source video: counts per source and
    field, and the first ``max_rows`` disagreeing videos with both values.

    ``source_videos``: ``record_id, source, video`` (the ``source_video`` JSON of a sample's
    KEY.json, first per record, as the shard tasks read it). Videos the build probed but that
    have no sample come from the ledger's ``declared_mismatch``; their declared values from
    the manifest, streamed for those ids only."""
    per_source: dict[str, Counter] = defaultdict(Counter)
    rows: list[dict[str, Any]] = []
    total = 0

    def add(rid: str, v: dict[str, Any]) -> None:
        nonlocal total
        c = per_source[str(v.get("source"))]
        c["videos"] += 1
        if any(f"declared_{f}" in v for f in ("duration", "fps", "width", "height")):
            c["with_declared"] += 1
        for field in v.get("mismatch") or []:
            c[field] += 1
            total += 1
            if len(rows) >= max_rows:
                continue
            d, p = v.get(f"declared_{field}"), v.get(field)
            diff = None
            if isinstance(d, int | float) and isinstance(p, int | float):
                diff = round(float(p) - float(d), 6)
            rows.append({"record_id": rid, "source": v.get("source"), "field": field,
                         "declared": d, "probed": p, "difference": diff})

    # videos the build probed but that have no sample: the ledger names the fields
    lv = corpus.ledger_videos
    seen = source_videos.column("record_id")
    mism = pc.fill_null(pc.greater(pc.list_value_length(lv.column("declared_mismatch")), 0),
                        False)
    extra = lv.filter(mism)
    extra = extra.filter(pc.invert(pc.is_in(pc.cast(extra.column("record_id"), pa.string()),
                                            value_set=seen)))
    last: dict[str, dict[str, Any]] = {}
    for v in extra.to_pylist():  # the first probe of an id counts
        last.setdefault(str(v.get("record_id")), v)
    declared: dict[str, dict[str, Any]] = {}
    if last:
        want = pa.array(sorted(last), pa.string())
        for b in corpus.manifest_batches(["record_id", "declared_duration", "declared_fps"]):
            hit = pc.fill_null(pc.is_in(pc.cast(b.column("record_id"), pa.string()),
                                        value_set=want), False)
            for m in b.filter(hit).to_pylist():
                declared.setdefault(str(m["record_id"]), m)
    ledger_entries = {}
    for rid, v in last.items():
        m = declared.get(rid, {})
        entry = {"source": _source_of(rid), "mismatch": list(v["declared_mismatch"])}
        for field in ("duration", "fps"):
            entry[field] = v.get(field)
            if m.get(f"declared_{field}") is not None:
                entry[f"declared_{field}"] = m[f"declared_{field}"]
        ledger_entries[rid] = entry
    # both lists in record order, merged (as one sorted dict of every video was)
    sv = source_videos.sort_by("record_id")
    ids, srcs, docs = (sv.column(c).to_pylist() for c in ("record_id", "source", "video"))
    pending = sorted(ledger_entries)
    j = 0
    for rid, src, doc in zip(ids, srcs, docs, strict=True):
        while j < len(pending) and pending[j] < rid:
            add(pending[j], ledger_entries[pending[j]])
            j += 1
        add(rid, {"source": src, **json.loads(doc)})
    for rid in pending[j:]:
        add(rid, ledger_entries[rid])
    return {
        "by_source": {s: dict(c) for s, c in sorted(per_source.items())},
        "mismatches": total,
        "rows": rows,
    }
