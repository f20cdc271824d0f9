"""Inline SVG charts drawn from the report's JSON figures (no plotting library, no external
resources: the page stays one self-contained file)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

PALETTE = ("#3b6ea8", "#d9822b", "#3c9a5f", "#c23b3b", "#7d5ba6", "#8c6d46", "#d65d9a",
           "#6b7b8c", "#b8a22d", "#2e9aa6")
FONT = 'font-family="system-ui, sans-serif"'


def fmt(x: Any, digits: int = 3) -> str:
    """Short human number: integers as is, floats with ``digits`` significant decimals."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    x = float(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits}g}"
    s = f"{x:,.{digits}f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    import math

    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def histogram_svg(h: dict[str, Any], *, width: int = 460, height: int = 190,
                  color: str = PALETTE[0], label: str = "") -> str:
    """Bars of ``h`` (a :func:`longvid.audit.stats.histogram` dict), with axes and a tooltip
    per bar. An empty histogram gives a short note instead of a chart."""
    if not h.get("count"):
        return '<p class="empty">no values</p>'
    edges, counts = h["edges"], h["counts"]
    left, right, top, bottom = 44, 10, 10, 34
    pw, ph = width - left - right, height - top - bottom
    lo, hi = edges[0], edges[-1]
    cmax = max(counts) or 1
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + (v - lo) / span * pw

    def y(c: float) -> float:
        return top + ph - c / cmax * ph

    parts = [f'<svg role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
             f"<title>{escape(label or 'histogram')}</title>"]
    for c in _nice_ticks(0, cmax, 4):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(c):.1f}" y2="{y(c):.1f}" '
                     'stroke="#e3e6ea"/>')
        parts.append(f'<text x="{left - 4}" y="{y(c) + 4:.1f}" text-anchor="end" '
                     f'fill="#555">{fmt(int(c) if float(c).is_integer() else c)}</text>')
    for a, b, c in zip(edges, edges[1:], counts, strict=False):
        if c == 0:
            continue
        x0, x1 = x(a), x(b)
        w = max(1.0, x1 - x0 - 1)
        parts.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{y(c):.1f}" width="{w:.1f}" '
            f'height="{top + ph - y(c):.1f}" fill="{color}"><title>{fmt(a)} – {fmt(b)} '
            f'{escape(h.get("unit", ""))}: {c}</title></rect>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" '
                 'stroke="#333"/>')
    for t in _nice_ticks(lo, hi, 5):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top + ph}" '
                     f'y2="{top + ph + 4}" stroke="#333"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 16}" text-anchor="middle" '
                     f'fill="#333">{fmt(t)}</text>')
    unit = h.get("unit") or ""
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 3}" text-anchor="middle" '
                 f'fill="#333">{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_svg(items: Sequence[dict[str, Any]], *, value: str = "count", name: str = "name",
             width: int = 460, bar_h: int = 18, color: str | None = None,
             unit: str = "", max_items: int = 25) -> str:
    """Horizontal bars, one per item (``item[name]``: ``item[value]``), largest first as given."""
    items = list(items)[:max_items]
    if not items:
        return '<p class="empty">nothing</p>'
    label_w = min(220, 12 + 7 * max(len(str(i[name])) for i in items))
    pw = width - label_w - 70
    vmax = max(float(i[value] or 0) for i in items) or 1.0
    height = len(items) * (bar_h + 4) + 4
    parts = [f'<svg role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
             "<title>bar chart</title>"]
    for k, it in enumerate(items):
        yy = 4 + k * (bar_h + 4)
        v = float(it[value] or 0)
        w = v / vmax * pw
        c = color or PALETTE[k % len(PALETTE)]
        label = str(it[name])
        short = label if len(label) <= 30 else label[:29] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{yy + bar_h - 5}" text-anchor="end" '
                     f'fill="#333">{escape(short)}<title>{escape(label)}</title></text>')
        parts.append(f'<rect x="{label_w}" y="{yy}" width="{max(w, 1):.1f}" height="{bar_h}" '
                     f'fill="{c}"><title>{escape(label)}: {fmt(it[value])} {escape(unit)}'
                     '</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{yy + bar_h - 5}" fill="#333">'
                     f"{fmt(it[value])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def stacked_svg(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, width: int = 560,
                bar_h: int = 20, colors: dict[str, str] | None = None) -> str:
    """One horizontal stacked bar per row: ``(label, [(part, value), ...])``, scaled to the
    largest row total, with a legend."""
    if not rows:
        return '<p class="empty">nothing</p>'
    colors = colors or {}
    parts_names = list(dict.fromkeys(p for _, ps in rows for p, _ in ps))
    cmap = {p: colors.get(p, PALETTE[i % len(PALETTE)]) for i, p in enumerate(parts_names)}
    label_w = min(160, 12 + 7 * max(len(r[0]) for r in rows))
    pw = width - label_w - 60
    vmax = max(sum(v for _, v in ps) for _, ps in rows) or 1.0
    height = len(rows) * (bar_h + 4) + 28
    out = [f'<svg role="img" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
           "<title>stacked bars</title>"]
    for k, (label, ps) in enumerate(rows):
        yy = 4 + k * (bar_h + 4)
        out.append(f'<text x="{label_w - 6}" y="{yy + bar_h - 6}" text-anchor="end" '
                   f'fill="#333">{escape(label)}</text>')
        xx = float(label_w)
        for p, v in ps:
            if v <= 0:
                continue
            w = v / vmax * pw
            out.append(f'<rect x="{xx:.1f}" y="{yy}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{cmap[p]}"><title>{escape(label)} {escape(p)}: {fmt(v)}'
                       "</title></rect>")
            xx += w
        out.append(f'<text x="{xx + 4:.1f}" y="{yy + bar_h - 6}" fill="#333">'
                   f"{fmt(sum(v for _, v in ps))}</text>")
    ly = len(rows) * (bar_h + 4) + 14
    lx = float(label_w)
    for p in parts_names:
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{cmap[p]}"/>')
        out.append(f'<text x="{lx + 14:.1f}" y="{ly}" fill="#333">{escape(p)}</text>')
        lx += 24 + 7 * len(p)
    out.append("</svg>")
    return "".join(out)
