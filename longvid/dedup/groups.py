"""Duplicates from pairs of any signal, the kept rule, and the duplicates table.

Pairs from every signal (exact content hash, embedding cosine, fingerprint) are merged (a
pair found by two signals is one pair naming both). Then samples are visited in key order: a
sample paired with an already kept sample is a duplicate of the most similar of them, else it
is kept. So the sample whose key sorts first always stays, a duplicate always names a kept
sample it really resembles (no chains: A~B and B~C with A, C unrelated keep C), and the result
depends on the keys only, not on how the corpus was split into units, shards or batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from longvid.dedup.fingerprint import BITS

SIGNALS = ("exact", "embedding", "fingerprint")  # bit i of a signal mask = SIGNALS[i]

DUPLICATES_SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),  # the duplicate (leaves the corpus)
    pa.field("kept_key", pa.string(), nullable=False),  # the sample kept for its group
    ("record_id", pa.string()),
    ("kept_record_id", pa.string()),
    ("cluster", pa.int32()),  # k-means cluster of the duplicate's embedding (-1: none)
    ("similarity", pa.float32()),  # best over its pairs: 1 exact, cosine, or 1 - bits/256
    ("cosine", pa.float32()),  # best embedding cosine with a group member (null: none)
    ("hamming", pa.int32()),  # fewest fingerprint bits apart from a group member (null: none)
    ("signal", pa.string()),  # which signals joined it: "exact", "embedding+fingerprint", ...
])


@dataclass
class Pairs:
    """Pairs of row indices found by one signal; ``value``: 1.0 (exact), the cosine, or the
    number of differing fingerprint bits."""

    signal: str
    i: np.ndarray  # [P] int64
    j: np.ndarray  # [P] int64
    value: np.ndarray  # [P]

    @classmethod
    def empty(cls, signal: str) -> Pairs:
        z = np.zeros(0, np.int64)
        return cls(signal, z, z, np.zeros(0, np.float32))


def key_ranks(keys: np.ndarray) -> np.ndarray:
    """``[N]`` position of each key in key order."""
    order = np.argsort(keys, kind="stable")
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys))
    return rank


@dataclass
class MergedPairs:
    """Pairs of all signals, one entry per pair (``i < j``), sorted."""

    i: np.ndarray  # [P] int64
    j: np.ndarray  # [P] int64
    mask: np.ndarray  # [P] int64: bit s set when SIGNALS[s] found the pair
    similarity: np.ndarray  # [P] float32: best of 1 (exact), cosine, 1 - bits / 256
    cosine: np.ndarray  # [P] float32, -inf when no embedding pair
    hamming: np.ndarray  # [P] int64, INT32_MAX when no fingerprint pair


NO_BITS = np.iinfo(np.int32).max


def merge(n: int, pairs: list[Pairs]) -> MergedPairs:
    parts = [p for p in pairs if len(p.i)]
    if not parts:
        z = np.zeros(0, np.int64)
        return MergedPairs(z, z, z, np.zeros(0, np.float32), np.zeros(0, np.float32), z)
    i = np.concatenate([np.minimum(p.i, p.j) for p in parts]).astype(np.int64)
    j = np.concatenate([np.maximum(p.i, p.j) for p in parts]).astype(np.int64)
    sig = np.concatenate([np.full(len(p.i), 1 << SIGNALS.index(p.signal)) for p in parts])
    cos = np.concatenate([p.value.astype(np.float32) if p.signal == "embedding"
                          else np.full(len(p.i), -np.inf, np.float32) for p in parts])
    bits = np.concatenate([p.value.astype(np.int64) if p.signal == "fingerprint"
                           else np.full(len(p.i), NO_BITS) for p in parts])
    sim = np.where(sig == 1, np.float32(1.0), cos)
    sim = np.where(sig == 4, (1 - bits / BITS).astype(np.float32), sim).astype(np.float32)
    pair, start = np.unique(i * n + j, return_index=True)
    order = np.argsort(i * n + j, kind="stable")
    bounds = np.searchsorted((i * n + j)[order], pair)
    return MergedPairs(
        pair // n, pair % n,
        np.bitwise_or.reduceat(sig[order], bounds),
        np.maximum.reduceat(sim[order], bounds),
        np.maximum.reduceat(cos[order], bounds),
        np.minimum.reduceat(bits[order], bounds),
    )


def greedy_keep(n: int, rank: np.ndarray, m: MergedPairs) -> np.ndarray:
    """``[N]`` the row each row is a duplicate of (itself when kept), by the rule in the module
    docstring. Only rows with a pair are visited, in key order."""
    of = np.arange(n, dtype=np.int64)
    if not len(m.i):
        return of
    # both directions, grouped by row: neighbours of r are nb[start[r]:end[r]]
    a = np.concatenate([m.i, m.j])
    b = np.concatenate([m.j, m.i])
    e = np.concatenate([np.arange(len(m.i))] * 2)
    order = np.argsort(a, kind="stable")
    a, b, e = a[order], b[order], e[order]
    rows, start = np.unique(a, return_index=True)
    end = np.r_[start[1:], len(a)]
    kept = np.zeros(n, bool)
    for k in np.argsort(rank[rows], kind="stable"):
        r = rows[k]
        nb, edge = b[start[k]:end[k]], e[start[k]:end[k]]
        ok = kept[nb]  # neighbours visited earlier and kept
        if not ok.any():
            kept[r] = True
            continue
        nb, edge = nb[ok], edge[ok]
        best = np.lexsort((rank[nb], -m.similarity[edge]))[0]  # most similar, then first key
        of[r] = nb[best]
    return of


def duplicates_table(keys: np.ndarray, records: np.ndarray, clusters: np.ndarray | None,
                     pairs: list[Pairs]) -> pa.Table:
    """The duplicates table (``DUPLICATES_SCHEMA``, sorted by kept_key then key) for rows with
    ``keys``/``records`` (``[N]`` str) and the pairs of each signal."""
    n = len(keys)
    m = merge(n, pairs)
    if not len(m.i):
        return DUPLICATES_SCHEMA.empty_table()
    of = greedy_keep(n, key_ranks(keys), m)
    dup = np.nonzero(of != np.arange(n))[0]
    kept = of[dup]
    # the pair (duplicate, kept) in the merged list
    lo, hi = np.minimum(dup, kept), np.maximum(dup, kept)
    at = np.searchsorted(m.i * n + m.j, lo * n + hi)
    cos, bits = m.cosine[at], m.hamming[at]
    signal = ["+".join(s for b, s in enumerate(SIGNALS) if x >> b & 1) for x in m.mask[at]]
    table = pa.table({
        "key": pa.array(keys[dup], pa.string()),
        "kept_key": pa.array(keys[kept], pa.string()),
        "record_id": pa.array(records[dup], pa.string()),
        "kept_record_id": pa.array(records[kept], pa.string()),
        "cluster": pa.array(clusters[dup] if clusters is not None
                            else np.full(len(dup), -1), pa.int32()),
        "similarity": pa.array(np.round(m.similarity[at], 6), pa.float32()),
        "cosine": pa.array(np.round(cos, 6), pa.float32(), mask=np.isinf(cos)),
        "hamming": pa.array(bits.astype(np.int32), pa.int32(), mask=bits == NO_BITS),
        "signal": pa.array(signal, pa.string()),
    }, schema=DUPLICATES_SCHEMA)
    return table.sort_by([("kept_key", "ascending"), ("key", "ascending")])
