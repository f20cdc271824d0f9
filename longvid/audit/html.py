"""The report as one self-contained HTML page: inline CSS, inline SVG charts, a few lines of
inline script (sortable tables), and no URL that leaves the file — it opens offline, from a
mail attachment or an S3 console, the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from longvid import __version__
from longvid.audit.svg import fmt, hbar_svg, histogram_svg, stacked_svg

CSS = """
:root { --ok: #1f7a3f; --bad: #b42318; --ink: #1d232b; --mute: #5b6570; --line: #dde2e7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 0; background: #f5f7f9; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .root { color: var(--mute); font-family: ui-monospace, monospace; word-break: break-all; }
.verdict { display: inline-block; margin-top: 10px; padding: 6px 14px; border-radius: 6px;
           font-weight: 700; color: #fff; font-size: 16px; }
.verdict.pass { background: var(--ok); } .verdict.fail { background: var(--bad); }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line);
      padding: 6px 28px; z-index: 2; }
nav a { margin-right: 14px; color: #2b5c94; text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1280px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 4px 18px 14px;
          margin: 16px 0; }
h2 { font-size: 18px; margin: 14px 0 8px; } h3 { font-size: 15px; margin: 14px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: #f0f3f6; cursor: pointer; user-select: none; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card .v { font-size: 20px; font-weight: 700; } .card .k { color: var(--mute); font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.samples { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0 12px; }
.sample { border: 1px solid var(--line); border-radius: 6px; padding: 6px; max-width: 420px;
          font-size: 12px; }
.sample .mono { font-family: ui-monospace, monospace; word-break: break-all; }
.sample .caption { margin-top: 4px; } .sample ul { margin: 2px 0; padding-left: 18px; }
.strip { display: flex; gap: 2px; overflow-x: auto; } .strip img { display: block; height: 72px; }
.pct { font-size: 12px; color: var(--mute); }
.empty, .note { color: var(--mute); font-style: italic; }
details summary { cursor: pointer; margin: 6px 0; }
.scroll { overflow-x: auto; }
footer { color: var(--mute); padding: 0 28px 30px; font-size: 12px; }
"""

# Click a header to sort its table (numbers numerically); a second click reverses.
SCRIPT = """
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0];
      if (!body) { return; }
      var col = Array.prototype.indexOf.call(th.parentNode.children, th);
      var asc = th.getAttribute("data-dir") !== "asc";
      th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", asc ? "asc" : "desc");
      var rows = Array.prototype.slice.call(body.rows);
      var val = function (r) {
        var cell = r.cells[col], t = cell ? (cell.getAttribute("data-v") || cell.textContent) : "";
        var n = parseFloat(t.replace(/,/g, ""));
        return isNaN(n) ? t.toLowerCase() : n;
      };
      rows.sort(function (a, b) {
        var x = val(a), y = val(b);
        if (x === y) { return 0; }
        return (x < y ? -1 : 1) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

SECTIONS = (("checks", "Checks"), ("totals", "Totals"), ("accounting", "Accounting"),
            ("gallery", "Gallery"), ("distributions", "Distributions"),
            ("duplicates", "Duplicates"), ("licences", "Licences"), ("run", "Run"), ("leakage", "Leakage"),
            ("compare", "Comparison"))


def _cell(v: Any, cls: str = "") -> str:
    if isinstance(v, bool):
        return f'<td class="{"ok" if v else "bad"}">{"yes" if v else "no"}</td>'
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f'<td class="num" data-v="{v}">{fmt(v)}</td>'
    if isinstance(v, list | dict):
        v = json.dumps(v, ensure_ascii=False)
    return f'<td class="{cls}">{escape("" if v is None else str(v))}</td>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, mono: Sequence[int] = (),
          num: Sequence[int] = ()) -> str:
    """A sortable table; ``mono`` columns use a monospace font (ids, paths)."""
    head = "".join(f'<th class="{"num" if i in num else ""}">{escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for r in rows:
        body.append("<tr>" + "".join(_cell(v, "mono" if i in mono else "")
                                     for i, v in enumerate(r)) + "</tr>")
    if not body:
        return '<p class="empty">none</p>'
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def some(values: Sequence[Any], n: int = 8) -> str:
    """The first ``n`` values, comma-separated, and how many more there are."""
    values = [str(v) for v in values]
    more = f" … and {len(values) - n} more" if len(values) > n else ""
    return ", ".join(values[:n]) + more


def cards(items: Sequence[tuple[str, Any]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{escape(v if isinstance(v, str) else fmt(v))}</div>'
        f'<div class="k">{escape(k)}</div></div>' for k, v in items) + "</div>"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} TB"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def checks_html(r: dict[str, Any]) -> str:
    rows = [(c["title"], "PASS" if c["passed"] else "FAIL", c["count"],
             ", ".join(f"{k} {v}" for k, v in c["reasons"].items()), c["what"])
            for c in r["checks"]]
    head = ["check", "verdict", "problems", "reasons", "what passing means"]
    body = [f'<tr><td>{escape(a)}</td><td class="{"ok" if v == "PASS" else "bad"}">{v}</td>'
            f'<td class="num">{n}</td><td>{escape(rs)}</td><td>{escape(w)}</td></tr>'
            for a, v, n, rs, w in rows]
    out = [f'<div class="scroll"><table class="sortable"><thead><tr>'
           f'{"".join(f"<th>{h}</th>" for h in head)}</tr></thead><tbody>{"".join(body)}'
           "</tbody></table></div>"]
    for c in r["checks"]:
        if c["passed"]:
            continue
        shown = len(c["problems"])
        more = f" (first {shown} of {c['count']})" if shown < c["count"] else ""
        out.append(f"<h3>{escape(c['title'])}: {c['count']} problem(s){more}</h3>")
        out.append(table(["shard", "key", "reason", "message"],
                         [(p.get("shard"), p.get("key"), p["reason"], p["message"])
                          for p in c["problems"]], mono=(0, 1)))
    return "".join(out)


def totals_html(r: dict[str, Any]) -> str:
    t = r["totals"]
    out = [cards([("samples", t["samples"]), ("hours of clips", t["hours"]),
                  ("shards", t["shards"]), ("shard bytes", human_bytes(t["bytes"])),
                  ("source videos", t["videos"]), ("source hours", t["source_hours"])])]
    out.append("<h3>Per source</h3>")
    out.append(table(
        ["source", "samples", "hours", "short", "short h", "long", "long h", "videos",
         "source h", "member bytes"],
        [(s, v["samples"], v["hours"], v["short"], v["short_hours"], v["long"], v["long_hours"],
          v["videos"], v["source_hours"], v["member_bytes"]) for s, v in t["by_source"].items()]))
    out.append("<h3>Per duration bucket</h3>")
    out.append(table(["bucket", "samples", "hours", "share of hours"],
                     [(b, v["samples"], v["hours"], v["share_of_hours"])
                      for b, v in t["by_bucket"].items()]))
    if t["by_source"]:
        out.append(stacked_svg(
            [(s, [("short h", v["short_hours"]), ("long h", v["long_hours"])])
             for s, v in t["by_source"].items()],
            colors={"short h": "#7fa7d6", "long h": "#2f5d8f"}))
    a = r.get("annotations") or {}
    if a:
        note = "" if a.get("annotated") else (
            '<p class="note">No annotation stages ran in this build: events, QA, embeddings '
            "and video–text scores are absent.</p>")
        out.append("<h3>Annotations present</h3>" + note)
        out.append(table(["annotation", "samples", "share"],
                         [(k, v, round(v / a["samples"], 4) if a["samples"] else 0)
                          for k, v in a["with"].items()]))
    return "".join(out)


def accounting_html(r: dict[str, Any]) -> str:
    acc = r["accounting"]
    out = []
    ing = acc["ingest"]
    out.append("<h3>Ingest: release rows → manifest records + rejects</h3>")
    if ing.get("available"):
        out.append(table(["source", "inputs", "accepted", "rejected", "manifest rows",
                          "rejects in table", "inputs = accepted + rejected"],
                         [(s, v["inputs"], v["accepted"], v["rejected"], v["rows"],
                           v["rejects_in_table"], v["inputs"] == v["accepted"] + v["rejected"])
                          for s, v in ing["by_source"].items()]))
    else:
        carried = ", ".join(f"{k} {v}" for k, v in ing.get("rejects_in_table", {}).items())
        out.append('<p class="note">The build read a manifest made elsewhere (no ingest/ under '
                   "the root); ingest rejects carried into rejects.parquet: "
                   f"{escape(carried or 'none')}.</p>")
    b = acc["build"]
    out.append("<h3>Build: manifest records → accepted + rejected</h3>")
    out.append(table(["source", "records", "accepted", "rejected", "lost", "doubled", "samples",
                      "sample rejects", "records = accepted + rejected"],
                     [(s, v["records"], v["accepted"], v["rejected"], v["lost"], v["doubled"],
                       v["samples"], v["sample_rejects"],
                       v["records"] == v["accepted"] + v["rejected"] and not v["lost"]
                       and not v["doubled"])
                      for s, v in b["by_source"].items()]))
    out.append(stacked_svg([(s, [("accepted", v["accepted"]), ("rejected", v["rejected"]),
                                 ("lost", v["lost"])]) for s, v in b["by_source"].items()],
                           colors={"accepted": "#3c9a5f", "rejected": "#c23b3b",
                                   "lost": "#222"}))
    rej = acc["rejects"]
    out.append(f"<h3>Rejects by stage and reason ({rej['total']})</h3>")
    if rej["by_stage"]:
        out.append(hbar_svg([{"name": k, "count": v} for k, v in rej["by_stage"].items()]))
    out.append(table(["stage", "reason", "count", "sources", "example ids", "example detail"],
                     [(x["stage"], x["reason"], x["count"],
                       ", ".join(f"{k} {v}" for k, v in x["sources"].items()),
                       ", ".join(str(e["record_id"] or e["locator"]) for e in x["examples"]),
                       (x["examples"][0]["detail"] if x["examples"] else ""))
                      for x in rej["by_reason"]], mono=(4,)))
    dv = acc["declared_vs_probed"]
    out.append(f"<h3>Declared vs probed metadata ({dv['mismatches']} disagreement(s))</h3>")
    out.append(table(["source", "videos", "with declared values", "duration", "fps", "width",
                      "height"],
                     [(s, c.get("videos", 0), c.get("with_declared", 0), c.get("duration", 0),
                       c.get("fps", 0), c.get("width", 0), c.get("height", 0))
                      for s, c in dv["by_source"].items()]))
    if dv["rows"]:
        out.append(table(["record", "source", "field", "declared", "probed", "probed − declared"],
                         [(x["record_id"], x["source"], x["field"], x["declared"], x["probed"],
                           x["difference"]) for x in dv["rows"]], mono=(0,)))
    if acc["summary_agreement"]:
        out.append("<h3>summary.json against the tables</h3>")
        out.append(table(["what", "summary.json", "tables", "agree"],
                         [(x["what"], x["summary"], x["tables"], x["ok"])
                          for x in acc["summary_agreement"]]))
    return "".join(out)


DIST_TITLES = (
    ("duration", "Duration, all samples"), ("duration_short", "Duration, short samples"),
    ("duration_long", "Duration, long samples"), ("short_side", "Resolution (short side)"),
    ("fps", "Frame rate"), ("caption_words", "Caption length"),
    ("events_per_long_sample", "Events per long sample"), ("qa_per_sample", "QA pairs per sample"),
    ("video_text_score", "Video–text score"), ("motion", "Motion"),
)


def _percentiles(h: dict[str, Any]) -> str:
    if not h.get("count"):
        return ""
    ps = " · ".join(f"{k} {fmt(v)}" for k, v in h["percentiles"].items())
    missing = f" · no value: {h['missing']}" if h.get("missing") else ""
    return (f'<div class="pct">n {h["count"]} · mean {fmt(h["mean"])} · {ps}{missing}</div>')


def distributions_html(r: dict[str, Any]) -> str:
    d = r["distributions"]
    figs = []
    for i, (name, title) in enumerate(DIST_TITLES):
        h = d.get(name) or {}
        body = histogram_svg(h, label=title, color=("#3b6ea8", "#3c9a5f", "#7d5ba6")[i % 3])
        if not h.get("count"):
            body = '<p class="empty">not in this corpus</p>'
        figs.append(f"<figure><figcaption>{escape(title)}</figcaption>{body}"
                    f"{_percentiles(h)}</figure>")
    for name, title, unit in (("resolution", "Resolutions", "samples"),
                              ("fps_values", "Frame rates", "samples"),
                              ("qa_by_task", "QA pairs by task type", "pairs")):
        items = d.get(name) or []
        body = hbar_svg(items, unit=unit) if items else '<p class="empty">not in this corpus</p>'
        figs.append(f"<figure><figcaption>{escape(title)}</figcaption>{body}</figure>")
    return f'<div class="grid">{"".join(figs)}</div>'


def duplicates_html(r: dict[str, Any]) -> str:
    d = r["duplicates"]
    sig, ch = d["signals"], d["checked"]
    out = [cards([("duplicate groups", d["groups"]), ("duplicates", d["duplicates"]),
                  ("samples checked", ch["samples"]), ("with embeddings", ch["embedded"]),
                  ("with fingerprints", ch["fingerprinted"]), ("k-means clusters", ch["clusters"])])]
    on = [name for name, v in (("exact (equal clip bytes)", sig["exact"]),
                               (f"embedding cosine ≥ {fmt(sig['near_cosine'])}",
                                sig["near_cosine"] is not None),
                               (f"fingerprint ≤ {sig['fingerprint_max_bits']} of 256 bits",
                                sig["fingerprint_max_bits"] is not None)) if v]
    out.append(f"<p>Signals: {escape(', '.join(on) or 'none')}. In each group the sample whose "
               "key sorts first is kept; every other one resembles it by the signals shown.</p>")
    for note in d.get("notes", []):
        out.append(f'<p class="note">{escape(note)}</p>')
    if d.get("by_signal"):
        out.append(table(["signal", "duplicates"], sorted(d["by_signal"].items())))
    out.append(f"<h3>Groups (largest first, {len(d['list'])} of {d['groups']})</h3>")
    out.append(table(["kept", "kept record", "duplicates", "signals", "members (similarity)"],
                     [(g["kept"], g["kept_record"], len(g["members"]), "+".join(g["signals"]),
                       some([f"{m['key']} ({m['signal']} {fmt(m['similarity'])})"
                             for m in g["members"]], 4)) for g in d["list"]], mono=(0, 4)))
    rb = d.get("removed_by_build") or []
    out.append(f"<h3>Removed by the build as duplicates ({sum(x.get('count', len(x['removed'])) for x in rb)})"
               "</h3>")
    out.append(table(["kind", "kept", "removed"],
                     [(x["kind"], x["kept"], some(x["removed"])) for x in rb], mono=(1, 2)))
    return "".join(out)


def licences_html(r: dict[str, Any]) -> str:
    lic = r["licences"]
    out = [hbar_svg([{"name": x["licence"], "share": round(100 * x["share_of_hours"], 2)}
                     for x in lic["by_licence"]], value="share", unit="% of hours")]
    out.append(table(["licence", "samples", "hours", "share of hours", "sources"],
                     [(x["licence"], x["samples"], x["hours"], x["share_of_hours"],
                       ", ".join(x["sources"])) for x in lic["by_licence"]]))
    out.append("<h3>Per source</h3>")
    out.append(table(["source", "licence", "samples", "hours", "share of hours"],
                     [(x["source"], x["licence"], x["samples"], x["hours"], x["share_of_hours"])
                      for x in lic["by_source"]]))
    return "".join(out)


def run_html(r: dict[str, Any]) -> str:
    run = r["run"]
    out = []
    if run.get("available"):
        units = run.get("units") or {}
        out.append(cards([("build wall time (s)", run.get("wall_seconds")),
                          ("source hours", run.get("source_hours")),
                          ("source h per wall h", run.get("source_hours_per_hour")),
                          ("unit task seconds", run.get("unit_task_seconds")),
                          ("units committed", f"{units.get('committed', '?')}/"
                                              f"{units.get('total', '?')}"),
                          ("complete", "yes" if run.get("complete") else "no")]))
        out.append("<h3>Stages (task seconds summed over the unit tasks)</h3>")
        out.append(hbar_svg([{"name": s["stage"], "count": s["task_seconds"]}
                             for s in run["stages"]], unit="s"))
        out.append(table(["stage", "task seconds", "source hours per task hour"],
                         [(s["stage"], s["task_seconds"], s["source_hours_per_task_hour"])
                          for s in run["stages"]]))
        if run.get("driver_seconds"):
            out.append("<h3>Driver</h3>")
            out.append(table(["step", "seconds"], list(run["driver_seconds"].items())))
        if run.get("ingest"):
            out.append("<h3>Ingest</h3>")
            out.append(table(["source", "inputs", "seconds", "inputs per second"],
                             [(x["source"], x["inputs"], x["seconds"], x["inputs_per_second"])
                              for x in run["ingest"]]))
    else:
        out.append('<p class="note">No summary.json under the root.</p>')
    a = run.get("audit") or {}
    out.append("<h3>This audit</h3>")
    out.append(table(["measure", "value"], [(k, v) for k, v in a.items()]))
    return "".join(out)


def leakage_html(r: dict[str, Any]) -> str:
    lk = r["leakage"]
    ids = lk["ids"]
    out = [f'<p>Against <span class="mono">{escape(lk["against"])}</span> '
           f"({escape(lk['kind'])}): {ids['eval_items']} evaluation item(s).</p>"]
    out.append(cards([("items found in the corpus", ids["matched_items"]),
                      ("samples from them", ids["samples"]), ("hours", ids["hours"])]))
    out.append("<h3>Shared source video ids</h3>")
    out.append(table(["evaluation item", "id", "where", "records", "samples", "hours", "keys"],
                     [(m["eval"], m["id"], m["where"], ", ".join(m["records"]), m["samples"],
                       m["hours"], some(m["keys"])) for m in ids["matches"]],
                     mono=(0, 1, 6)))
    emb = lk.get("embeddings")
    if emb is not None:
        out.append("<h3>Near-duplicate embeddings</h3>")
        if not emb.get("checked"):
            out.append(f'<p class="note">not checked: {escape(emb.get("skipped", ""))}</p>')
        else:
            out.append(f"<p>{emb['samples']} sample(s) with cosine ≥ {fmt(emb['threshold'])} "
                       f"to one of {emb['videos']} evaluation video(s).</p>")
            out.append(table(["evaluation video", "windows", "best sample", "best cosine",
                              "samples ≥ threshold"],
                             [(x["video"], x["windows"], x["best_key"], x["best_cosine"],
                               x["samples"]) for x in emb["results"]], mono=(0, 2)))
            if emb.get("failed"):
                out.append(table(["video", "error"],
                                 [(f["video"], f["error"]) for f in emb["failed"]], mono=(0,)))
    fp = lk.get("fingerprints")
    if fp is not None:
        out.append("<h3>Copies by perceptual fingerprint</h3>")
        if not fp.get("checked"):
            out.append(f'<p class="note">not checked: {escape(fp.get("skipped", ""))}</p>')
        else:
            out.append(f"<p>{fp['samples']} sample(s) whose fingerprint frames all match frames "
                       f"of one of {fp['videos']} evaluation video(s) (at most "
                       f"{fp['max_bits']} of 256 bits in all).</p>")
            out.append(table(["evaluation video", "frames", "samples", "closest (bits)"],
                             [(x["video"], x["frames"], x["samples"],
                               some([f"{m['key']} ({m['bits']})" for m in x["matches"]], 3))
                              for x in fp["results"]], mono=(0, 3)))
            if fp.get("failed"):
                out.append(table(["video", "error"],
                                 [(f["video"], f["error"]) for f in fp["failed"]], mono=(0,)))
    return "".join(out)


def compare_html(r: dict[str, Any]) -> str:
    c = r["compare"]
    out = [f'<p>A = this corpus, B = <span class="mono">{escape(str(c["b"]))}</span>; '
           "Δ = A − B.</p>"]
    out.append(table(["", "A", "B", "Δ"], [(x["what"], x["a"], x["b"], x["delta"])
                                           for x in c["totals"]]))
    for title, key, label in (("Per source", "by_source", "source"),
                              ("Per bucket", "by_bucket", "bucket")):
        out.append(f"<h3>{title}</h3>")
        out.append(table([label, "samples A", "samples B", "Δ samples", "hours A", "hours B",
                          "Δ hours"],
                         [(x[label], x["samples"]["a"], x["samples"]["b"], x["samples"]["delta"],
                           x["hours"]["a"], x["hours"]["b"], x["hours"]["delta"])
                          for x in c[key]]))
    out.append("<h3>Reject reasons</h3>")
    out.append(table(["stage:reason", "A", "B", "Δ"],
                     [(x["reason"], x["a"], x["b"], x["delta"]) for x in c["rejects"]]))
    if "keys" in c:
        k = c["keys"]
        out.append(f"<h3>Sample keys</h3><p>only in A: {k['only_in_a']} · only in B: "
                   f"{k['only_in_b']} · in both: {k['in_both']}</p>")
        out.append(table(["only in A (examples)", "only in B (examples)"],
                         [(some(k["examples_only_in_a"]), some(k["examples_only_in_b"]))],
                         mono=(0, 1)))
    return "".join(out)


def _strip(frames: list[str], alt: str) -> str:
    if not frames:
        return '<div class="strip empty">no frames (the clip could not be read)</div>'
    return '<div class="strip">' + "".join(
        f'<img src="{escape(f)}" alt="{escape(alt)} frame {i}">' for i, f in enumerate(frames)
    ) + "</div>"


def _card(e: dict[str, Any]) -> str:
    events = "".join(f"<li>{fmt(x['start'])}–{fmt(x['end'])} s: {escape(str(x['text']))}</li>"
                     for x in e["events"])
    qa = "".join(f"<li><b>Q</b> {escape(str(x['question']))} <b>A</b> "
                 f"{escape(str(x['answer']))}</li>" for x in e["qa"])
    return (f'<div class="sample" data-key="{escape(e["key"])}">{_strip(e["frames"], e["key"])}'
            f'<div class="mono">{escape(e["key"])}</div>'
            f"<div>{escape(str(e['record_id']))} · {fmt(e['duration'])} s</div>"
            f'<div class="caption">{escape(str(e["caption"] or "(no caption)"))}</div>'
            + (f"<details><summary>{len(e['events'])} event(s)</summary><ul>{events}</ul>"
               "</details>" if events else "")
            + (f"<details><summary>{len(e['qa'])} QA pair(s)</summary><ul>{qa}</ul></details>"
               if qa else "")
            + "</div>")


def gallery_html(r: dict[str, Any]) -> str:
    g = r["gallery"]
    out = [f"<p>A seeded pick (seed {g['seed']}) of {g['per_group']} sample(s) per source and "
           "duration bucket; frames at the centres of equal parts of each clip.</p>"]
    for grp in g["groups"]:
        out.append(f'<h3 class="gallery-group" data-source="{escape(grp["source"])}">'
                   f"{escape(grp['source'])} · {escape(grp['bucket'])}</h3>")
        out.append('<div class="samples">' + "".join(_card(e) for e in grp["samples"])
                   + "</div>")
    if g["duplicates"]:
        out.append("<h3>Duplicate groups side by side</h3>")
        for d in g["duplicates"]:
            out.append('<div class="samples">' + "".join(
                f'<div class="sample">{_strip(x["frames"], x["key"])}'
                f'<div class="mono">{escape(x["key"])}</div><div>'
                + ("kept" if x["similarity"] is None
                   else f"{escape(x['signal'])} · similarity {fmt(x['similarity'])}")
                + "</div></div>" for x in d["samples"]) + "</div>")
    for title, key in (("Longest samples", "longest"), ("Shortest samples", "shortest")):
        if g[key]:
            out.append(f"<h3>{title}</h3>")
            out.append('<div class="samples">' + "".join(_card(e) for e in g[key]) + "</div>")
    if g["rejects"]:
        out.append("<h3>Rejects: an example per reason</h3>")
        out.append(table(["reason", "stage", "record", "locator", "detail"],
                         [(x["reason"], x["stage"], x["record_id"], x["locator"], x["detail"])
                          for x in g["rejects"]], mono=(2, 3)))
    return "".join(out)


def render_html(r: dict[str, Any]) -> str:
    """The page for a report dict from :func:`longvid.audit.report.build_report`."""
    n_failed = len(r["failed_checks"])
    n_checks = len(r["checks"])
    verdict = (f"PASS — all {n_checks} checks passed" if r["verdict"] == "pass"
               else f"FAIL — {n_failed} of {n_checks} checks failed: "
                    f"{', '.join(r['failed_checks'])}")
    sections = {
        "checks": checks_html, "totals": totals_html, "accounting": accounting_html,
        "gallery": gallery_html,
        "distributions": distributions_html, "duplicates": duplicates_html,
        "licences": licences_html, "run": run_html, "leakage": leakage_html,
        "compare": compare_html,
    }
    present = [(a, t) for a, t in SECTIONS
               if a not in ("leakage", "compare", "gallery") or a in r]
    nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in present)
    body = "".join(_section(a, t, sections[a](r)) for a, t in present)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>longvid audit: {escape(r['verdict'].upper())} — {escape(r['root'])}</title>"
        f"<style>{CSS}</style></head><body>"
        f'<header><h1>longvid audit</h1><div class="root">{escape(r["root"])}</div>'
        f'<div class="verdict {r["verdict"]}" id="verdict">{escape(verdict)}</div></header>'
        f"<nav>{nav}</nav><main>{body}</main>"
        f"<footer>longvid {escape(__version__)} · report format {escape(r['format'])} · the same "
        "figures are in report.json next to this file</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
