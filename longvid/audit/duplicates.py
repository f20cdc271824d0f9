"""The report's duplicates: the duplicates table of :mod:`longvid.dedup` over the accepted
samples (the same search the build's filter runs), grouped by the sample kept, and the ones the
build already removed (reject rows ``filter:*_duplicate``, grouped by the kept sample).

Signals: *exact* (equal clip bytes, SHA-256), *embedding* (cosine at least the threshold, same
bucket, other video) and *fingerprint* (perceptual copies, other video); each group says which
signals joined each member.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longvid.dedup import Samples
from longvid.dedup.fingerprint import FRAMES, from_hex
from longvid.dedup.read import samples_from_rows

_KEPT = (re.compile(r"those of (\S+?)[\s(]"), re.compile(r"with (\S+?) \("),
         re.compile(r"a copy of (\S+?) \("))


def corpus_samples(rows: Sequence[dict[str, Any]], extras: Sequence[dict[str, Any]],
                   facts: dict[str, dict[str, Any]]) -> Samples:
    """The dedup columns of the accepted samples: hashes and embeddings from samples.parquet or,
    when it lacks them, from what the shard pass read (KEY.mp4's SHA-256, KEY.emb.npy)."""
    n = len(rows)
    keys = np.asarray([r["key"] for r in rows], dtype=object)
    records = np.asarray([str(r.get("record_id")) for r in rows], dtype=object)
    buckets = np.asarray([str(r.get("bucket")) for r in rows], dtype=object)
    hashes = np.asarray([facts.get(r["key"], {}).get("clip_sha256")
                         or (e.get("scores") or {}).get("clip_sha256")
                         for r, e in zip(rows, extras, strict=True)], dtype=object)
    vecs = [e.get("embedding") or facts.get(r["key"], {}).get("embedding")
            for r, e in zip(rows, extras, strict=True)]
    dim = Counter(len(v) for v in vecs if v).most_common(1)
    emb = None
    if dim:
        emb = np.zeros((n, dim[0][0]), np.float32)
        for i, v in enumerate(vecs):
            if v and len(v) == dim[0][0]:
                emb[i] = v
    fp_h = np.zeros((n, FRAMES), np.uint64)
    fp_c = np.zeros((n, FRAMES, 3), np.uint8)
    valid = np.zeros(n, bool)
    for i, e in enumerate(extras):
        fp = from_hex(e.get("fingerprint"))
        if fp is not None:
            fp_h[i], fp_c[i], valid[i] = fp[0], fp[1], True
    has_fp = bool(valid.any())
    return Samples(keys, records, buckets, content_hashes=hashes, embeddings=emb,
                   fp_hashes=fp_h if has_fp else None, fp_colours=fp_c if has_fp else None,
                   fp_valid=valid if has_fp else None)


def groups(table: pa.Table, limit: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(the first ``limit`` groups, largest first, each ``{kept, kept_record, signals,
    members: [{key, record_id, similarity, cosine, hamming, signal}]}``; duplicates per
    signal)."""
    by_kept: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kept_record: dict[str, str] = {}
    per_signal: Counter = Counter()
    for d in table.to_pylist():
        by_kept[d["kept_key"]].append({k: d[k] for k in ("key", "record_id", "similarity",
                                                         "cosine", "hamming", "signal")})
        kept_record[d["kept_key"]] = d["kept_record_id"]
        for s in d["signal"].split("+"):
            per_signal[s] += 1
    ordered = sorted(by_kept.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    out = []
    for kept, members in ordered:
        for m in members:
            for f in ("similarity", "cosine"):
                if m[f] is not None:
                    m[f] = round(float(m[f]), 6)
        out.append({"kept": kept, "kept_record": kept_record[kept],
                    "signals": sorted({s for m in members for s in m["signal"].split("+")}),
                    "members": members})
    return out, dict(sorted(per_signal.items()))


def removed_by_build(rejects: Sequence[dict[str, Any]], max_listed: int | None = None
                     ) -> list[dict[str, Any]]:
    """The build's duplicate rejects grouped by the kept sample (named in the detail); with
    ``max_listed``, each group lists that many removed keys and counts them all."""
    found: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for r in rejects:
        reason = str(r.get("reason") or "")
        if not reason.endswith("_duplicate"):
            continue
        loc = str(r.get("locator") or "")
        key = loc.rsplit("#", 1)[1] if "#" in loc else loc
        kept = None
        for pattern in _KEPT:
            m = pattern.search(str(r.get("detail") or "") + " ")
            if m:
                kept = m.group(1)
                break
        found[(reason.removeprefix("filter:"), kept)].append(key)
    out = []
    for (kind, kept), keys in sorted(found.items(), key=lambda kv: str(kv[0])):
        g: dict[str, Any] = {"kind": kind, "kept": kept, "removed": sorted(keys)}
        if max_listed is not None:
            g["count"] = len(keys)
            g["removed"] = g["removed"][:max_listed]
        out.append(g)
    return out


def _vectors(col: pa.Array) -> np.ndarray | None:
    """``[b, D]`` float32 from an embedding column (a list or fixed-size list; rows that are
    null or of another length than the most common one are zero), None when no row has one.
    float32 as the audit always compared them: a cosine threshold such as 0.999 is finer than
    float16 resolves."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)) or col.null_count == len(col):
        return None
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    if not (lengths > 0).any():
        return None
    dim = int(np.bincount(lengths[lengths > 0]).argmax())
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # nulls hold no values
    ok = lengths == dim
    out = np.zeros((len(col), dim), np.float32)
    out[ok] = flat[starts[ok][:, None] + np.arange(dim)]
    return out


def _index_in(keys: np.ndarray, known: pa.Array) -> np.ndarray:
    """``[n]`` position of each key in ``known`` (-1 where absent)."""
    if len(known) == 0:
        return np.full(len(keys), -1)
    at = pc.index_in(pa.array(keys.astype(str), pa.string()), value_set=known)
    return pc.fill_null(at, -1).to_numpy(zero_copy_only=False)


def stream_samples(batches: Iterable[pa.RecordBatch], hash_keys: pa.Array,
                   hash_values: pa.Array, emb_keys: Sequence[str],
                   emb_vectors: Sequence[np.ndarray], *, hashes: bool = True,
                   embeddings: bool = True, fingerprints: bool = True) -> Samples:
    """The dedup columns of the accepted samples (:func:`iter_samples`, stacked)."""
    return _concat(list(iter_samples(batches, hash_keys, hash_values, emb_keys, emb_vectors,
                                     hashes=hashes, embeddings=embeddings,
                                     fingerprints=fingerprints)))


def iter_samples(batches: Iterable[pa.RecordBatch], hash_keys: pa.Array,
                 hash_values: pa.Array, emb_keys: Sequence[str],
                 emb_vectors: Sequence[np.ndarray], *, hashes: bool = True,
                 embeddings: bool = True, fingerprints: bool = True) -> Iterator[Samples]:
    """The dedup columns of the accepted samples, one :class:`Samples` per batch of the sample
    table (``key, record_id, bucket, extra, embedding, fingerprint``; longvid.dedup's
    ``samples_from_rows`` per batch, the embedding column copied as an array): hashes and
    vectors from the table or, where it has none, the ones the shard tasks read (``hash_*``,
    ``emb_*``). A signal that is off (``hashes``, ``embeddings``, ``fingerprints``) keeps no
    column."""
    known_emb = pa.array(list(emb_keys), pa.string())
    for b in batches:
        # the fingerprint column of newer builds (older ones keep it in ``extra``)
        cols = [c for c in ("key", "record_id", "bucket", "extra", "fingerprint")
                if c in b.schema.names]
        rows = b.select(cols).to_pylist()
        s = samples_from_rows(rows)
        vec = _vectors(b.column("embedding"))
        if vec is not None:
            # a vector in ``extra`` wins over the column (as the audit always read them)
            e = s.embeddings
            if e is not None and e.shape == vec.shape:
                own = np.abs(e).sum(axis=1) > 0
                vec[own] = e[own]
            s.embeddings = vec
        at = _index_in(s.keys, hash_keys)
        if (at >= 0).any():
            h = np.asarray(s.content_hashes, dtype=object)
            fill = (at >= 0) & np.asarray([x is None for x in h])
            h[fill] = np.asarray(hash_values.take(pa.array(at[fill])).to_pylist(), dtype=object)
            s.content_hashes = h
        at = _index_in(s.keys, known_emb)
        if (at >= 0).any():
            dim = len(emb_vectors[int(at[at >= 0][0])])
            e = s.embeddings if s.embeddings is not None and s.embeddings.shape[1] == dim \
                else np.zeros((len(s.keys), dim), np.float32)
            e = e.astype(np.float32)
            for i in np.flatnonzero(at >= 0):
                if not e[i].any() and len(emb_vectors[at[i]]) == dim:
                    e[i] = emb_vectors[at[i]]
            s.embeddings = e
        if not hashes:
            s.content_hashes = np.full(len(s.keys), None, dtype=object)
        if not embeddings:
            s.embeddings = None
        if not fingerprints:
            s.fp_hashes = s.fp_colours = s.fp_valid = None
        yield s


def _concat(parts: list[Samples]) -> Samples:
    if not parts:
        z = np.zeros(0, dtype=object)
        return Samples(z, z, z, content_hashes=z)
    n = [len(p.keys) for p in parts]
    dims = Counter(p.embeddings.shape[1] for p in parts
                   if p.embeddings is not None and p.embeddings.size)
    emb = None
    if dims:
        dim = dims.most_common(1)[0][0]
        dtype = np.result_type(*(p.embeddings.dtype for p in parts
                                 if p.embeddings is not None and p.embeddings.size))
        emb = np.concatenate([p.embeddings.astype(dtype) if p.embeddings is not None
                              and p.embeddings.shape[1:] == (dim,)
                              else np.zeros((k, dim), dtype) for p, k in zip(parts, n,
                                                                             strict=True)])
    valid = [p.fp_valid if p.fp_valid is not None else np.zeros(k, bool)
             for p, k in zip(parts, n, strict=True)]
    has_fp = any(v.any() for v in valid)

    def fp(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.concatenate([getattr(p, name) if getattr(p, name) is not None
                               else np.zeros((k, *shape), dtype)
                               for p, k in zip(parts, n, strict=True)])

    return Samples(
        keys=np.concatenate([p.keys for p in parts]),
        records=np.concatenate([p.records for p in parts]),
        buckets=np.concatenate([p.buckets for p in parts]),
        content_hashes=np.concatenate([np.asarray(p.content_hashes, dtype=object)
                                       for p in parts]),
        embeddings=emb,
        fp_hashes=fp("fp_hashes", (FRAMES,), np.uint64) if has_fp else None,
        fp_colours=fp("fp_colours", (FRAMES, 3), np.uint8) if has_fp else None,
        fp_valid=np.concatenate(valid) if has_fp else None)
