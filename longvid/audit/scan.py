"""Streaming scans of a corpus's sample table: the audit's aggregates without a row on the driver.

``samples.parquet`` is one Parquet file or (as a build writes it) a dataset folder of per-unit
parts; both are read batch by batch (``pyarrow.dataset`` locally, part by part on S3) with only
the columns an aggregate needs. What stays on the driver is bounded by the numbers the report
keeps, not by Python objects per sample:

- counts, seconds and bytes per (source, bucket): numpy arrays with one cell per pair;
- the distinct (source, record_id) pairs: an Arrow table, re-deduplicated as batches arrive
  (its size follows the number of source videos, not of samples);
- the numeric columns the histograms and exact percentiles need (duration, short side, fps,
  caption words): float64 numpy arrays, 32 bytes per sample (32 MB at 1M samples);
- the key column, as Arrow strings, for the duplicate-key check and ``--compare``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from longvid import storage
from longvid.errors import FormatError, NotFoundError

BATCH_ROWS = 65_536  # rows per scanned batch: bounds the transient memory of one batch

SCAN_COLUMNS = ["key", "source", "bucket", "duration", "width", "height", "fps", "record_id",
                "caption", "members"]


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _remote_parts(uri: str) -> list[str]:
    if storage.exists(uri):
        return [uri]  # one file
    parts = storage.list_files(uri, ".parquet")
    if not parts:
        raise NotFoundError(f"{uri}: not found")
    return parts


def samples_exist(uri: str) -> bool:
    """Whether the Parquet file or dataset folder at ``uri`` is there."""
    if not storage.is_remote(uri):
        return os.path.exists(_local_path(uri))
    try:
        return bool(_remote_parts(uri))
    except NotFoundError:
        return False


def sample_parts(uri: str) -> list[str]:
    """The Parquet files of the sample table at ``uri`` (a file or a dataset folder), in the
    order :func:`iter_batches` reads them."""
    if storage.is_remote(uri):
        return _remote_parts(uri)
    path = _local_path(uri)
    if not os.path.exists(path):
        raise NotFoundError(f"{uri}: not found")
    try:
        return list(pads.dataset(path, format="parquet").files)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FormatError(f"{uri}: not a readable Parquet file or dataset: {exc}") from None


def iter_batches(uri: str, columns: list[str], batch_rows: int = BATCH_ROWS
                 ) -> Iterator[pa.RecordBatch]:
    """The record batches of the Parquet file or dataset folder at ``uri``, ``columns`` only
    (columns a part lacks come back as nulls). NotFoundError when missing, FormatError when it
    does not parse."""
    for _, b in iter_part_batches(uri, columns, batch_rows):
        yield b


def iter_part_batches(uri: str, columns: list[str], batch_rows: int = BATCH_ROWS
                      ) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``(part uri, batch)`` for every batch of :func:`iter_batches`, in the same order: which
    Parquet file each batch came from (a shard task reads its rows from those files only)."""
    if not storage.is_remote(uri):
        path = _local_path(uri)
        if not os.path.exists(path):
            raise NotFoundError(f"{uri}: not found")
        try:
            ds = pads.dataset(path, format="parquet")
            fragments = list(ds.get_fragments())
        except (pa.ArrowInvalid, OSError) as exc:
            raise FormatError(f"{uri}: not a readable Parquet file or dataset: {exc}") from None
        have = set(ds.schema.names)
        for frag in fragments:
            try:
                # small read-ahead: a few batches in flight, not Arrow's default dozens
                batches = frag.to_batches(schema=ds.schema,
                                          columns=[c for c in columns if c in have],
                                          batch_size=batch_rows, batch_readahead=2)
                for b in _fill(batches, columns):
                    yield frag.path, b
            except (pa.ArrowInvalid, OSError) as exc:
                raise FormatError(f"{frag.path}: not a readable Parquet file: {exc}") from None
        return
    for part in _remote_parts(uri):
        try:
            f = pq.ParquetFile(pa.BufferReader(storage.read_bytes(part)))
        except pa.ArrowInvalid as exc:
            raise FormatError(f"{part}: not a readable Parquet file: {exc}") from None
        have = set(f.schema_arrow.names)
        for b in _fill(f.iter_batches(batch_size=batch_rows,
                                      columns=[c for c in columns if c in have]), columns):
            yield part, b


def read_part_rows(part: str, columns: list[str], shard: str) -> list[dict[str, Any]]:
    """The rows of one Parquet part whose ``shard`` column is ``shard`` (``columns`` only, those
    the part lacks as None)."""
    return read_part_shards(part, columns, [shard]).get(shard, [])


def read_part_shards(part: str, columns: list[str], shards: list[str]
                     ) -> dict[str, list[dict[str, Any]]]:
    """The rows of one Parquet part whose ``shard`` column is one of ``shards``, by shard, in
    the part's order (``columns`` only, those the part lacks as None): what one audit task
    reads — the part once, for every shard of it the task checks — instead of receiving rows
    from the driver. FormatError when the part does not parse."""
    if storage.is_remote(part):
        source: Any = pa.BufferReader(storage.read_bytes(part))
    else:
        source = _local_path(part)
    wanted = pa.array(shards, pa.string())
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        f = pq.ParquetFile(source)
        have = set(f.schema_arrow.names)
        for b in _fill(f.iter_batches(batch_size=BATCH_ROWS,
                                      columns=[c for c in columns if c in have]), columns):
            shard = b.column("shard")
            if pa.types.is_null(shard.type):
                continue
            mask = pc.fill_null(pc.is_in(pc.cast(shard, pa.string()), value_set=wanted), False)
            for row in b.filter(mask).to_pylist():
                out.setdefault(str(row["shard"]), []).append(row)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FormatError(f"{part}: not a readable Parquet file: {exc}") from None
    return out


def _fill(batches: Iterator[pa.RecordBatch], columns: list[str]) -> Iterator[pa.RecordBatch]:
    for b in batches:
        if b.num_rows == 0:
            continue
        missing = [c for c in columns if c not in b.schema.names]
        if missing:
            arrays = [b.column(c) if c in b.schema.names else pa.nulls(b.num_rows)
                      for c in columns]
            b = pa.RecordBatch.from_arrays(arrays, names=columns)
        yield b


def _floats(col: pa.Array) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls."""
    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan)
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)


def _strings(col: pa.Array) -> pa.Array:
    """A column as strings, nulls spelt "None" (as ``str(None)`` in the report's keys)."""
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string()) if not pa.types.is_null(col.type) else \
            pa.array([None] * len(col), pa.string())
    return pc.fill_null(col, "None")


class _Codes:
    """Small vocabularies (sources, buckets) mapped to dense integer codes."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}

    def encode(self, col: pa.Array) -> np.ndarray:
        enc = pc.dictionary_encode(col).combine_chunks() if isinstance(
            col, pa.ChunkedArray) else pc.dictionary_encode(col)
        local = np.asarray([self._id(str(v)) for v in enc.dictionary.to_pylist()], np.int64)
        return local[enc.indices.to_numpy(zero_copy_only=False)]

    def _id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = len(self.names)
            self.names.append(name)
        return self._ids[name]


@dataclass
class SampleScan:
    """What one pass over the sample table found (see the module docstring)."""

    sources: list[str]
    buckets: list[str]
    cells: np.ndarray  # [sources, buckets, 3] float64: samples, seconds, member bytes
    videos: pa.Table  # distinct (source, record_id), strings
    duration: np.ndarray  # [n] float64, NaN where missing
    bucket: np.ndarray  # [n] int64 code into ``buckets``
    short_side: np.ndarray  # [n] float64, NaN where width or height is missing or 0
    fps: np.ndarray  # [n] float64
    caption_words: np.ndarray  # [n] float64, NaN where the caption is empty
    resolution: Counter  # "WxH" → samples
    keys: pa.Array  # [n] the sample keys
    batches: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.duration.size)


def _member_bytes(members: pa.Array, n: int) -> np.ndarray:
    if pa.types.is_null(members.type):
        return np.zeros(n)
    if isinstance(members, pa.ChunkedArray):
        members = members.combine_chunks()
    flat = pc.list_flatten(members)
    if len(flat) == 0:
        return np.zeros(n)
    sizes = pc.struct_field(flat, "size").to_numpy(zero_copy_only=False).astype(np.float64)
    parents = pc.list_parent_indices(members).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=sizes, minlength=n)


def _caption_words(col: pa.Array) -> np.ndarray:
    """Words per caption (``len(text.split())``); NaN where there is no caption."""
    if pa.types.is_null(col.type):
        return np.full(len(col), np.nan)
    # split on whitespace and count the non-empty pieces (Arrow leaves an empty piece between
    # two spaces, Python's split does not); a regex count holds ~15 MB per call in RE2
    parts = pc.utf8_split_whitespace(col)
    flat = pc.list_flatten(parts)
    parents = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
    nonempty = pc.not_equal(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    words = np.bincount(parents[nonempty], minlength=len(col))
    empty = pc.fill_null(pc.equal(pc.utf8_length(col), 0), True)
    return np.where(empty.to_numpy(zero_copy_only=False), np.nan, words.astype(np.float64))


def scan_samples(uri: str, batch_rows: int = BATCH_ROWS) -> SampleScan:
    """One streaming pass over the sample table at ``uri`` (a file or a dataset folder)."""
    import time

    started = time.monotonic()
    sources, buckets = _Codes(), _Codes()
    cells = np.zeros((0, 0, 3))
    videos = pa.table({"source": pa.array([], pa.string()), "record_id": pa.array([], pa.string())})
    pending: list[pa.Table] = []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("duration", "bucket", "short_side", "fps", "words")}
    res_pairs: Counter = Counter()
    keys: list[pa.Array] = []
    nb = 0
    for b in iter_batches(uri, SCAN_COLUMNS, batch_rows):
        nb += 1
        n = b.num_rows
        src_s = _strings(b.column("source"))
        s = sources.encode(src_s)
        k = buckets.encode(_strings(b.column("bucket")))
        dur = _floats(b.column("duration"))
        size = _member_bytes(b.column("members"), n)
        shape = (len(sources.names), len(buckets.names), 3)
        if cells.shape != shape:
            grown = np.zeros(shape)
            grown[: cells.shape[0], : cells.shape[1]] = cells
            cells = grown
        flat = s * shape[1] + k
        m = shape[0] * shape[1]
        cells[..., 0] += np.bincount(flat, minlength=m).reshape(shape[:2])
        cells[..., 1] += np.bincount(flat, weights=np.nan_to_num(dur), minlength=m).reshape(
            shape[:2])
        cells[..., 2] += np.bincount(flat, weights=size, minlength=m).reshape(shape[:2])
        pending.append(pa.table({"source": src_s, "record_id": _strings(b.column("record_id"))})
                       .group_by(["source", "record_id"], use_threads=False).aggregate([]))
        if sum(t.num_rows for t in pending) > 4 * batch_rows:
            videos = _distinct(videos, pending)
            pending = []
        w, h = _floats(b.column("width")), _floats(b.column("height"))
        ok = np.isfinite(w) & np.isfinite(h) & (w != 0) & (h != 0)
        cols["short_side"].append(np.where(ok, np.fmin(w, h), np.nan))
        cols["duration"].append(dur)
        cols["bucket"].append(k)
        cols["fps"].append(_floats(b.column("fps")))
        cols["words"].append(_caption_words(b.column("caption")))
        pairs, counts = np.unique(np.stack([np.nan_to_num(w, nan=-1.0),
                                            np.nan_to_num(h, nan=-1.0)], axis=1),
                                  axis=0, return_counts=True)
        for (pw, ph), c in zip(pairs.tolist(), counts.tolist(), strict=True):
            res_pairs[(pw, ph)] += c
        keys.append(_strings(b.column("key")))
    videos = _distinct(videos, pending)

    def cat(name: str, dtype: Any = np.float64) -> np.ndarray:
        return np.concatenate(cols[name]) if cols[name] else np.zeros(0, dtype)

    def dim(v: float) -> str:
        return "None" if v == -1.0 else str(int(v)) if float(v).is_integer() else str(v)

    resolution = Counter({f"{dim(pw)}x{dim(ph)}": c for (pw, ph), c in res_pairs.items()})
    return SampleScan(
        sources=sources.names, buckets=buckets.names, cells=cells, videos=videos,
        duration=cat("duration"), bucket=cat("bucket", np.int64),
        short_side=cat("short_side"), fps=cat("fps"), caption_words=cat("words"),
        resolution=resolution,
        keys=pa.concat_arrays(keys) if keys else pa.array([], pa.string()),
        batches=nb, seconds=time.monotonic() - started)


def _distinct(videos: pa.Table, pending: list[pa.Table]) -> pa.Table:
    if not pending:
        return videos
    return pa.concat_tables([videos, *pending]).group_by(
        ["source", "record_id"], use_threads=False).aggregate([])


def duplicate_keys(keys: pa.Array, limit: int) -> tuple[int, list[tuple[str, int]]]:
    """``(how many keys occur more than once, [(key, times), ...] sorted, at most limit)``."""
    if len(keys) == 0:
        return 0, []
    vc = pc.value_counts(keys)
    counts = vc.field("counts")
    dup = pc.filter(vc.field("values"), pc.greater(counts, 1))
    times = pc.filter(counts, pc.greater(counts, 1))
    if len(dup) == 0:
        return 0, []
    order = pc.sort_indices(dup)[:limit]
    return len(dup), list(zip(pc.take(dup, order).to_pylist(),
                              pc.take(times, order).to_pylist(), strict=True))


def key_difference(a: pa.Array, b: pa.Array, examples: int) -> tuple[int, list[str]]:
    """``(how many distinct keys of a are not in b, the first examples of them, sorted)``."""
    only = pc.unique(pc.filter(a, pc.invert(pc.is_in(a, value_set=b))))
    order = pc.sort_indices(only)[:examples]
    return len(only), pc.take(only, order).to_pylist()


def key_overlap(a: pa.Array, b: pa.Array) -> int:
    ua = pc.unique(a)
    return int(pc.sum(pc.is_in(ua, value_set=b)).as_py() or 0)
