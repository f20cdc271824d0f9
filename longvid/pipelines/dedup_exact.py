"""Exact duplicates as a distributed group-by (Ray Data): rows grouped by content hash on the
workers; only the duplicates (row, row kept) come back to the driver, never a set of every key.
Same rule as :func:`longvid.dedup.exact.exact_pairs`: in each group the first key is kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from longvid.dedup import Pairs


def _star(group: pa.Table) -> pa.Table:
    """One hash's rows → (row, head) for every row but the one with the first key."""
    rows = group.column("row").to_numpy()
    keys = np.asarray(group.column("key").to_pylist(), dtype=object).astype(str)
    head = rows[int(np.argmin(keys))] if len(keys) else 0
    others = rows[rows != head]
    return pa.table({"row": pa.array(others, pa.int64()),
                     "head": pa.array(np.full(len(others), head), pa.int64())})


def exact_pairs_ray(keys: pa.Array | list, hashes: pa.Array | list) -> Pairs:
    """Exact-duplicate pairs of rows ``0..N-1`` (``keys``/``hashes`` ``[N]``; null or empty
    hashes never match), found by ``groupby(hash).map_groups`` on the running Ray."""
    import ray.data

    table = pa.table({"row": pa.array(np.arange(len(keys)), pa.int64()),
                      "key": pa.array(keys, pa.string()), "hash": pa.array(hashes, pa.string())})
    mask = pa.compute.fill_null(pa.compute.not_equal(table.column("hash"), ""), False)
    table = table.filter(mask)
    if table.num_rows == 0:
        return Pairs.empty("exact")
    ds = ray.data.from_arrow(table).groupby("hash").map_groups(_star, batch_format="pyarrow")
    parts = [b for b in ds.iter_batches(batch_format="pyarrow") if b.num_rows]
    if not parts:
        return Pairs.empty("exact")
    out = pa.concat_tables([pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
                            for b in parts])
    row, head = out.column("row").to_numpy(), out.column("head").to_numpy()
    order = np.lexsort((np.maximum(row, head), np.minimum(row, head)))
    row, head = row[order], head[order]
    return Pairs("exact", np.minimum(row, head), np.maximum(row, head),
                 np.ones(len(row), np.float32))
