"""The steps of the partitioned duplicate search, each a pure function on Parquet files, so that
no process ever holds the embeddings of the whole corpus (100M x 512 float16 is 100 GB).
:mod:`longvid.pipelines.dedup_partitioned` runs them as Ray tasks.

1. :func:`take_sample` (per group of sample parts): the rows of a seeded pick, as vectors; the
   driver trains k-means on them (:func:`~longvid.dedup.semantic.train_centroids`) and keeps
   only the centroids.
2. :func:`assign_parts` (per group of parts): every row's nearest (and spill) cluster
   (:func:`~longvid.dedup.semantic.assign`); each membership row (key, video, bucket, cluster,
   vector) goes to the member file of cluster bucket ``cluster % buckets``: one file per task and
   bucket. Exact duplicates use the same route, bucketed by content hash.
3. :func:`bucket_pairs` (per bucket): the pairs inside each of its clusters
   (:func:`~longvid.dedup.semantic.cluster_pairs`), or equal hashes, written as a pairs file.
4. :func:`resolve` (driver): the duplicates table
   (:func:`~longvid.dedup.groups.duplicates_table`) from the pairs only: its memory grows with
   the number of duplicate pairs, never with the rows or the embedding dimension.

A *space* is what is searched: ``embedding`` (cosine inside a duration bucket, other video),
``fingerprint`` (the perceptual fingerprint's +-1 vectors, checked on exact bits and colours)
and ``exact`` (equal clip hashes). The rules are those of :func:`~longvid.dedup.find_duplicates`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.dedup.config import DedupConfig
from longvid.dedup.copies import sign_vectors
from longvid.dedup.fingerprint import BITS, FP_BYTES, FRAMES, colour_gap, hamming
from longvid.dedup.groups import Pairs, duplicates_table
from longvid.dedup.read import read_columns, samples_from_table
from longvid.dedup.search import Samples, codes
from longvid.dedup.semantic import assign, cluster_pairs, row_norms, unit_rows, use_cuda

SPACES = ("embedding", "fingerprint", "exact")
SIGNAL = {"embedding": "embedding", "fingerprint": "fingerprint", "exact": "exact"}

PAIRS_SCHEMA = pa.schema([
    ("signal", pa.string()),
    ("key_i", pa.string()), ("key_j", pa.string()),
    ("record_i", pa.string()), ("record_j", pa.string()),
    ("home_i", pa.int32()), ("home_j", pa.int32()),  # embedding cluster of each (-1: none)
    ("value", pa.float32()),  # cosine, fingerprint bits apart, or 1 (exact)
])


@dataclass
class Space:
    """What the driver holds for one vector space: its centroids (``[k, D]`` float32)."""

    name: str
    centroids: np.ndarray
    buckets: int  # member files per task: cluster c goes to bucket c % buckets
    threshold: float


# --- reading --------------------------------------------------------------------------------


def read_part(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file (local or remote), only ``columns`` of those it has."""
    f = pq.ParquetFile(pa.BufferReader(storage.read_bytes(uri)))
    names = f.schema_arrow.names
    return f.read(columns=[c for c in columns if c in names] if columns is not None else None)


def write_part(uri: str, table: pa.Table, compression: str = "zstd") -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    storage.write_bytes(uri, buf.getvalue())


def part_rows(uri: str) -> int:
    """Rows of a Parquet file, from its footer."""
    with storage.open_seekable(uri) as f:
        return pq.ParquetFile(f).metadata.num_rows


def read_samples_part(uri: str) -> Samples:
    f = pq.ParquetFile(pa.BufferReader(storage.read_bytes(uri)))
    return samples_from_table(f.read(columns=read_columns(f.schema_arrow.names)))


def space_vectors(s: Samples, space: str, cfg: DedupConfig) -> np.ndarray | None:
    """``[b, D]`` float16 unit rows of a space (zero rows: none), or None when the rows have no
    data for it. Normalised as :func:`~longvid.dedup.find_duplicates` does."""
    if space == "embedding":
        x = s.embeddings
        if x is None:
            return None
        if x.dtype != np.float16:
            return unit_rows(x).astype(np.float16)
        norms = row_norms(x, cfg.batch)
        if not np.allclose(norms[norms > 0], 1.0, atol=1e-2):
            x = unit_rows(x).astype(np.float16)
        return x
    if space == "fingerprint":
        if s.fp_hashes is None or cfg.fingerprint_max_bits is None:
            return None
        return sign_vectors(s.fp_hashes, s.fp_valid)
    raise ValueError(f"space {space!r} has no vectors")


def fingerprint_threshold(cfg: DedupConfig) -> float:
    """The cosine of fingerprint vectors within ``fingerprint_max_bits`` (as in copies.py)."""
    return 1 - 2 * (cfg.fingerprint_max_bits or 0) / BITS - 0.01


# --- step 1: the training sample --------------------------------------------------------------


def sample_size(rows: int, k: int, cfg: DedupConfig) -> int:
    """Rows of the training pick (as :func:`~longvid.dedup.semantic.train_centroids` trains)."""
    return min(rows, max(k, min(cfg.max_train_points, k * cfg.train_points_per_cluster)))


def take_sample(uris: Sequence[str], picks: Sequence[np.ndarray], spaces: Sequence[str],
                cfg: DedupConfig) -> dict[str, tuple[np.ndarray, int]]:
    """Per space: (the picked rows' vectors ``[p, D]`` float16, zero rows left out; rows of
    these files with a vector). ``picks[f]``: row numbers inside ``uris[f]``."""
    got: dict[str, list[np.ndarray]] = {sp: [] for sp in spaces}
    valid: dict[str, int] = dict.fromkeys(spaces, 0)
    for uri, pick in zip(uris, picks, strict=True):
        s = read_samples_part(uri)
        for sp in spaces:
            x = space_vectors(s, sp, cfg)
            if x is None:
                continue
            nz = np.any(x != 0, axis=1)
            valid[sp] += int(nz.sum())
            rows = np.asarray(pick, np.int64)
            got[sp].append(x[rows[nz[rows]]])
    return {sp: (np.concatenate(got[sp]) if got[sp] else np.zeros((0, 0), np.float16),
                 valid[sp]) for sp in spaces}


# --- step 2: assignment to cluster buckets ----------------------------------------------------


def member_uri(work: str, space: str, bucket: int, task: int) -> str:
    return storage.join(work, space, f"b{bucket:05d}", f"t{task:06d}.parquet")


def _vectors_column(x: np.ndarray) -> pa.Array:
    """``[m, D]`` float16 → a fixed-size binary column of the raw bytes (Parquet decodes raw
    bytes several times faster than a list of float16)."""
    x = np.ascontiguousarray(x, dtype=np.float16)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(2 * x.shape[1]), len(x),
                                                [None, pa.py_buffer(x.tobytes())])


def _column_vectors(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The inverse of :func:`_vectors_column`: ``[m, D]`` float16."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    width = arr.type.byte_width
    data = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * width:(arr.offset + len(arr))
                                                      * width]
    return data.view(np.float16).reshape(len(arr), width // 2)


def hash_bucket(values: Sequence[str], buckets: int) -> np.ndarray:
    """``[b]`` bucket of each string by CRC-32 (stable across processes, unlike ``hash``)."""
    return np.asarray([zlib.crc32(v.encode()) % buckets for v in values], np.int64)


def assign_parts(uris: Sequence[str], task: int, spaces: dict[str, Space], exact_buckets: int,
                 cfg: DedupConfig, work: str) -> dict[str, list[int]]:
    """Write the membership rows of these parts' samples; returns, per space, the buckets this
    task wrote a file for (``exact_buckets`` = 0: no exact search)."""
    tables: dict[str, list[tuple[pa.Table, np.ndarray, np.ndarray]]] = {sp: [] for sp in SPACES}
    for uri in uris:
        s = read_samples_part(uri)
        n = len(s.keys)
        home = np.full(n, -1, np.int32)
        for name in ("embedding", "fingerprint"):
            sp = spaces.get(name)
            x = space_vectors(s, name, cfg) if sp is not None else None
            if x is None:
                continue
            rows = np.nonzero(np.any(x != 0, axis=1))[0]
            first, second = assign(x[rows], sp.centroids, cfg)
            if name == "embedding":
                home[rows] = first
            spill = second >= 0
            member = np.concatenate([rows, rows[spill]])
            cluster = np.concatenate([first, second[spill]])
            cols = {"key": pa.array(s.keys[member], pa.string()),
                    "record_id": pa.array(s.records[member], pa.string()),
                    "bucket": pa.array(s.buckets[member], pa.string()),
                    "cluster": pa.array(cluster, pa.int32()),
                    "vec": _vectors_column(x[member])}
            if name == "fingerprint":
                fp = np.concatenate([s.fp_hashes.astype(">u8").view(np.uint8).reshape(n, -1),
                                     s.fp_colours.reshape(n, -1)], axis=1)[member]  # [m, 44]
                cols["fp"] = pa.array(list(map(bytes, fp)), pa.binary(FP_BYTES))
            tables[name].append((pa.table(cols), home, member))
        if exact_buckets and s.content_hashes is not None:
            h = np.asarray([x or "" for x in s.content_hashes], dtype=object).astype(str)
            rows = np.nonzero(h != "")[0]
            tables["exact"].append((pa.table({
                "key": pa.array(s.keys[rows], pa.string()),
                "record_id": pa.array(s.records[rows], pa.string()),
                "hash": pa.array(h[rows], pa.string())}), home, rows))
    wrote: dict[str, list[int]] = {}
    for name, parts in tables.items():
        if not parts:
            continue
        # the embedding cluster of each member (every space's rows carry it for the table)
        table = pa.concat_tables([t.append_column("home", pa.array(home[member], pa.int32()))
                                  for t, home, member in parts])
        if not table.num_rows:
            continue
        if name == "exact":
            count = exact_buckets
            bucket = hash_bucket(table.column("hash").to_pylist(), count)
        else:
            count = spaces[name].buckets
            bucket = table.column("cluster").to_numpy() % count
        wrote[name] = []
        for b in np.unique(bucket).tolist():
            # work files of float16 vectors, read once: compressing them costs more than it saves
            write_part(member_uri(work, name, b, task), table.filter(pa.array(bucket == b)),
                       compression="none")
            wrote[name].append(b)
    return wrote


# --- step 3: pairs inside each bucket's clusters ----------------------------------------------


def _pairs_table(signal: str, t: pa.Table, i: np.ndarray, j: np.ndarray,
                 value: np.ndarray) -> pa.Table:
    keys, recs, home = t.column("key"), t.column("record_id"), t.column("home")
    ia, ja = pa.array(i, pa.int64()), pa.array(j, pa.int64())
    return pa.table({
        "signal": pa.array([signal] * len(i), pa.string()),
        "key_i": keys.take(ia), "key_j": keys.take(ja),
        "record_i": recs.take(ia), "record_j": recs.take(ja),
        "home_i": home.take(ia), "home_j": home.take(ja),
        "value": pa.array(value, pa.float32()),
    }, schema=PAIRS_SCHEMA)


def bucket_pairs(space: str, uris: Sequence[str], threshold: float, cfg: DedupConfig,
                 out: str) -> int:
    """The pairs among the members in ``uris`` (one bucket's files), written to ``out``
    (``PAIRS_SCHEMA``); returns how many."""
    t = pa.concat_tables([read_part(u) for u in uris])
    if space == "exact":
        i, j = _exact_pairs(t)
        value = np.ones(len(i), np.float32)
    else:
        i, j, value = _cluster_bucket_pairs(space, t, threshold, cfg)
    table = _pairs_table(SIGNAL[space], t, i, j, value)
    write_part(out, table)
    return table.num_rows


def _exact_pairs(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Each row paired with the row of the first key among those with its hash."""
    keys = np.asarray(t.column("key").to_pylist(), dtype=object).astype(str)
    hashes = np.asarray(t.column("hash").to_pylist(), dtype=object).astype(str)
    rows = np.argsort(keys, kind="stable")
    _, first, inverse = np.unique(hashes[rows], return_index=True, return_inverse=True)
    head = rows[first][inverse.ravel()]
    keep = head != rows
    return head[keep], rows[keep]


def _cluster_bucket_pairs(space: str, t: pa.Table, threshold: float, cfg: DedupConfig
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _column_vectors(t.column("vec"))  # [m, D] float16
    cluster = t.column("cluster").to_numpy()
    videos = codes(np.asarray(t.column("record_id").to_pylist(), dtype=object))
    if space == "embedding":
        groups = codes(np.asarray(t.column("bucket").to_pylist(), dtype=object))
    else:  # copies are looked for across buckets
        groups = np.zeros(len(x), np.int64)
    order = np.argsort(cluster, kind="stable")
    bounds = np.flatnonzero(np.diff(cluster[order])) + 1
    cuda = use_cuda(cfg.device)
    out_i, out_j, out_v = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], \
        [np.zeros(0, np.float32)]
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        i, j, v = cluster_pairs(x, members, groups, videos, threshold, cfg.batch // 16 or 1,
                                cuda)
        out_i.append(i)
        out_j.append(j)
        out_v.append(v)
    i, j, v = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_v)
    if space == "fingerprint" and len(i):
        fp = np.frombuffer(b"".join(t.column("fp").to_pylist()), np.uint8).reshape(-1, FP_BYTES)
        hashes = fp[:, : 8 * FRAMES].copy().view(">u8").astype(np.uint64)  # [m, F]
        colours = fp[:, 8 * FRAMES :].reshape(-1, FRAMES, 3)
        bits = hamming(hashes[i], hashes[j])
        ok = (bits <= cfg.fingerprint_max_bits) & (
            colour_gap(colours[i], colours[j]) <= cfg.colour_tolerance)
        i, j, v = i[ok], j[ok], bits[ok].astype(np.float32)
    return i, j, v


# --- step 4: the duplicates table from the pairs ----------------------------------------------


def resolve(pairs: pa.Table) -> pa.Table:
    """The duplicates table (``DUPLICATES_SCHEMA``) from the pairs of every bucket and space:
    only the samples that have a pair are indexed (the kept rule visits no other)."""
    if not pairs.num_rows:
        return duplicates_table(np.zeros(0, str), np.zeros(0, str), None, [])
    ki = np.asarray(pairs.column("key_i").to_pylist(), dtype=object).astype(str)
    kj = np.asarray(pairs.column("key_j").to_pylist(), dtype=object).astype(str)
    both = np.concatenate([ki, kj])
    keys, first = np.unique(both, return_index=True)
    records = np.concatenate([pairs.column("record_i").to_numpy(zero_copy_only=False),
                              pairs.column("record_j").to_numpy(zero_copy_only=False)])[first]
    homes = np.concatenate([pairs.column("home_i").to_numpy(zero_copy_only=False),
                            pairs.column("home_j").to_numpy(zero_copy_only=False)])[first]
    i, j = np.searchsorted(keys, ki), np.searchsorted(keys, kj)
    signal = np.asarray(pairs.column("signal").to_pylist(), dtype=object)
    value = pairs.column("value").to_numpy()
    found = [Pairs(sig, np.minimum(i, j)[m], np.maximum(i, j)[m], value[m])
             for sig in SIGNAL.values() for m in [signal == sig] if m.any()]
    clusters = homes.astype(np.int32) if (homes >= 0).any() else None
    return duplicates_table(keys, np.asarray(records, dtype=object).astype(str), clusters,
                            found)
