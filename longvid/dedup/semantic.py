"""Semantic near duplicates, SemDeDup-style: k-means over unit embeddings, then cosine between
pairs only inside a cluster.

Cost: training on a bounded sample, assignment O(N x clusters) in batches, pairs
O(sum of cluster size squared) = O(N x cluster_size) — linear in N at a fixed mean cluster size,
where all-pairs is quadratic. A pair split by a cluster border is still found when one of
the two is also compared in its second-nearest cluster (``spill_margin``).
"""

from __future__ import annotations

import math
import os

import numpy as np

from longvid.dedup.config import DedupConfig


def use_cuda(device: str) -> bool:
    """Whether to compute on CUDA: ``cuda``, or ``auto`` on a machine with an NVIDIA driver
    (checked before importing torch, which takes seconds)."""
    if device == "cpu" or (device == "auto" and not os.path.exists("/dev/nvidiactl")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``[N, D]`` → float32 rows of unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def nonzero_rows(x: np.ndarray, batch: int) -> np.ndarray:
    """``[N]`` bool: rows with any non-zero entry (a batch at a time: no ``[N, D]`` temporary)."""
    return np.concatenate([np.any(x[s : s + batch] != 0, axis=1)
                           for s in range(0, len(x), batch)] or [np.zeros(0, bool)])


def row_norms(x: np.ndarray, batch: int) -> np.ndarray:
    """``[N]`` float32 lengths of the rows, a batch at a time."""
    return np.concatenate([np.linalg.norm(x[s : s + batch].astype(np.float32), axis=1)
                           for s in range(0, len(x), batch)] or [np.zeros(0, np.float32)])


def cluster_count(n: int, cfg: DedupConfig) -> int:
    k = cfg.clusters or math.ceil(n / cfg.cluster_size)
    return max(1, min(k, n))


def train_centroids(x: np.ndarray, k: int, cfg: DedupConfig) -> np.ndarray:
    """``[k, D]`` unit centroids from a seeded sample of the rows of ``x`` (``[N, D]``, any
    float dtype, unit rows)."""
    import faiss

    n, d = x.shape
    if k == 1:
        c = unit_rows(x.astype(np.float32).mean(axis=0, keepdims=True))
        return c if np.any(c) else np.eye(1, d, dtype=np.float32)
    m = min(n, max(k, min(cfg.max_train_points, k * cfg.train_points_per_cluster)))
    pick = np.sort(np.random.default_rng(cfg.seed).choice(n, size=m, replace=False))
    sample = np.ascontiguousarray(x[pick], dtype=np.float32)
    km = faiss.Kmeans(d, k, niter=cfg.kmeans_iters, seed=cfg.seed, spherical=True,
                      gpu=faiss.get_num_gpus() > 0 and use_cuda(cfg.device), verbose=False,
                      max_points_per_centroid=max(cfg.train_points_per_cluster, m // k + 1))
    km.train(sample)
    return unit_rows(km.centroids)


def assign(x: np.ndarray, centroids: np.ndarray, cfg: DedupConfig
           ) -> tuple[np.ndarray, np.ndarray]:
    """(nearest cluster ``[N]`` int32, second cluster or -1 ``[N]`` int32), a batch of rows at
    a time. The second is set when its centroid is within ``spill_margin`` of the first's."""
    import faiss

    k, d = centroids.shape
    index = faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    n = len(x)
    first = np.zeros(n, np.int32)
    second = np.full(n, -1, np.int32)
    top = min(2, k)
    for s in range(0, n, cfg.batch):
        q = np.ascontiguousarray(x[s : s + cfg.batch], dtype=np.float32)
        sims, ids = index.search(q, top)  # [b, top]
        first[s : s + len(q)] = ids[:, 0]
        if top == 2:
            close = sims[:, 0] - sims[:, 1] <= cfg.spill_margin
            second[s : s + len(q)] = np.where(close, ids[:, 1], -1)
    return first, second


def _matmul(a: np.ndarray, b: np.ndarray, cuda: bool) -> np.ndarray:
    """``a @ b.T`` for ``a`` ``[m, D]``, ``b`` ``[n, D]`` → ``[m, n]`` float32."""
    if cuda:
        import torch

        ta = torch.from_numpy(a).cuda()
        tb = torch.from_numpy(b).cuda()
        return (ta @ tb.T).float().cpu().numpy()
    return a @ b.T


def cluster_pairs(x: np.ndarray, members: np.ndarray, groups: np.ndarray, videos: np.ndarray,
                  threshold: float, block: int, cuda: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, cosine)`` with ``i < j`` among ``members`` (row indices of one cluster)
    whose cosine is at least ``threshold``, of the same group (bucket) and different videos."""
    xs = np.ascontiguousarray(x[members], dtype=np.float32)  # [m, D]
    g, v = groups[members], videos[members]
    out_i, out_j, out_s = [], [], []
    for s in range(0, len(members), block):
        sims = _matmul(xs[s : s + block], xs, cuda)  # [b, m]
        rows = np.arange(s, s + len(sims))[:, None]
        ok = (sims >= threshold) & (np.arange(len(members))[None, :] > rows)
        ok &= g[rows] == g[None, :]
        ok &= v[rows] != v[None, :]
        a, b = np.nonzero(ok)
        out_i.append(members[a + s])
        out_j.append(members[b])
        out_s.append(sims[a, b])
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return np.minimum(i, j), np.maximum(i, j), np.concatenate(out_s).astype(np.float32)


def near_pairs(x: np.ndarray, groups: np.ndarray, videos: np.ndarray, threshold: float,
               cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Near-duplicate pairs among the rows of ``x`` (``[N, D]`` unit rows, float16 or float32;
    zero rows never match): ``(i [P], j [P], cosine [P], cluster of i [N])``, ``i < j``, each
    pair once, sorted. ``groups``/``videos``: ``[N]`` int codes (bucket, source video)."""
    n = len(x)
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    if n < 2:
        return (*empty, np.zeros(n, np.int32))
    valid = nonzero_rows(x, cfg.batch)
    rows = np.nonzero(valid)[0]
    xv = x if len(rows) == n else x[rows]  # no copy of the whole matrix when all have one
    k = cluster_count(len(rows), cfg)
    cuda = use_cuda(cfg.device)
    first, second = assign(xv, train_centroids(xv, k, cfg), cfg)
    cluster = np.full(n, -1, np.int32)
    cluster[rows] = first
    # membership lists: every row in its cluster, spilled rows in their second one too
    spill = second >= 0
    member_rows = np.concatenate([rows, rows[spill]])
    member_cluster = np.concatenate([first, second[spill]])
    order = np.argsort(member_cluster, kind="stable")
    member_rows, member_cluster = member_rows[order], member_cluster[order]
    bounds = np.flatnonzero(np.diff(member_cluster)) + 1
    parts = [], [], []
    for members in np.split(member_rows, bounds):
        if len(members) < 2:
            continue
        for acc, arr in zip(parts, cluster_pairs(x, members, groups, videos, threshold,
                                                 cfg.batch // 16 or 1, cuda), strict=True):
            acc.append(arr)
    if not parts[0]:
        return (*empty, cluster)
    i, j, s = (np.concatenate(p) for p in parts)
    # a pair seen in two clusters (both spilled) once; sorted by (i, j)
    pair = i.astype(np.int64) * n + j
    _, first_seen = np.unique(pair, return_index=True)
    return i[first_seen].astype(np.int64), j[first_seen].astype(np.int64), s[first_seen], cluster
