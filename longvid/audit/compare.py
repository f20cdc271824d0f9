"""``longvid audit A --compare B``: what changed from build B (the baseline) to build A.

B is another corpus root (its tables are read; its shards are not checked) or the
``report.json`` of an earlier audit. Deltas are A − B: counts, hours and bytes overall, per
source and per bucket, and reject reasons; with two roots also which sample keys came and went.
"""

from __future__ import annotations

import json
from typing import Any

from longvid import storage
from longvid.audit.corpus import Corpus, load_corpus
from longvid.audit.report import REPORT_FORMAT, totals
from longvid.audit.scan import key_difference, key_overlap
from longvid.errors import FormatError

TOTAL_FIELDS = ("samples", "hours", "shards", "bytes", "videos", "source_hours")
GROUP_FIELDS = ("samples", "hours")


def figures(corpus: Corpus) -> dict[str, Any]:
    """What a comparison needs from one corpus (tables only)."""
    reasons: dict[str, int] = {}
    for r in corpus.rejects:
        name = f"{r.get('stage')}:{r.get('reason')}"
        reasons[name] = reasons.get(name, 0) + 1
    return {"root": corpus.root, "totals": totals(corpus), "rejects": reasons,
            "keys": corpus.scan.keys}


def figures_from_report(uri: str, doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("format") != REPORT_FORMAT or "totals" not in doc:
        raise FormatError(f"{uri}: not a longvid audit report.json ({REPORT_FORMAT})")
    reasons = {f"{x['stage']}:{x['reason']}": int(x["count"])
               for x in doc.get("accounting", {}).get("rejects", {}).get("by_reason", [])}
    return {"root": doc.get("root", uri), "totals": doc["totals"], "rejects": reasons,
            "keys": None}


def load_baseline(uri: str) -> dict[str, Any]:
    """Figures of B: a report.json file, or a corpus root."""
    if uri.endswith(".json") and not storage.exists(storage.join(uri, "index.json")):
        try:
            doc = json.loads(storage.read_bytes(uri))
        except ValueError as exc:
            raise FormatError(f"{uri}: not JSON: {exc}") from None
        return figures_from_report(uri, doc)
    return figures(load_corpus(uri))


def _delta(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    d = a - b
    return round(d, 6) if isinstance(d, float) else d


def _rows(a: dict[str, Any], b: dict[str, Any], fields: tuple[str, ...], label: str
          ) -> list[dict[str, Any]]:
    out = []
    for name in sorted(set(a) | set(b)):
        ra, rb = a.get(name, {}), b.get(name, {})
        row: dict[str, Any] = {label: name}
        for f in fields:
            va, vb = ra.get(f, 0), rb.get(f, 0)
            row[f] = {"a": va, "b": vb, "delta": _delta(va, vb)}
        out.append(row)
    return out


def compare(a: dict[str, Any], b: dict[str, Any], examples: int = 10) -> dict[str, Any]:
    """The changes from ``b`` to ``a`` (both from :func:`figures` / :func:`load_baseline`)."""
    ta, tb = a["totals"], b["totals"]
    out: dict[str, Any] = {
        "a": a["root"],
        "b": b["root"],
        "totals": [{"what": f, "a": ta.get(f), "b": tb.get(f),
                    "delta": _delta(ta.get(f), tb.get(f))} for f in TOTAL_FIELDS],
        "by_source": _rows(ta.get("by_source", {}), tb.get("by_source", {}), GROUP_FIELDS,
                           "source"),
        "by_bucket": _rows(ta.get("by_bucket", {}), tb.get("by_bucket", {}), GROUP_FIELDS,
                           "bucket"),
        "rejects": [{"reason": r, "a": a["rejects"].get(r, 0), "b": b["rejects"].get(r, 0),
                     "delta": a["rejects"].get(r, 0) - b["rejects"].get(r, 0)}
                    for r in sorted(set(a["rejects"]) | set(b["rejects"]))],
    }
    if a.get("keys") is not None and b.get("keys") is not None:
        # Arrow set operations on the key columns: no Python set of every key
        n_a, only_a = key_difference(a["keys"], b["keys"], examples)
        n_b, only_b = key_difference(b["keys"], a["keys"], examples)
        out["keys"] = {"only_in_a": n_a, "only_in_b": n_b,
                       "in_both": key_overlap(a["keys"], b["keys"]),
                       "examples_only_in_a": only_a, "examples_only_in_b": only_b}
    out["changed"] = any(r["delta"] for r in out["totals"] if r["delta"]) or any(
        r["delta"] for r in out["rejects"]) or bool(out.get("keys", {}).get("only_in_a")) or bool(
        out.get("keys", {}).get("only_in_b"))
    return out
