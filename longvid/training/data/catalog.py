"""The catalog: every sample of one or more built corpora, as columns, with a fingerprint.

Rows come from each corpus's ``samples.parquet`` and are sorted by (key, corpus), so the order
in which a build wrote its rows does not change the epoch order. The fingerprint hashes what
decides the content of every sample (keys, shards and their checksums, byte ranges, durations):
a rebuilt or edited corpus gets a new fingerprint, and a resume against it is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longvid import storage
from longvid.errors import FormatError
from longvid.shards.index import read_index
from longvid.shards.manifest import SAMPLES_NAME, read_table

# Columns the loader needs; the rest of samples.parquet stays on disk.
COLUMNS = ["key", "shard", "source", "bucket", "duration", "caption", "members"]


def _fingerprint_corpus(table: pa.Table, shard_sums: dict[str, str]) -> str:
    """sha256 over the content-defining columns of one corpus (sorted by key)."""
    t = table.sort_by("key")
    h = hashlib.sha256()
    h.update("\n".join(t.column("key").to_pylist()).encode("utf-8"))
    shards = t.column("shard").to_pylist()
    h.update("\n".join(f"{s}:{shard_sums.get(s, '')}" for s in shards).encode("utf-8"))
    h.update(t.column("duration").to_numpy(zero_copy_only=False).astype("<f8").tobytes())
    members = pc.list_flatten(t.column("members"))
    for name in ("ext", "offset", "size"):
        col = pc.struct_field(members, name)
        if name == "ext":
            h.update("\n".join(col.to_pylist()).encode("utf-8"))
        else:
            h.update(col.to_numpy(zero_copy_only=False).astype("<i8").tobytes())
    h.update(pc.list_value_length(t.column("members")).to_numpy().astype("<i8").tobytes())
    return h.hexdigest()


@dataclass
class Catalog:
    """All samples of the stage's corpora. Arrays are aligned: index ``i`` is one sample."""

    roots: tuple[str, ...]
    corpus: np.ndarray  # int32 [N]: index into roots
    keys: np.ndarray  # object [N]
    sources: np.ndarray  # object [N]
    buckets: np.ndarray  # object [N]
    durations: np.ndarray  # float64 [N]
    table: pa.Table = field(repr=False)  # the same rows, for per-sample lookups
    fingerprint: str = ""
    corpus_fingerprints: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self) -> str:
        return f"{len(self)} samples in {', '.join(self.roots)}"

    def row(self, i: int) -> dict[str, Any]:
        """One sample's samples.parquet row, plus ``root`` (its corpus root)."""
        row = self.table.slice(int(i), 1).to_pylist()[0]
        row["root"] = self.roots[int(self.corpus[i])]
        return row


def load_catalog(roots: list[str] | tuple[str, ...]) -> Catalog:
    """Read ``samples.parquet`` and ``index.json`` of every corpus root into one catalog.

    Raises NotFoundError / FormatError naming the root when a corpus is missing or malformed.
    """
    if not roots:
        raise FormatError("no corpora given: the stage's corpora list is empty")
    tables, prints = [], []
    for i, root in enumerate(roots):
        table = read_table(storage.join(root, SAMPLES_NAME))
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise FormatError(f"{root}/{SAMPLES_NAME}: missing column(s) {missing}")
        table = table.select(COLUMNS)
        index = read_index(root)
        sums = {s.url: s.sha256 for s in index.shards}
        unknown = set(table.column("shard").to_pylist()) - set(sums)
        if unknown:
            raise FormatError(
                f"{root}: samples.parquet names shard(s) not in index.json: {sorted(unknown)[:3]}"
            )
        prints.append(_fingerprint_corpus(table, sums))
        tables.append(table.append_column("corpus", pa.array([i] * table.num_rows, pa.int32())))
    table = pa.concat_tables(tables).sort_by([("key", "ascending"), ("corpus", "ascending")])
    table = table.combine_chunks()
    durations = table.column("duration").to_numpy(zero_copy_only=False).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(durations) | (durations <= 0))
    if bad.size:
        key = table.column("key")[int(bad[0])].as_py()
        raise FormatError(f"sample {key!r}: duration {durations[bad[0]]} is not a positive number")
    whole = hashlib.sha256("\n".join(prints).encode()).hexdigest()
    return Catalog(
        roots=tuple(roots),
        corpus=table.column("corpus").to_numpy().astype(np.int32),
        keys=np.array(table.column("key").to_pylist(), dtype=object),
        sources=np.array(table.column("source").to_pylist(), dtype=object),
        buckets=np.array(table.column("bucket").to_pylist(), dtype=object),
        durations=durations,
        table=table,
        fingerprint=whole,
        corpus_fingerprints=tuple(prints),
    )
