"""The columns :func:`~longvid.dedup.search.find_duplicates` needs, from sample rows or streamed
from a samples dataset (one Parquet file or a folder of parts) a batch at a time.

An embedding is the ``embedding`` column (a fixed-size list, float16) when the dataset has one,
else ``extra.embedding``; the fingerprint is the ``fingerprint`` column (44 bytes) or, in older
corpora, ``extra.fingerprint`` (``{"hash", "colour"}`` hex);
the content hash ``extra.scores.clip_sha256``. Only these columns are kept in memory, as
arrays: embeddings (float16 from the column, float32 from JSON), 4 x 64-bit hashes and 12
colour bytes per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longvid.dedup.fingerprint import FRAMES, from_bytes, from_hex
from longvid.dedup.search import Samples
from longvid.shards.manifest import parse_extra

COLUMNS = ("key", "record_id", "bucket")


class _Collector:
    """Appends batches of rows; ``samples()`` stacks them once."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.records: list[np.ndarray] = []
        self.buckets: list[np.ndarray] = []
        self.hashes: list[str | None] = []
        self.emb: list[np.ndarray] = []  # [b, D] per batch: float16 column or float32 JSON
        self.fp_h: list[np.ndarray] = []
        self.fp_c: list[np.ndarray] = []
        self.fp_v: list[np.ndarray] = []
        self.dim = 0

    def add(self, keys: Sequence[str], records: Sequence[Any], buckets: Sequence[Any],
            extras: Sequence[Any], embeddings: np.ndarray | None,
            fingerprints: Sequence[bytes | None] | None = None) -> None:
        b = len(keys)
        self.keys.append(np.asarray(keys, dtype=object))
        self.records.append(np.asarray([str(r) for r in records], dtype=object))
        self.buckets.append(np.asarray([str(x) for x in buckets], dtype=object))
        parsed = [parse_extra(e) for e in extras]
        self.hashes += [(x.get("scores") or {}).get("clip_sha256") for x in parsed]
        if embeddings is None:
            vecs = [x.get("embedding") for x in parsed]
            dim = next((len(v) for v in vecs if v), 0)
            embeddings = np.zeros((b, dim), np.float32)  # JSON lists are float32 vectors
            for r, v in enumerate(vecs):
                if v and len(v) == dim:
                    embeddings[r] = np.asarray(v, dtype=np.float32)
        if embeddings.shape[1]:
            self.dim = self.dim or embeddings.shape[1]
        self.emb.append(embeddings)
        h = np.zeros((b, FRAMES), np.uint64)
        c = np.zeros((b, FRAMES, 3), np.uint8)
        v = np.zeros(b, bool)
        for r, x in enumerate(parsed):
            fp = from_bytes(fingerprints[r]) if fingerprints is not None else None
            fp = fp if fp is not None else from_hex(x.get("fingerprint"))
            if fp is not None:
                h[r], c[r], v[r] = fp[0], fp[1], True
        self.fp_h.append(h)
        self.fp_c.append(c)
        self.fp_v.append(v)

    def samples(self) -> Samples:
        if not self.keys:
            z = np.zeros(0, dtype=object)
            return Samples(z, z, z)
        emb = None
        if self.dim:
            dtype = np.result_type(*(e.dtype for e in self.emb))
            emb = np.concatenate([e if e.shape[1] == self.dim
                                  else np.zeros((len(e), self.dim), dtype)
                                  for e in self.emb]).astype(dtype)
        valid = np.concatenate(self.fp_v)
        return Samples(
            keys=np.concatenate(self.keys), records=np.concatenate(self.records),
            buckets=np.concatenate(self.buckets),
            content_hashes=np.asarray(self.hashes, dtype=object),
            embeddings=emb,
            fp_hashes=np.concatenate(self.fp_h) if valid.any() else None,
            fp_colours=np.concatenate(self.fp_c) if valid.any() else None,
            fp_valid=valid if valid.any() else None,
        )


def samples_from_rows(rows: Iterable[dict[str, Any]]) -> Samples:
    """From samples.parquet row dicts (``extra`` as JSON text or a dict)."""
    rows = list(rows)
    c = _Collector()
    c.add([r["key"] for r in rows], [r.get("record_id") for r in rows],
          [r.get("bucket") for r in rows], [r.get("extra") for r in rows],
          _embedding_column([r.get("embedding") for r in rows]) if rows and "embedding" in rows[0]
          else None, [r.get("fingerprint") for r in rows])
    return c.samples()


def samples_from_table(table: pa.Table | pa.RecordBatch) -> Samples:
    """From the columns of a samples table (one part, or a batch of one)."""
    c = _Collector()
    _add_batch(c, table)
    return c.samples()


def _add_batch(c: _Collector, batch: pa.Table | pa.RecordBatch) -> None:
    names = set(batch.schema.names)
    n = batch.num_rows

    def col(name: str) -> list[Any]:
        return batch.column(name).to_pylist() if name in names else [None] * n

    c.add(col("key"), col("record_id"), col("bucket"), col("extra"),
          _embedding_column(batch.column("embedding")) if "embedding" in names else None,
          col("fingerprint") if "fingerprint" in names else None)


def _embedding_column(values: Sequence[Any] | pa.Array) -> np.ndarray | None:
    """``[b, D]`` float16 from a list/fixed-size-list column (nulls → zero rows)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count == len(arr):
        return None
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        dim = int(lengths[valid][0])
        if np.all(lengths[valid] == dim):  # one length: the flat values, no Python per row
            out = np.zeros((len(arr), dim), np.float16)
            out[valid] = pc.list_flatten(arr).to_numpy(zero_copy_only=False) \
                .astype(np.float16).reshape(-1, dim)
            return out
    out = np.zeros((len(arr), dim), np.float16)
    if pa.types.is_fixed_size_list(arr.type):
        flat = arr.values.slice(arr.offset * dim, len(arr) * dim)  # every slot, nulls too
        out[:] = flat.to_numpy(zero_copy_only=False).reshape(len(arr), dim)
        out[~valid] = 0
    else:
        for r, v in enumerate(arr.to_pylist()):
            if v is not None and len(v) == dim:
                out[r] = np.asarray(v, dtype=np.float32)
    return out


def read_samples(path: str, batch_rows: int = 65536, filesystem: Any = None) -> Samples:
    """Stream a samples dataset (one Parquet file or a folder of parts) into :class:`Samples`,
    ``batch_rows`` rows at a time, reading only the columns dedup needs."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet", filesystem=filesystem)
    c = _Collector()
    for batch in dataset.to_batches(columns=read_columns(dataset.schema.names),
                                    batch_size=batch_rows):
        _add_batch(c, batch)
    return c.samples()


def read_columns(names: Sequence[str]) -> list[str]:
    """The columns of a samples table that dedup reads (of those it has)."""
    return [c for c in (*COLUMNS, "extra", "embedding", "fingerprint") if c in set(names)]
