"""Read-only column views over memory-mapped numpy arrays (the catalog cache's files).

A view holds only the mapped arrays and, for coded columns, a small dictionary of values, so a
10M-row column costs no Python object per row; pages are read from the file when touched and
shared by every process that maps the same file (DataLoader workers, the ranks of a node).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

ITER_CHUNK = 65_536  # rows decoded at a time when a whole column is iterated


def _is_index(i: Any) -> bool:
    return isinstance(i, int | np.integer)


class StringColumn:
    """UTF-8 strings as ``offsets`` (int64 [N+1]) into ``data`` (uint8), with an optional
    validity mask (bool [N]; False = null). ``col[i]`` is a str (or None); ``col[idx]`` with an
    index array or slice is an object array."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray, valid: np.ndarray | None = None):
        self.offsets = offsets
        self.data = data
        self.valid = valid

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _one(self, i: int) -> str | None:
        if self.valid is not None and not self.valid[i]:
            return None
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.data[a:b].tobytes().decode("utf-8")

    def __getitem__(self, i: Any) -> Any:
        if _is_index(i):
            n = len(self)
            i = int(i) + n if i < 0 else int(i)
            if not 0 <= i < n:
                raise IndexError(f"row {i} out of range [0, {n})")
            return self._one(i)
        idx = np.arange(len(self))[i] if isinstance(i, slice) else np.asarray(i)
        out = np.empty(len(idx), dtype=object)
        for j, r in enumerate(idx.tolist()):
            out[j] = self._one(r)
        return out

    def __iter__(self) -> Iterator[str | None]:
        for start in range(0, len(self), ITER_CHUNK):
            stop = min(start + ITER_CHUNK, len(self))
            base = int(self.offsets[start])
            ends = self.offsets[start + 1 : stop + 1] - base
            blob = self.data[base : int(self.offsets[stop])].tobytes()
            prev = 0
            for j, end in enumerate(ends.tolist()):
                if self.valid is not None and not self.valid[start + j]:
                    yield None
                else:
                    yield blob[prev:end].decode("utf-8")
                prev = end

    def tolist(self) -> list[str | None]:
        return list(self)


class CodedColumn:
    """Values from a small dictionary: ``codes`` (small ints [N]) index ``values``."""

    def __init__(self, codes: np.ndarray, values: Iterable[str | None]):
        self.codes = codes
        self.values = tuple(values)
        self._lookup = np.array(self.values + (None,), dtype=object)[:-1]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: Any) -> Any:
        if _is_index(i):
            return self.values[int(self.codes[i])]
        return self._lookup[np.asarray(self.codes[i], dtype=np.int64)]

    def __iter__(self) -> Iterator[str | None]:
        for start in range(0, len(self), ITER_CHUNK):
            yield from self._lookup[self.codes[start : start + ITER_CHUNK].astype(np.int64)]

    def tolist(self) -> list[str | None]:
        return list(self)

    def isin(self, wanted: Iterable[str | None]) -> np.ndarray:
        """bool [N]: whether each row's value is one of ``wanted`` (compares codes only)."""
        want = set(wanted)
        codes = [c for c, v in enumerate(self.values) if v in want]
        return np.isin(self.codes, np.array(codes, dtype=self.codes.dtype))
