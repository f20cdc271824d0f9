"""Exact duplicates: equal content hashes (the clip's SHA-256)."""

from __future__ import annotations

import numpy as np

from longvid.dedup.groups import Pairs


def exact_pairs(hashes: np.ndarray, keys: np.ndarray) -> Pairs:
    """Every row paired with the row whose key sorts first among those with its hash (equal
    bytes are transitive: a star around the sample that is kept). ``hashes``: ``[N]`` str or
    None (None/empty never match); ``keys``: ``[N]`` str."""
    h = np.asarray([x or "" for x in hashes], dtype=object).astype(str)
    rows = np.nonzero(h != "")[0]
    if not len(rows):
        return Pairs.empty("exact")
    rows = rows[np.argsort(np.asarray(keys)[rows].astype(str), kind="stable")]  # key order
    _, first, inverse = np.unique(h[rows], return_index=True, return_inverse=True)
    head = rows[first][inverse.ravel()]  # [R] row with the first key and the same hash
    keep = head != rows
    return Pairs("exact", np.minimum(head, rows)[keep], np.maximum(head, rows)[keep],
                 np.ones(int(keep.sum()), np.float32))
