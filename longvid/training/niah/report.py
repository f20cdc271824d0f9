"""results.json -> an offline HTML heatmap (no scripts, no network) and a PNG (matplotlib, when
installed) or else an SVG of the same grid."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any


def _grid(results: dict[str, Any], metric: str) -> tuple[list[int], list[float], dict]:
    cells = results["cells"]
    frames = sorted({c["frames"] for c in cells})
    depths = sorted({c["depth"] for c in cells})
    value = {(c["frames"], c["depth"]): c[metric] for c in cells}
    return frames, depths, value


def _colour(v: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1)."""
    v = min(max(v, 0.0), 1.0)
    r = 220 if v < 0.5 else int(220 - (v - 0.5) * 2 * 180)
    g = int(60 + v * 2 * 160) if v < 0.5 else 200
    return f"rgb({r},{g},70)"


def write_html(results: dict[str, Any], out: Path) -> Path:
    """Heatmaps of both scores (rows: depth, columns: haystack frames), with multi-hop needles
    per-hop accuracy and all-hops heatmaps, and the cell table."""
    by_hop = results["summary"].get("by_hop") or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>NIAH</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:center}</style></head><body>",
        f"<h1>Needle in a haystack: {html.escape(str(results.get('model', '')))}</h1>",
        f"<p>{results['summary']['probes']} probes; accuracy exact "
        f"{results['summary']['exact']:.3f}, option {results['summary']['option']:.3f}; "
        f"chance {results['summary']['chance']:.2f}</p>",
    ]
    maps = [("exact", "teacher-forced answer"), ("option", "option likelihood")]
    if by_hop:
        parts.append("<h2>Multi-hop: accuracy per hop</h2><table><tr><th>question</th>")
        parts.append("<th>exact</th><th>option</th></tr>")
        for hop, acc in by_hop.items():
            label = f"hop {hop}" if hop.isdigit() else {"final": "final question"}.get(
                hop, "all hops correct"
            )
            parts.append(
                f"<tr><th>{label}</th><td style='background:{_colour(acc['exact'])}'>"
                f"{acc['exact']:.3f}</td><td style='background:{_colour(acc['option'])}'>"
                f"{acc['option']:.3f}</td></tr>"
            )
        parts.append("</table>")
        maps += [
            ("all_hops_exact", "all hops correct, teacher-forced"),
            ("all_hops_option", "all hops correct, option likelihood"),
        ]
    for metric, title in maps:
        frames, depths, value = _grid(results, metric)
        parts.append(f"<h2>Accuracy: {title}</h2><table><tr><th>depth \\ frames</th>")
        parts += [f"<th>{f}</th>" for f in frames] + ["</tr>"]
        for d in depths:
            parts.append(f"<tr><th>{d:.2f}</th>")
            for f in frames:
                v = value.get((f, d))
                if v is None:
                    parts.append("<td></td>")
                else:
                    parts.append(f"<td style='background:{_colour(v)}'>{v:.2f}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("<h2>Cells</h2><table><tr><th>frames</th><th>depth</th><th>probes</th>")
    parts.append("<th>exact</th><th>option</th><th>s / probe</th><th>peak MB</th></tr>")
    for c in results["cells"]:
        parts.append(
            f"<tr><td>{c['frames']}</td><td>{c['depth']:.2f}</td><td>{c['probes']}</td>"
            f"<td>{c['exact']:.3f}</td><td>{c['option']:.3f}</td>"
            f"<td>{c['seconds_per_probe']:.3f}</td><td>{c['peak_memory_mb']:.0f}</td></tr>"
        )
    parts.append("</table></body></html>")
    path = out / "niah.html"
    path.write_text("\n".join(parts))
    return path


def write_figure(results: dict[str, Any], out: Path, metric: str = "exact") -> Path:
    """niah.png with matplotlib, else niah.svg drawn by hand."""
    frames, depths, value = _grid(results, metric)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _write_svg(frames, depths, value, out / "niah.svg", metric)
    grid = [[value.get((f, d), float("nan")) for f in frames] for d in depths]
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(frames), 1 + 0.5 * len(depths)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(frames)), [str(f) for f in frames])
    ax.set_yticks(range(len(depths)), [f"{d:.2f}" for d in depths])
    ax.set_xlabel("haystack frames")
    ax.set_ylabel("needle depth")
    ax.set_title(f"NIAH accuracy ({metric})")
    fig.colorbar(im)
    path = out / "niah.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _write_svg(frames, depths, value, path: Path, metric: str) -> Path:
    cw, ch, left, top = 60, 28, 60, 40
    w, h = left + cw * len(frames) + 10, top + ch * len(depths) + 40
    s = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
        "font-family='sans-serif' font-size='11'>",
        f"<text x='{left}' y='20'>NIAH accuracy ({metric}); rows depth, columns frames</text>",
    ]
    for i, d in enumerate(depths):
        y = top + i * ch
        s.append(f"<text x='5' y='{y + 18}'>{d:.2f}</text>")
        for j, f in enumerate(frames):
            v = value.get((f, d))
            x = left + j * cw
            fill = "#eee" if v is None else _colour(v)
            label = "" if v is None else f"{v:.2f}"
            s.append(
                f"<rect x='{x}' y='{y}' width='{cw}' height='{ch}' fill='{fill}' stroke='#fff'/>"
            )
            s.append(f"<text x='{x + 14}' y='{y + 18}'>{label}</text>")
    for j, f in enumerate(frames):
        s.append(f"<text x='{left + j * cw + 8}' y='{top + len(depths) * ch + 16}'>{f}</text>")
    s.append("</svg>")
    path.write_text("\n".join(s))
    return path
