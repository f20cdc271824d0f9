"""Compiling the catalog cache: the samples tables of one or more corpora → numpy files in
catalog order, streaming.

The rows are read batch by batch (only the loader's columns) into unsorted spill files; the keys
are sorted memory-mapped (one uint64 index per row in memory); every column is then gathered into
catalog order chunk by chunk, and the manifest fingerprints are hashed over the result in chunks.
So the compiling process holds a batch, a chunk and the sort order, not the table. The layout is
described in :mod:`~longvid.training.data.catalog_cache`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longvid import storage
from longvid.audit.scan import iter_batches
from longvid.errors import FormatError
from longvid.shards.index import read_index
from longvid.shards.manifest import SAMPLES_NAME

log = logging.getLogger(__name__)

CACHE_FORMAT = "longvid-catalog-cache/1"
CHUNK_ROWS = 262_144  # rows gathered at a time (bounds the transient memory of compiling)

# Columns the loader needs; the rest of samples.parquet stays on disk.
COLUMNS = ["key", "shard", "source", "bucket", "duration", "caption", "members"]


def _small_int(n: int) -> np.dtype:
    """The smallest unsigned dtype that holds codes 0..n-1."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.int64)


class _Spill:
    """Raw little-endian arrays appended batch by batch to files in a folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, Any] = {}
        self.dtypes: dict[str, np.dtype] = {}

    def add(self, name: str, arr: np.ndarray) -> None:
        if name not in self.files:
            self.files[name] = open(self.folder / f"{name}.raw", "wb")  # noqa: SIM115
            self.dtypes[name] = arr.dtype
        self.files[name].write(np.ascontiguousarray(arr, dtype=self.dtypes[name]).tobytes())

    def load(self, name: str, dtype: Any) -> np.ndarray:
        """The spilled array, memory-mapped (empty when nothing was added)."""
        if name in self.files:
            self.files[name].close()
        path = self.folder / f"{name}.raw"
        if not path.exists() or path.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=self.dtypes.get(name, np.dtype(dtype)), mode="r")


class _Codes:
    """A growing dictionary (value → code), so per-row values become small integers."""

    def __init__(self) -> None:
        self.index: dict[str | None, int] = {}

    def encode(self, col: pa.Array) -> np.ndarray:
        enc = pc.dictionary_encode(col, null_encoding="encode")
        values = enc.dictionary.to_pylist()
        local = np.array([self.index.setdefault(v, len(self.index)) for v in values],
                         dtype=np.int64)
        return local[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)]

    def values(self) -> list[str | None]:
        return list(self.index)


def _string_parts(col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lengths int64 [n], utf-8 bytes uint8, valid bool [n]) of a string column."""
    col = col.cast(pa.large_string())
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    _, off_buf, data_buf = col.buffers()
    off = np.frombuffer(off_buf, dtype=np.int64)[col.offset : col.offset + len(col) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[off[0] : off[-1]] if data_buf else \
        np.zeros(0, np.uint8)
    return np.diff(off), data, valid


def _large_strings(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A LargeStringArray over (memory-mapped) offsets int64 [n+1] and bytes, without copying."""
    n = len(offsets) - 1
    buf = pa.py_buffer(data) if len(data) else pa.py_buffer(b"")
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), buf)


def _spill_corpus(i: int, root: str, spill: _Spill, codes: dict[str, _Codes], lock: Path
                  ) -> tuple[int, dict[str, str]]:
    """Stream one corpus's sample rows into the spill files; (rows, shard url → sha256)."""
    uri = storage.join(root, SAMPLES_NAME)
    index = read_index(root)
    sums = {s.url: s.sha256 for s in index.shards}
    rows = 0
    used: set[int] = set()  # shard codes this corpus uses
    for batch in iter_batches(uri, COLUMNS):
        missing = [c for c in COLUMNS if pa.types.is_null(batch.column(c).type)]
        if missing:
            raise FormatError(f"{root}/{SAMPLES_NAME}: missing column(s) {missing}")
        n = batch.num_rows
        spill.add("corpus", np.full(n, i, dtype=np.int32))
        klen, kdata, _ = _string_parts(batch.column("key"))
        spill.add("key.len", klen)
        spill.add("key.data", kdata)
        for name in ("shard", "source", "bucket"):
            spill.add(name, codes[name].encode(batch.column(name)))
        used.update(np.unique(codes["shard"].encode(batch.column("shard"))).tolist())
        dur = pc.cast(batch.column("duration"), pa.float64()).fill_null(float("nan"))
        spill.add("duration", dur.to_numpy(zero_copy_only=False))
        clen, cdata, cvalid = _string_parts(batch.column("caption"))
        spill.add("caption.len", clen)
        spill.add("caption.data", cdata)
        spill.add("caption.valid", cvalid)
        members = batch.column("members")
        spill.add("members.len", pc.list_value_length(members).fill_null(0)
                  .to_numpy(zero_copy_only=False).astype(np.int64))
        flat = pc.list_flatten(members)
        spill.add("member.ext", codes["ext"].encode(pc.struct_field(flat, "ext")))
        for name in ("offset", "size"):
            spill.add(f"member.{name}", pc.struct_field(flat, name).fill_null(0)
                      .to_numpy(zero_copy_only=False).astype(np.int64))
        rows += n
        os.utime(lock)  # still alive: waiters keep waiting
    values = codes["shard"].values()
    unknown = {values[c] for c in used} - set(sums)
    if unknown:
        raise FormatError(
            f"{root}: samples.parquet names shard(s) not in index.json: {sorted(unknown)[:3]}"
        )
    return rows, sums


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


class _Writer:
    """Final ``.npy`` files written chunk by chunk through ``open_memmap``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}

    def create(self, name: str, dtype: Any, length: int) -> np.ndarray:
        if length == 0:  # an empty file cannot be mapped
            arr = np.zeros(0, dtype=dtype)
            np.save(self.folder / f"{name}.npy", arr)
            self.arrays[name] = arr
            return arr
        arr = np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+",
                                        dtype=np.dtype(dtype), shape=(length,))
        self.arrays[name] = arr
        return arr

    def close(self) -> dict[str, list[int]]:
        files = {}
        for name, arr in self.arrays.items():
            if isinstance(arr, np.memmap):
                arr.flush()
            files[name] = [0, len(arr)]
        self.arrays.clear()
        for name in files:
            files[name][0] = (self.folder / f"{name}.npy").stat().st_size
        return files


def _gather_strings(w: _Writer, name: str, order: np.ndarray, offsets: np.ndarray,
                    data: np.ndarray, lock: Path) -> None:
    """Write string column ``name`` (source offsets/bytes) in ``order`` as off + data files."""
    lengths = np.diff(offsets)
    new_off = w.create(f"{name}.off", np.int64, len(order) + 1)
    new_off[0] = 0
    total = 0
    for a in range(0, len(order), CHUNK_ROWS):
        idx = order[a : a + CHUNK_ROWS]
        np.cumsum(lengths[idx], out=new_off[a + 1 : a + 1 + len(idx)])
        new_off[a + 1 : a + 1 + len(idx)] += total
        total = int(new_off[a + len(idx)])
    out = w.create(f"{name}.data", np.uint8, total)
    src = _large_strings(offsets, data)
    for a in range(0, len(order), CHUNK_ROWS):
        idx = order[a : a + CHUNK_ROWS]
        if not len(idx):
            continue
        _, bytes_, _ = _string_parts(pc.take(src, pa.array(idx)))
        start = int(new_off[a])
        out[start : start + len(bytes_)] = bytes_
        os.utime(lock)


def compile_cache(roots: tuple[str, ...], base: Path, lock: Path) -> Path:
    """Compile the catalog cache of ``roots`` into a new temp folder under ``base``."""
    t0 = time.perf_counter()
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    spill_dir = tmp / ".spill"
    spill_dir.mkdir(parents=True)
    try:
        return _compile(roots, tmp, spill_dir, lock, t0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compile(roots: tuple[str, ...], tmp: Path, spill_dir: Path, lock: Path, t0: float) -> Path:
    spill = _Spill(spill_dir)
    codes = {name: _Codes() for name in ("shard", "source", "bucket", "ext")}
    sums = []
    for i, root in enumerate(roots):
        _, corpus_sums = _spill_corpus(i, root, spill, codes, lock)
        sums.append(corpus_sums)
    corpus = spill.load("corpus", np.int32)
    n = len(corpus)
    key_off = _offsets(spill.load("key.len", np.int64))
    key_data = spill.load("key.data", np.uint8)
    # catalog order: by key, then corpus (stable), as the in-memory catalog sorted its table
    keys = _large_strings(key_off, key_data)
    order = pc.sort_indices(pa.table({"key": keys, "corpus": pa.array(corpus)}),
                            sort_keys=[("key", "ascending"), ("corpus", "ascending")])
    order = order.to_numpy().astype(np.int64)
    del keys
    os.utime(lock)

    w = _Writer(tmp)
    dur = spill.load("duration", np.float64)
    out_dur = w.create("duration", np.float64, n)
    out_corpus = w.create("corpus", _small_int(max(len(roots), 1)), n)
    coded = {name: (spill.load(name, np.int64), w.create(name, _small_int(
        max(len(codes[name].index), 1)), n)) for name in ("shard", "source", "bucket")}
    cvalid = spill.load("caption.valid", np.bool_)
    out_cvalid = w.create("caption.valid", np.bool_, n)
    mlen = spill.load("members.len", np.int64)
    m_src_off = _offsets(mlen)
    out_moff = w.create("members.off", np.int64, n + 1)
    out_moff[0] = 0
    for a in range(0, n, CHUNK_ROWS):
        idx = order[a : a + CHUNK_ROWS]
        out_dur[a : a + len(idx)] = dur[idx]
        out_corpus[a : a + len(idx)] = corpus[idx]
        for src, out in coded.values():
            out[a : a + len(idx)] = src[idx]
        out_cvalid[a : a + len(idx)] = cvalid[idx]
        np.cumsum(mlen[idx], out=out_moff[a + 1 : a + 1 + len(idx)])
        out_moff[a + 1 : a + 1 + len(idx)] += out_moff[a]
    bad = np.flatnonzero(~np.isfinite(out_dur) | (out_dur <= 0))
    if bad.size:
        i = int(bad[0])
        key = key_data[key_off[order[i]] : key_off[order[i] + 1]].tobytes().decode()
        raise FormatError(f"sample {key!r}: duration {out_dur[i]} is not a positive number")
    # members: each row's slice of the flattened member arrays, in catalog order
    m_total = int(out_moff[n]) if n else 0
    m_src = {name: spill.load(f"member.{name}", np.int64) for name in ("ext", "offset", "size")}
    m_out = {"ext": w.create("member.ext", _small_int(max(len(codes["ext"].index), 1)), m_total),
             "offset": w.create("member.offset", np.int64, m_total),
             "size": w.create("member.size", np.int64, m_total)}
    for a in range(0, n, CHUNK_ROWS):
        idx = order[a : a + CHUNK_ROWS]
        lens = mlen[idx]
        starts = m_src_off[idx]
        pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + \
            np.arange(int(lens.sum()))
        lo = int(out_moff[a])
        for name, out in m_out.items():
            out[lo : lo + len(pos)] = m_src[name][pos]
    _gather_strings(w, "key", order, key_off, key_data, lock)
    _gather_strings(w, "caption", order, _offsets(spill.load("caption.len", np.int64)),
                    spill.load("caption.data", np.uint8), lock)
    del order
    files = w.close()
    shutil.rmtree(spill_dir)
    arrays = _map_written(tmp, files)
    prints = [_fingerprint_corpus(arrays, i, sums[i], codes) for i in range(len(roots))]
    meta = {
        "format": CACHE_FORMAT,
        "roots": list(roots),
        "rows": n,
        "members": m_total,
        "shards": codes["shard"].values(),
        "sources": codes["source"].values(),
        "buckets": codes["bucket"].values(),
        "exts": codes["ext"].values(),
        "fingerprint": hashlib.sha256("\n".join(prints).encode()).hexdigest(),
        "corpus_fingerprints": prints,
        "files": files,
        "compile_s": round(time.perf_counter() - t0, 3),
    }
    tmp_meta = tmp / ".meta.json.tmp"
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, tmp / "meta.json")
    log.info("catalog cache %s: %d samples of %s compiled in %.1f s", tmp, n, ", ".join(roots),
             meta["compile_s"])
    return tmp


def _map_written(folder: Path, files: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r" if length else None)
            for name, (_, length) in files.items()}


# --- the manifest fingerprint, streamed over the compiled columns -----------------------------


def _joined(h: Any, pieces: Any) -> None:
    """Feed ``b"\\n".join(all items)`` to ``h``, given chunks of items already joined by
    newlines (None for a chunk without items)."""
    first = True
    for piece in pieces:
        if piece is None:
            continue
        if not first:
            h.update(b"\n")
        h.update(piece)
        first = False


def _fingerprint_corpus(a: dict[str, np.ndarray], i: int, sums: dict[str, str],
                        codes: dict[str, _Codes]) -> str:
    """sha256 over the content-defining columns of corpus ``i`` in key order — the same bytes
    the in-memory catalog hashed (keys, shard:sha256, durations, member exts/offsets/sizes and
    counts), so cursors written before the cache still resume."""
    rows = np.flatnonzero(np.asarray(a["corpus"]) == i)
    chunks = [rows[s : s + CHUNK_ROWS] for s in range(0, len(rows), CHUNK_ROWS)]
    key_off, key_data = a["key.off"], a["key.data"]
    moff = a["members.off"]
    shard_label = np.array([f"{s}:{sums.get(s, '')}".encode() for s in codes["shard"].values()]
                           + [b""], dtype=object)[:-1]
    ext_label = np.array([(e or "").encode() for e in codes["ext"].values()] + [b""],
                         dtype=object)[:-1]

    def member_pos(idx: np.ndarray) -> np.ndarray:
        starts, lens = moff[idx], moff[idx + 1] - moff[idx]
        return np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + \
            np.arange(int(lens.sum()))

    keys = _large_strings(np.asarray(key_off), key_data)

    def key_bytes(idx: np.ndarray) -> bytes | None:
        """The keys of rows ``idx`` joined by newlines (vectorised: no object per key)."""
        if not len(idx):
            return None
        lengths, data, _ = _string_parts(pc.take(keys, pa.array(idx)))
        return np.insert(data, np.cumsum(lengths)[:-1], ord("\n")).tobytes()

    h = hashlib.sha256()
    _joined(h, (key_bytes(c) for c in chunks))
    _joined(h, (b"\n".join(shard_label[a["shard"][c].astype(np.int64)].tolist())
                if len(c) else None for c in chunks))
    for c in chunks:
        h.update(np.asarray(a["duration"][c], dtype="<f8").tobytes())
    ext_chunks = []
    for c in chunks:
        pos = member_pos(c)
        ext_chunks.append(b"\n".join(ext_label[a["member.ext"][pos].astype(np.int64)].tolist())
                          if len(pos) else None)
    _joined(h, ext_chunks)
    for name in ("member.offset", "member.size"):
        for c in chunks:
            h.update(np.asarray(a[name][member_pos(c)], dtype="<i8").tobytes())
    for c in chunks:
        h.update((moff[c + 1] - moff[c]).astype("<i8").tobytes())
    return h.hexdigest()
