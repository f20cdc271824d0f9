"""Histograms, percentiles and counts in the JSON shape the report stores and the HTML draws."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def finite(values: Iterable[Any]) -> np.ndarray:
    """The values that are real numbers (None, NaN, inf and non-numbers left out), as float64."""
    out = []
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(x)
    return np.asarray(out, dtype=np.float64)


def _r(x: float) -> float:
    return round(float(x), 6)


def histogram(values: Iterable[Any], bins: int, percentiles: Iterable[float],
              *, unit: str = "", integer: bool = False) -> dict[str, Any]:
    """``{count, missing, mean, min, max, percentiles: {"p50": ...}, edges, counts, unit}``.

    ``edges`` has ``len(counts) + 1`` entries; the last bin includes its right edge (numpy's
    rule), so ``sum(counts) == count``. ``integer`` puts integers at bin centres (one bin per
    value when the range is small). Percentiles use linear interpolation.
    """
    raw = list(values)
    x = finite(raw)
    return _histogram(x, len(raw) - int(x.size), bins, percentiles, unit, integer)


def histogram_array(values: np.ndarray, bins: int, percentiles: Iterable[float],
                    *, unit: str = "", integer: bool = False) -> dict[str, Any]:
    """:func:`histogram` of a float numpy column (NaN = missing), without a Python object per
    value."""
    values = np.asarray(values, dtype=np.float64)
    x = values[np.isfinite(values)]
    return _histogram(x, int(values.size - x.size), bins, percentiles, unit, integer)


def _histogram(x: np.ndarray, missing: int, bins: int, percentiles: Iterable[float],
               unit: str, integer: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"count": int(x.size), "missing": missing, "unit": unit}
    if x.size == 0:
        return out
    lo, hi = float(x.min()), float(x.max())
    if integer and hi - lo + 1 <= bins:
        edges = np.arange(lo - 0.5, hi + 1.0, 1.0)
    elif lo == hi:
        edges = np.asarray([lo - 0.5, hi + 0.5])
    else:
        edges = np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(x, bins=edges)
    out.update(
        mean=_r(x.mean()),
        min=_r(lo),
        max=_r(hi),
        sum=_r(x.sum()),
        percentiles={_pname(p): _r(np.percentile(x, p)) for p in percentiles},
        edges=[float(e) for e in edges],  # unrounded: tiny ranges keep distinct edges
        counts=[int(c) for c in counts],
    )
    return out


def _pname(p: float) -> str:
    return f"p{int(p) if float(p).is_integer() else p}"


def ranked(counts: Mapping[str, int] | Counter, total: int | None = None) -> list[dict[str, Any]]:
    """``[{name, count, share}]`` by count (descending), then name."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    total = sum(counts.values()) if total is None else total
    return [{"name": str(k), "count": int(v), "share": _r(v / total) if total else 0.0}
            for k, v in items]


def hours(seconds: float) -> float:
    return round(float(seconds) / 3600.0, 6)
