"""Corpus samples that are copies of an evaluation video, by perceptual fingerprint.

A corpus sample covers an unknown span of the evaluation video, so its fingerprint frames are
matched one by one against every frame of the evaluation video: each frame hash becomes a
64-entry +-1 vector and :func:`~longvid.dedup.semantic.near_pairs` (the clusters the duplicate
search uses) finds the frame pairs within ``max_bits / FRAMES`` bits; a sample leaks when all
its structured fingerprint frames (at least two) match frames of one evaluation video, each
within the bits and the colour tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longvid.dedup.config import DedupConfig
from longvid.dedup.fingerprint import FRAMES, colour_gap, hamming
from longvid.dedup.semantic import near_pairs


@dataclass
class FrameLeak:
    row: int  # corpus row
    video: int  # evaluation video index
    bits: int  # summed over the sample's fingerprint frames (best match each)


def _sign(hashes: np.ndarray) -> np.ndarray:
    """``[M]`` uint64 → ``[M, 64]`` float16 unit rows of +-1."""
    bits = (hashes[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    return ((2 * bits.astype(np.float32) - 1) / 8).astype(np.float16)


def fingerprint_leaks(fp_hashes: np.ndarray, fp_colours: np.ndarray, fp_valid: np.ndarray,
                      eval_hashes: np.ndarray, eval_colours: np.ndarray,
                      eval_video: np.ndarray, cfg: DedupConfig) -> list[FrameLeak]:
    """Corpus rows (``fp_*``: ``[N, F]``, ``[N, F, 3]``, ``[N]``) all of whose structured
    fingerprint frames match frames (``eval_*``: ``[E]``, ``[E, 3]``, video index ``[E]``) of
    one evaluation video. Sorted by row."""
    if cfg.fingerprint_max_bits is None or not len(eval_hashes) or fp_valid is None:
        return []
    per_frame = cfg.fingerprint_max_bits // FRAMES
    rows, frames = np.nonzero(fp_valid[:, None] & (fp_hashes != 0))  # structured frames
    ev = np.nonzero(eval_hashes != 0)[0]
    corpus_h = fp_hashes[rows, frames]
    x = np.concatenate([_sign(corpus_h), _sign(eval_hashes[ev])])
    side = np.r_[np.zeros(len(rows), np.int64), np.ones(len(ev), np.int64)]  # corpus | eval
    i, j, _, _ = near_pairs(x, np.zeros(len(x), np.int64), side, 1 - 2 * per_frame / 64 - 0.01,
                            cfg)
    # i < j and corpus rows come first: i is a corpus frame, j an evaluation frame
    j = ev[j - len(rows)]
    bits = hamming(corpus_h[i][:, None], eval_hashes[j][:, None])
    ok = (bits <= per_frame) & (colour_gap(fp_colours[rows[i], frames[i]][:, None],
                                           eval_colours[j][:, None]) <= cfg.colour_tolerance)
    i, j, bits = i[ok], j[ok], bits[ok]
    structured = np.bincount(rows, minlength=len(fp_hashes))  # [N] frames to match
    best: dict[tuple[int, int], dict[int, int]] = {}
    for fi, vid, b in zip(i.tolist(), eval_video[j].tolist(), bits.tolist(), strict=True):
        per = best.setdefault((int(rows[fi]), vid), {})
        f = int(frames[fi])
        per[f] = min(per.get(f, b), b)
    out = [FrameLeak(row, vid, sum(per.values())) for (row, vid), per in best.items()
           if structured[row] >= 2 and len(per) == structured[row]]
    return sorted(out, key=lambda x: (x.row, x.bits, x.video))
