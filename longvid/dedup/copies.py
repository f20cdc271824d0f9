"""Copies by perceptual fingerprint, found with the same cluster search as the embeddings.

A fingerprint's 256 bits become a vector of +-1 (a flat frame's 64 entries are 0), so that
cosine = 1 - 2 x Hamming / 256 for two clips without flat frames: pairs within ``max_bits`` are
pairs at cosine >= 1 - 2 x max_bits / 256, which :func:`~longvid.dedup.semantic.near_pairs`
finds inside k-means clusters in linear time (where exact-match hashing of bands would either
miss copies or compare far too many pairs at scale). Each candidate is then checked on the
exact Hamming distance and the frame colours.
"""

from __future__ import annotations

import numpy as np

from longvid.dedup.config import DedupConfig
from longvid.dedup.fingerprint import BITS, FRAMES, colour_gap, hamming
from longvid.dedup.semantic import near_pairs


def sign_vectors(hashes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``[N, F]`` uint64 → ``[N, 64 F]`` float16 unit rows of +-1 (flat frames and rows
    without a fingerprint are 0)."""
    n = len(hashes)
    shifts = np.arange(64, dtype=np.uint64)
    bits = ((hashes[:, :, None] >> shifts) & np.uint64(1)).astype(np.int8)  # [N, F, 64]
    v = (2 * bits - 1).astype(np.float32)
    v[hashes == 0] = 0  # flat frame: no structure to compare
    v[~valid] = 0
    v = v.reshape(n, 64 * FRAMES)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float16)


def copy_pairs(hashes: np.ndarray, colours: np.ndarray, valid: np.ndarray, videos: np.ndarray,
               max_bits: int, colour_tolerance: float, cfg: DedupConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i [P], j [P], bits [P])``: fingerprint copies of different videos, ``i < j``, sorted.
    ``hashes`` ``[N, F]`` uint64, ``colours`` ``[N, F, 3]`` uint8, ``valid``/``videos``
    ``[N]``."""
    x = sign_vectors(hashes, valid)
    # float16 rounding and the 0 entries of flat frames: a little below the exact bound
    threshold = 1 - 2 * max_bits / BITS - 0.01
    same_group = np.zeros(len(hashes), np.int64)
    i, j, _, _ = near_pairs(x, same_group, videos, threshold, cfg)
    bits = hamming(hashes[i], hashes[j])
    keep = (bits <= max_bits) & (colour_gap(colours[i], colours[j]) <= colour_tolerance)
    return i[keep], j[keep], bits[keep]
