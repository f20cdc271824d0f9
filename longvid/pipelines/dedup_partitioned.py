"""The partitioned duplicate search on the running Ray: the driver holds the k-means centroids,
the training sample and the pairs found, never the rows' vectors (the steps are in
:mod:`longvid.dedup.partition`).

Work files (under ``work``): ``<space>/bNNNNN/tNNNNNN.parquet`` members of cluster bucket N
written by task N; ``pairs/<space>-bNNNNN.parquet``; ``duplicates/part-NNNNN.parquet`` the
duplicates table (``DUPLICATES_SCHEMA``, sorted by kept key then key), in parts of
``cfg.batch`` rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from longvid import storage
from longvid.dedup.config import DedupConfig
from longvid.dedup.groups import DUPLICATES_SCHEMA
from longvid.dedup.partition import (
    PAIRS_SCHEMA,
    Space,
    assign_parts,
    bucket_pairs,
    fingerprint_threshold,
    member_uri,
    part_rows,
    read_part,
    resolve,
    sample_size,
    take_sample,
    write_part,
)
from longvid.dedup.semantic import cluster_count, train_centroids, use_cuda


@dataclass
class PartitionedResult:
    parts: list[str]  # the duplicates table, in parts
    stats: dict[str, Any] = field(default_factory=dict)
    work_files: list[str] = field(default_factory=list)  # members and pairs (not the parts)

    def table(self) -> pa.Table:
        """The whole duplicates table (it grows with the duplicates, not with the corpus)."""
        tables = [read_part(u) for u in self.parts]
        return pa.concat_tables(tables) if tables else DUPLICATES_SCHEMA.empty_table()

    def remove_work(self, parts_too: bool = False) -> None:
        for uri in self.work_files + (self.parts if parts_too else []):
            storage.delete(uri)


def run_tasks(fn: Any, calls: list[tuple], num_gpus: float = 0) -> list[Any]:
    """``fn(*args)`` for each of ``calls``: as Ray tasks when Ray is running, else in this
    process one after the other (a build finalized without a Ray cluster)."""
    import ray

    if not ray.is_initialized():
        return [fn(*args) for args in calls]
    task = ray.remote(fn).options(num_gpus=num_gpus)
    return ray.get([task.remote(*args) for args in calls])


def task_groups(rows: list[int], task_rows: int) -> list[list[int]]:
    """Consecutive parts, whole, into groups of at most ``task_rows`` rows (a bigger part alone)."""
    groups: list[list[int]] = []
    size = 0
    for f, n in enumerate(rows):
        if not groups or size + n > task_rows:
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += n
    return groups


def find_duplicates_partitioned(uris: list[str], cfg: DedupConfig, work: str, *,
                                exact: bool = True, near_cosine: float | None = None
                                ) -> PartitionedResult:
    """Duplicates among the rows of the samples parts ``uris`` (Parquet files, local or remote),
    by the signals of :func:`~longvid.dedup.find_duplicates`, as Ray tasks (in this process
    when Ray is not running); the duplicates table is written in parts under ``work``."""
    import ray

    t0 = time.monotonic()
    rows = [part_rows(u) for u in uris]  # footers only
    total = sum(rows)
    offsets = np.r_[0, np.cumsum(rows)]
    groups = task_groups(rows, cfg.task_rows)
    vector_spaces = [s for s, on in (("embedding", near_cosine is not None),
                                     ("fingerprint", cfg.fingerprint_max_bits is not None)) if on]
    stats: dict[str, Any] = {"samples": total, "parts": len(uris), "tasks": len(groups)}
    spaces: dict[str, Space] = {}
    if vector_spaces and total:
        # 1. a seeded pick of rows, read by the tasks; the driver gets only the picked vectors
        m = sample_size(total, cluster_count(total, cfg), cfg)
        pick = np.sort(np.random.default_rng(cfg.seed).choice(total, size=m, replace=False))
        calls = []
        for g in groups:
            picks = [pick[(pick >= offsets[f]) & (pick < offsets[f + 1])] - offsets[f] for f in g]
            calls.append(([uris[f] for f in g], picks, vector_spaces, cfg))
        got = run_tasks(take_sample, calls)
        stats["driver_sample_rows"] = 0
        for sp in vector_spaces:
            vecs = [g[sp][0] for g in got if g[sp][0].size]
            valid = sum(g[sp][1] for g in got)
            stats[f"{sp}_rows"] = valid
            if not vecs or not valid:
                continue
            sample = np.concatenate(vecs)  # [m', D] float16: the only vectors on the driver
            stats["driver_sample_rows"] += len(sample)
            k = min(cluster_count(valid, cfg), len(sample))  # zero rows left the pick
            threshold = near_cosine if sp == "embedding" else fingerprint_threshold(cfg)
            spaces[sp] = Space(sp, train_centroids(sample, k, cfg),
                               max(1, min(k, math.ceil(valid / cfg.bucket_rows))), threshold)
            stats[f"{sp}_clusters"] = k
            stats[f"{sp}_buckets"] = spaces[sp].buckets
    stats["train_seconds"] = round(time.monotonic() - t0, 3)
    # 2. assignment: members written to cluster-bucket files by each task
    t1 = time.monotonic()
    exact_buckets = max(1, math.ceil(total / cfg.bucket_rows)) if exact and total else 0
    wrote = run_tasks(assign_parts, [([uris[f] for f in g], t, spaces, exact_buckets, cfg, work)
                                     for t, g in enumerate(groups)])
    stats["assign_seconds"] = round(time.monotonic() - t1, 3)
    # 3. pairs, one task per (space, bucket)
    t2 = time.monotonic()
    members: dict[tuple[str, int], list[str]] = {}
    for t, w in enumerate(wrote):
        for sp, buckets in w.items():
            for b in buckets:
                members.setdefault((sp, b), []).append(member_uri(work, sp, b, t))
    gpus = 1 if (use_cuda(cfg.device) and ray.is_initialized()
                 and ray.cluster_resources().get("GPU")) else 0
    pair_uris, calls = [], []
    for (sp, b), files in sorted(members.items()):
        out = storage.join(work, "pairs", f"{sp}-b{b:05d}.parquet")
        threshold = spaces[sp].threshold if sp in spaces else 1.0
        calls.append((sp, files, threshold, cfg, out))
        pair_uris.append(out)
    counts = run_tasks(bucket_pairs, calls, num_gpus=gpus)
    stats["pairs"] = int(sum(counts))
    stats["pair_seconds"] = round(time.monotonic() - t2, 3)
    # 4. the kept rule over the pairs, on the driver
    tables = [read_part(u) for u in pair_uris]
    pairs = pa.concat_tables(tables) if tables else PAIRS_SCHEMA.empty_table()
    table = resolve(pairs)
    parts = []
    for s in range(0, max(table.num_rows, 1), cfg.batch):
        uri = storage.join(work, "duplicates", f"part-{s // cfg.batch:05d}.parquet")
        write_part(uri, table.slice(s, cfg.batch))
        parts.append(uri)
    stats["duplicates"] = table.num_rows
    stats["seconds"] = round(time.monotonic() - t0, 3)
    work_files = [u for files in members.values() for u in files] + pair_uris
    return PartitionedResult(parts, stats, work_files)
