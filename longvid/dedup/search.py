"""One entry point for the build's filter, the audit and the leakage check:
:func:`find_duplicates` over the columns of a set of samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from longvid.dedup.config import DedupConfig
from longvid.dedup.copies import copy_pairs
from longvid.dedup.exact import exact_pairs
from longvid.dedup.groups import Pairs, duplicates_table
from longvid.dedup.semantic import near_pairs, row_norms, unit_rows


@dataclass
class Samples:
    """The columns duplicates are found from, one entry per sample (``[N]`` each)."""

    keys: np.ndarray  # str
    records: np.ndarray  # str: the source video (its samples are never near duplicates)
    buckets: np.ndarray  # str: near duplicates are looked for inside a bucket
    content_hashes: np.ndarray | None = None  # str or None: SHA-256 of the clip bytes
    embeddings: np.ndarray | None = None  # [N, D] float16/32, zero rows = no embedding
    fp_hashes: np.ndarray | None = None  # [N, F] uint64
    fp_colours: np.ndarray | None = None  # [N, F, 3] uint8
    fp_valid: np.ndarray | None = None  # [N] bool


@dataclass
class DedupResult:
    table: pa.Table  # longvid.dedup.groups.DUPLICATES_SCHEMA
    stats: dict[str, Any] = field(default_factory=dict)


def codes(values: np.ndarray) -> np.ndarray:
    """``[N]`` int codes of ``values`` (equal values, equal codes)."""
    return np.unique(np.asarray(values).astype(str), return_inverse=True)[1].ravel()


def find_duplicates(s: Samples, cfg: DedupConfig, *, exact: bool = True,
                    near_cosine: float | None = None,
                    exact_found: Pairs | None = None) -> DedupResult:
    """Duplicates among ``s`` by every signal that is on and has data: exact content hashes
    (``exact``; ``exact_found`` when a distributed group-by already found them), embedding
    cosine >= ``near_cosine`` (same bucket, other video), fingerprint copies
    (``cfg.fingerprint_max_bits``, other video)."""
    n = len(s.keys)
    pairs: list[Pairs] = []
    stats: dict[str, Any] = {"samples": n}
    if exact and (exact_found is not None or s.content_hashes is not None):
        p = exact_found if exact_found is not None else exact_pairs(s.content_hashes, s.keys)
        pairs.append(p)
        stats["exact_pairs"] = len(p.i)
    videos = codes(s.records) if n else np.zeros(0, np.int64)
    clusters = None
    if near_cosine is not None and s.embeddings is not None and n:
        x = s.embeddings
        if x.dtype != np.float16:
            x = unit_rows(x)
        else:  # keep float16 in memory (half the bytes) when rows are unit length already
            norms = row_norms(x, cfg.batch)
            if not np.allclose(norms[norms > 0], 1.0, atol=1e-2):
                x = unit_rows(x).astype(np.float16)
        i, j, cos, clusters = near_pairs(x, codes(s.buckets), videos, near_cosine, cfg)
        pairs.append(Pairs("embedding", i, j, cos))
        stats.update(embedded=int((clusters >= 0).sum()),
                     clusters=int(clusters.max()) + 1 if len(clusters) else 0,
                     embedding_pairs=len(i))
    if cfg.fingerprint_max_bits is not None and s.fp_hashes is not None and n:
        i, j, bits = copy_pairs(s.fp_hashes, s.fp_colours, s.fp_valid, videos,
                                cfg.fingerprint_max_bits, cfg.colour_tolerance, cfg)
        pairs.append(Pairs("fingerprint", i, j, bits))
        stats.update(fingerprinted=int(s.fp_valid.sum()), fingerprint_pairs=len(i))
    table = duplicates_table(np.asarray(s.keys).astype(str), np.asarray(s.records).astype(str),
                             clusters, pairs)
    stats["duplicates"] = table.num_rows
    return DedupResult(table, stats)
