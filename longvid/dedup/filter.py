"""The build's corpus-wide duplicate filter, on top of :func:`~longvid.dedup.find_duplicates`.

It runs when the build finishes, over the sample parts of every committed unit (the partitioned
search, then each part filtered on its own: no process holds every row). Every duplicate of the
duplicates table leaves ``samples.parquet`` and becomes a reject row (stage ``filter``, reason
``filter:exact_duplicate`` / ``filter:near_duplicate`` (embedding) /
``filter:fingerprint_duplicate`` (perceptual fingerprint only), the kept key and the measure in
the detail); its bytes stay in their shard, which readers driven by ``samples.parquet`` (the
loader, the exporter) never touch. A video all of whose samples are duplicates becomes one
record-level reject row, as any rejected video does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from longvid.annotate.config import FiltersConfig
from longvid.dedup.config import DedupConfig
from longvid.dedup.fingerprint import BITS
from longvid.dedup.read import samples_from_rows
from longvid.dedup.search import find_duplicates
from longvid.shards.manifest import parse_extra


def reason(signal: str) -> str:
    """The reject reason of a duplicates-table row (the strongest of its signals)."""
    signals = signal.split("+")
    if "exact" in signals:
        return "exact_duplicate"
    if "embedding" in signals:
        return "near_duplicate"
    return "fingerprint_duplicate"


def detail(dup: dict[str, Any], near_cosine: float | None, max_bits: int | None) -> str:
    """One line naming the sample, the one kept and the measure that joined them."""
    key, kept, why = dup["key"], dup["kept_key"], reason(dup["signal"])
    if why == "exact_duplicate":
        return f"sample {key}: clip bytes equal those of {kept} (SHA-256)"
    if why == "near_duplicate":
        text = (f"sample {key}: video embedding cosine {dup['cosine']:.6f} with {kept} "
                f"(must be below {near_cosine})")
    else:
        text = f"sample {key}: a copy of {kept} (perceptual fingerprint)"
    if dup.get("hamming") is not None:
        text += f"; fingerprints {dup['hamming']} of {BITS} bits apart (at most {max_bits})"
    return text


def apply_duplicates(rows: list[dict[str, Any]], filters: FiltersConfig,
                     search: DedupConfig | None = None
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows kept, reject rows), in process (small row lists; the build runs the partitioned
    search, longvid.pipelines.dedup_partitioned, and :func:`reject_rows` part by part)."""
    search = search or DedupConfig()
    result = find_duplicates(samples_from_rows(rows), search, exact=filters.exact_duplicates,
                             near_cosine=filters.near_duplicate_cosine)
    dups = {d["key"]: d for d in result.table.to_pylist()}
    return reject_rows(rows, dups, filters, search)


def reject_rows(rows: list[dict[str, Any]], dups: dict[str, dict[str, Any]],
                filters: FiltersConfig, search: DedupConfig
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows kept, reject rows) given the duplicates-table rows of these rows' keys (``dups``).
    ``rows`` must hold every sample of each video they name (a unit's part does: a video's
    samples are made by one unit), to fold a video all of whose samples leave."""
    if not dups:
        return list(rows), []
    kept = [r for r in rows if r["key"] not in dups]
    left = {r.get("record_id") for r in kept}
    per_record = Counter(r.get("record_id") for r in rows)
    rejects: list[dict[str, Any]] = []
    folded: set[Any] = set()
    for r in sorted(rows, key=lambda r: r["key"]):
        d = dups.get(r["key"])
        if d is None:
            continue
        rid = r.get("record_id")
        row = {"source": r.get("source"), "record_id": rid, "locator": f"{rid}#{r['key']}",
               "stage": "filter", "reason": f"filter:{reason(d['signal'])}",
               "detail": detail(d, filters.near_duplicate_cosine, search.fingerprint_max_bits)}
        if rid in left:
            rejects.append(row)
        elif rid not in folded:
            folded.add(rid)
            row["locator"] = parse_extra(r.get("extra")).get("locator") or str(rid)
            row["detail"] = f"{rid}: all {per_record[rid]} samples are duplicates; first: " \
                            f"{row['detail']}"
            rejects.append(row)
    return kept, rejects


@dataclass
class DuplicateFilter:
    """The build's corpus-wide duplicate filter: which signals (``filters``) and the search
    settings. Called on rows it filters them in process; the build's finalize runs it over the
    sample parts (longvid.pipelines.finalize)."""

    filters: FiltersConfig
    search: DedupConfig

    def __call__(self, rows: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return apply_duplicates(rows, self.filters, self.search)


def corpus_filter(cfg: Any) -> DuplicateFilter | None:
    """The build's corpus-wide filter for a build config: None unless the ``filter`` stage runs
    and a duplicate signal is on."""
    f, search = cfg.annotate.filters, cfg.dedup
    if "filter" not in cfg.stages:
        return None
    if not (f.exact_duplicates or f.near_duplicate_cosine is not None
            or search.fingerprint_max_bits is not None):
        return None
    return DuplicateFilter(f, search)
