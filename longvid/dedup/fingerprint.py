"""A model-free perceptual fingerprint of a clip: a 64-bit DCT hash (pHash) of the luma of a
few frames at fixed relative positions, plus each frame's mean colour.

Per frame: the 8x8 lowest-frequency coefficients of an orthonormal 2-D DCT of the luma on the
frame's own grid (no resize: the DCT basis is sampled at the frame's size, so a frame scaled
to another size gives nearly the same coefficients), the DC term dropped, each of the other 63
compared with their median (bit 63 is 0). Re-encoding, resizing and bitrate changes move few
bits; different pictures differ in about half. A frame with almost no structure (a flat colour)
hashes to 0 and is told apart by its colour only.

A clip's fingerprint is ``FRAMES`` frame hashes (``[F]`` uint64, 256 bits) at the centres of
``FRAMES`` equal parts of the clip, and their mean colours (``[F, 3]`` uint8). Two clips are
copies when the hashes differ in at most ``max_bits`` bits in all and every frame's colour is
within ``colour_tolerance``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from longvid.media.decode import channel_sums

FRAMES = 4  # frames per clip fingerprint
BITS = 64 * FRAMES
FLAT_STD = 0.25  # AC coefficients' std below this (luma units): a flat frame, hash 0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@functools.lru_cache(maxsize=32)
def dct_rows(n: int, k: int = 8) -> np.ndarray:
    """``[k, n]`` float32: the first ``k`` rows of the orthonormal DCT-II of size ``n``."""
    i = np.arange(n)
    rows = [np.cos(np.pi * (2 * i + 1) * u / (2 * n)) * np.sqrt((1 if u == 0 else 2) / n)
            for u in range(k)]
    return np.asarray(rows, dtype=np.float32)


def frame_hashes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``frames``: ``[T, H, W, 3]`` uint8 RGB → (hashes ``[T]`` uint64, colours ``[T, 3]``
    uint8)."""
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    if t == 0:
        return np.zeros(0, np.uint64), np.zeros((0, 3), np.uint8)
    # exact integer sums / pixel count in float32: the same values as the float32 mean of the
    # pixels (whose partial sums are exact integers below 2**24 pixels' worth), ~10× faster
    means = channel_sums(frames).astype(np.float32) / np.float32(h * w)  # [T, 3]
    colours = np.clip(np.rint(means), 0, 255).astype(np.uint8)  # [T, 3]
    luma = frames.astype(np.float32) @ _LUMA  # [T, H, W]
    # per-pixel means scale with the grid, so normalise by sqrt(H*W): sizes compare alike
    coef = dct_rows(h) @ luma @ dct_rows(w).T / np.sqrt(h * w)  # [T, 8, 8]
    ac = coef.reshape(t, 64)[:, 1:]  # [T, 63]
    bits = ac > np.median(ac, axis=1, keepdims=True)
    bits[ac.std(axis=1) < FLAT_STD] = False
    weights = (np.uint64(1) << np.arange(63, dtype=np.uint64))  # [63]
    hashes = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return hashes, colours


def positions(start: float, end: float, n: int = FRAMES) -> np.ndarray:
    """Times of the fingerprint frames of a clip spanning ``[start, end)``."""
    return start + (np.arange(n) + 0.5) * (end - start) / n


def clip_fingerprint(times: np.ndarray, hashes: np.ndarray, colours: np.ndarray,
                     start: float, end: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The fingerprint of the span ``[start, end)`` from per-frame hashes of a decoded video
    (``times`` ``[N]`` ascending, ``hashes`` ``[N]``, ``colours`` ``[N, 3]``): the frame
    nearest each position. None when the span holds no frame."""
    times = np.asarray(times, dtype=np.float64)
    lo, hi = np.searchsorted(times, [start - 1e-6, end - 1e-6])
    if hi <= lo:
        return None
    t = times[lo:hi]
    idx = lo + np.abs(t[None, :] - positions(start, end)[:, None]).argmin(axis=1)
    return hashes[idx].astype(np.uint64), colours[idx].astype(np.uint8)


def to_hex(fp: tuple[np.ndarray, np.ndarray]) -> dict[str, str]:
    """JSON form: ``{"hash": 64 hex digits, "colour": 24 hex digits}`` (big-endian words)."""
    h, c = fp
    return {"hash": h.astype(">u8").tobytes().hex(), "colour": c.astype(np.uint8).tobytes().hex()}


def from_hex(doc: dict[str, str] | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not doc or not doc.get("hash"):
        return None
    h = np.frombuffer(bytes.fromhex(doc["hash"]), dtype=">u8").astype(np.uint64)
    c = np.frombuffer(bytes.fromhex(doc["colour"]), dtype=np.uint8).reshape(-1, 3)
    if len(h) != FRAMES or len(c) != FRAMES:
        return None
    return h, c


FP_BYTES = 8 * FRAMES + 3 * FRAMES  # the ``fingerprint`` column: hashes (big-endian), colours


def to_bytes(fp: tuple[np.ndarray, np.ndarray]) -> bytes:
    """Column form: ``FP_BYTES`` bytes, the same bytes as :func:`to_hex` (hashes, colours)."""
    h, c = fp
    return h.astype(">u8").tobytes() + c.astype(np.uint8).tobytes()


def from_bytes(data: bytes | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not data or len(data) != FP_BYTES:
        return None
    h = np.frombuffer(data[: 8 * FRAMES], dtype=">u8").astype(np.uint64)
    return h, np.frombuffer(data[8 * FRAMES :], dtype=np.uint8).reshape(FRAMES, 3).copy()


def stack(fps: Sequence[tuple[np.ndarray, np.ndarray] | None]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes ``[N, F]`` uint64, colours ``[N, F, 3]`` uint8, valid ``[N]`` bool)."""
    n = len(fps)
    hashes = np.zeros((n, FRAMES), np.uint64)
    colours = np.zeros((n, FRAMES, 3), np.uint8)
    valid = np.zeros(n, bool)
    for i, fp in enumerate(fps):
        if fp is not None:
            hashes[i], colours[i], valid[i] = fp[0], fp[1], True
    return hashes, colours, valid


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between fingerprints, summed over frames: ``[..., F]`` → ``[...]``."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1).astype(np.int64)


def colour_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest per-channel mean colour difference over frames: ``[..., F, 3]`` → ``[...]``."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=(-2, -1))
