"""Duplicates among the accepted samples, and the ones the build already removed.

*Exact*: samples whose clip bytes have the same SHA-256. *Near*: samples of the same bucket from
different source videos whose video embeddings have a cosine of at least the threshold; pairs
are joined into clusters (union-find), so a chain of near copies is one cluster. Clips of one
video are never near duplicates of each other (a short clip lies inside its long sample by
construction). *Removed by the build*: reject rows ``filter:exact_duplicate`` /
``filter:near_duplicate``, grouped by the sample that was kept.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

_KEPT = (re.compile(r"those of (\S+?)[\s(]"), re.compile(r"with (\S+?) \("))


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def exact_clusters(keys: Sequence[str], hashes: Sequence[str | None],
                   records: Sequence[str]) -> list[dict[str, Any]]:
    """Groups of two or more samples with the same clip hash, largest first."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h:
            groups[h].append(i)
    out = [
        {"sha256": h, "keys": sorted(keys[i] for i in idx),
         "records": sorted({records[i] for i in idx})}
        for h, idx in groups.items() if len(idx) > 1
    ]
    return sorted(out, key=lambda c: (-len(c["keys"]), c["keys"][0]))


def unit_rows(embs: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero). ``embs``: ``[N, D]``."""
    embs = np.asarray(embs, dtype=np.float32)
    norms = np.linalg.norm(embs, axis=1, keepdims=True)
    return np.divide(embs, norms, out=np.zeros_like(embs), where=norms > 0)


def near_clusters(keys: Sequence[str], groups: Sequence[str], records: Sequence[str],
                  embs: np.ndarray, threshold: float, block: int = 2048) -> list[dict[str, Any]]:
    """Clusters of near-duplicate samples. ``embs``: ``[N, D]`` (any scale; zero rows never
    match). Cost: N²/2 dot products per bucket, ``block`` rows at a time."""
    n = len(keys)
    if n < 2:
        return []
    x = unit_rows(embs)
    rec_codes = {r: i for i, r in enumerate(dict.fromkeys(records))}
    rec = np.asarray([rec_codes[r] for r in records])
    uf = _UnionFind(n)
    best: dict[tuple[int, int], float] = {}
    for g in dict.fromkeys(groups):
        idx = np.asarray([i for i in range(n) if groups[i] == g])
        for s in range(0, len(idx), block):
            rows = idx[s : s + block]
            sims = x[rows] @ x[idx].T  # [b, m]
            for a, b in zip(*np.nonzero(sims >= threshold), strict=True):
                i, j = int(rows[a]), int(idx[b])
                if i >= j or rec[i] == rec[j] or not np.any(x[i]) or not np.any(x[j]):
                    continue
                uf.union(i, j)
                best[(i, j)] = float(sims[a, b])
    members: dict[int, list[int]] = defaultdict(list)
    for i, j in best:
        for k in (i, j):
            root = uf.find(k)
            if k not in members[root]:
                members[root].append(k)
    out = []
    for root, idx_list in members.items():
        cos = [v for (i, j), v in best.items() if uf.find(i) == root]
        out.append({
            "keys": sorted(keys[i] for i in idx_list),
            "records": sorted({records[i] for i in idx_list}),
            "bucket": groups[root],
            "max_cosine": round(max(cos), 6),
            "min_cosine": round(min(cos), 6),
        })
    return sorted(out, key=lambda c: (-len(c["keys"]), c["keys"][0]))


def removed_by_build(rejects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The build's duplicate rejects grouped by the kept sample (named in the detail)."""
    groups: dict[tuple[str, str | None], list[str]] = defaultdict(list)
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
        groups[(reason.removeprefix("filter:"), kept)].append(key)
    return [{"kind": kind, "kept": kept, "removed": sorted(keys)}
            for (kind, kept), keys in sorted(groups.items(), key=lambda kv: str(kv[0]))]
