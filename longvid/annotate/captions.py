"""Source captions: a sample's own texts as captions, with their kind and origin kept.

The segment stage has already re-timed every text of the release to the sample (0 = the sample's
start; a text running past either end is clipped and marked ``clipped``; a text without times
applies to the whole video), and the cut stage has chosen the main caption (``KEY.txt``). Here the
texts become clean caption records; model captions are added to the same list later, with
``origin`` ``model:<name>``.

A caption is a plain dict (it goes into ``KEY.json`` as is)::

    {"start": 1.5 | None, "end": 4.0 | None, "text": "...", "kind": "narration",
     "origin": "narration_pass_1", "clipped": False}

plus ``"scope": "video"`` on a text about the whole video (video-level context: never an event,
never a sub-clip's caption; see :mod:`longvid.pipelines.captions`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def clean_text(text: Any) -> str:
    """Collapse whitespace; a non-string (a NaN that slipped through) is no text."""
    if not isinstance(text, str):
        return ""
    return " ".join(text.split())


def source_captions(texts: Iterable[dict[str, Any]], duration: float) -> list[dict[str, Any]]:
    """Re-timed texts → caption records, in time order (whole-video texts first).

    Empty texts are dropped, times are clamped to ``[0, duration]``, and an exact repeat of an
    earlier caption (same text, kind, origin and times) is kept once.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for t in texts:
        text = clean_text(t.get("text"))
        if not text:
            continue
        start, end = _clamp(t.get("start"), duration), _clamp(t.get("end"), duration)
        cap = {
            "start": start,
            "end": end,
            "text": text,
            "kind": str(t.get("kind") or "caption"),
            "origin": str(t.get("origin") or ""),
            "clipped": bool(t.get("clipped", False)),
        }
        if t.get("scope") == "video":
            cap["scope"] = "video"  # about the whole video: context, never an event
        ident = (cap["start"], cap["end"], text, cap["kind"], cap["origin"])
        if ident in seen:
            continue
        seen.add(ident)
        out.append(cap)
    out.sort(key=lambda c: (-1.0 if c["start"] is None else c["start"]))
    return out


def _clamp(value: Any, duration: float) -> float | None:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(min(max(float(value), 0.0), duration), 6)
