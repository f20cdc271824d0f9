"""The build's duplicate filter over the sample parts: the partitioned search
(:mod:`longvid.pipelines.dedup_partitioned`), then one task per part drops its duplicates and
makes their reject rows (:func:`longvid.dedup.filter.reject_rows`). No process reads every
sample row; the driver gets the reject rows (one per duplicate) and the counts."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from longvid import storage
from longvid.dedup.filter import DuplicateFilter, reject_rows
from longvid.dedup.partition import read_part
from longvid.pipelines.dedup_partitioned import find_duplicates_partitioned, run_tasks
from longvid.shards import read_table

WORK_DIR = "dedup-work"  # under the build root; removed when the filter is done


def filter_part(uri: str, duplicate_parts: list[str], flt: DuplicateFilter
                ) -> tuple[int, list[dict[str, Any]]]:
    """Drop the duplicates of one sample part (rewritten only when it loses rows): (rows kept,
    reject rows)."""
    table = read_table(uri)
    keys = table.column("key")
    found = [t.filter(pc.is_in(t.column("key"), value_set=keys))
             for t in (read_part(d) for d in duplicate_parts)]
    dups = {d["key"]: d for t in found for d in t.to_pylist()}
    if not dups:
        return table.num_rows, []
    _, rejects = reject_rows(table.select(["key", "record_id", "source", "extra"]).to_pylist(),
                             dups, flt.filters, flt.search)
    kept = table.filter(pc.invert(pc.is_in(keys, value_set=pa.array(sorted(dups), pa.string()))))
    buf = io.BytesIO()
    pq.write_table(kept, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())
    return kept.num_rows, rejects


def filter_parts(root: str, parts: list[str], flt: DuplicateFilter
                 ) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """(samples kept, reject rows in part order, the search's stats) for the sample parts
    ``parts`` (relative to ``root``)."""
    uris = [storage.join(root, p) for p in parts]
    found = find_duplicates_partitioned(uris, flt.search, storage.join(root, WORK_DIR),
                                        exact=flt.filters.exact_duplicates,
                                        near_cosine=flt.filters.near_duplicate_cosine)
    try:
        results = run_tasks(filter_part, [(u, found.parts, flt) for u in uris])
    finally:
        found.remove_work(parts_too=True)
    kept = sum(n for n, _ in results)
    return kept, [r for _, rejects in results for r in rejects], found.stats
