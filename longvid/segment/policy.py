"""Segmentation: (record, measured duration, shot boundaries, policy) → sample spans.

Pure functions, no I/O. Every sample is an exact span ``[start, end)`` in seconds of the source
video, a bucket (``short`` or ``long``), how it was made (``origin``), and the texts that fall
inside it re-timed relative to its start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from longvid.segment.config import SegmentPolicy
from longvid.stages.work import SampleSpec

EPS = 1e-6


@dataclass
class SpanIssue:
    """A release span that could not become a sample (becomes a sample-level reject)."""

    span_id: str
    reason: str  # "span_out_of_range" | "bad_span"
    detail: str


@dataclass
class SegmentResult:
    samples: list[SampleSpec]
    issues: list[SpanIssue]


def shot_intervals(duration: float, cuts: Sequence[float]) -> list[tuple[float, float]]:
    """Cut times → consecutive ``(start, end)`` shots covering ``[0, duration]``."""
    points = [0.0] + sorted(c for c in cuts if EPS < c < duration - EPS) + [duration]
    return [(a, b) for a, b in zip(points, points[1:], strict=False) if b - a > EPS]


def split_even(start: float, end: float, piece: float, min_len: float) -> list[tuple[float, float]]:
    """Split ``[start, end]`` into equal pieces of about ``piece`` s, none shorter than min_len."""
    length = end - start
    n = max(1, round(length / piece))
    while n > 1 and length / n < min_len:
        n -= 1
    step = length / n
    edges = [start + i * step for i in range(n)] + [end]
    return list(zip(edges, edges[1:], strict=False))


def short_clips(
    shots: list[tuple[float, float]], p: SegmentPolicy
) -> list[tuple[float, float, str]]:
    """One clip per shot within [short_min_s, short_max_s]; longer shots are split at a fixed
    stride (the fallback when detection finds no cuts); shorter ones are dropped."""
    out: list[tuple[float, float, str]] = []
    for a, b in shots:
        length = b - a
        if length < p.short_min_s - EPS:
            continue
        if length <= p.short_max_s + EPS:
            out.append((a, b, "shot"))
            continue
        piece = min(p.stride_s, p.short_max_s)
        for s, e in split_even(a, b, piece, p.short_min_s):
            # rounding can leave a piece a hair over the limit; it is still a stride piece
            out.append((s, min(e, s + p.short_max_s), "stride"))
    return out


def long_chunks(
    start: float, end: float, boundaries: Sequence[float], p: SegmentPolicy
) -> list[tuple[float, float]]:
    """``[start, end]`` as long samples: whole when it fits, else ``n = ceil(len / long_max_s)``
    even chunks whose split points move to the nearest boundary within ``snap_s`` when that
    keeps every chunk within [long_min_s, long_max_s]. Nothing when shorter than long_min_s."""
    length = end - start
    if length < p.long_min_s - EPS:
        return []
    if length <= p.long_max_s + EPS:
        return [(start, end)]
    n = math.ceil(length / p.long_max_s - EPS)
    inner = sorted(b for b in boundaries if start + EPS < b < end - EPS)
    edges = [start]
    for i in range(1, n):
        ideal = start + i * length / n
        best = ideal
        near = [b for b in inner if abs(b - ideal) <= p.snap_s]
        if near:
            cand = min(near, key=lambda b: (abs(b - ideal), b))
            if p.long_min_s - EPS <= cand - edges[-1] <= p.long_max_s + EPS:
                best = cand
        edges.append(best)
    edges.append(end)
    chunks = list(zip(edges, edges[1:], strict=False))
    # a snapped edge may leave the last chunk too long: re-split it evenly
    out: list[tuple[float, float]] = []
    for a, b in chunks:
        if b - a > p.long_max_s + EPS:
            m = math.ceil((b - a) / p.long_max_s - EPS)
            out.extend(split_even(a, b, (b - a) / m, 0.0))
        else:
            out.append((a, b))
    return [(a, b) for a, b in out if b - a >= p.long_min_s - EPS]


def retime_texts(texts: Sequence[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """Texts that fall inside ``[start, end)``, re-timed so 0 is the sample start.

    A point text (``end`` null) is kept when ``start <= t < end``. A segment overlapping the span
    is clipped to it (``clipped: true``). A text without a start applies to the whole video and is
    kept as is. Output order: by start, then original order.
    """
    out: list[tuple[float, int, dict[str, Any]]] = []
    for i, t in enumerate(texts):
        t0, t1 = t.get("start"), t.get("end")
        item = {k: t.get(k) for k in ("text", "kind", "origin")}
        if t0 is None:
            out.append((-1.0, i, {"start": None, "end": None, **item}))
            continue
        if t1 is None:
            if start - EPS <= t0 < end - EPS:
                out.append((t0, i, {"start": _r(t0 - start), "end": None, **item}))
            continue
        if t0 < end - EPS and t1 > start + EPS:
            a, b = max(t0, start), min(t1, end)
            clipped = a > t0 + EPS or b < t1 - EPS
            out.append(
                (t0, i, {"start": _r(a - start), "end": _r(b - start), **item, "clipped": clipped})
            )
    out.sort(key=lambda x: (x[0], x[1]))
    return [x[2] for x in out]


def _r(x: float) -> float:
    return round(x, 6)


def bucket_for(length: float, p: SegmentPolicy) -> str | None:
    if p.short and p.short_min_s - EPS <= length <= p.short_max_s + EPS:
        return "short"
    if p.long and p.long_min_s - EPS <= length:
        return "long"
    return None


def check_spans(
    spans: Sequence[dict[str, Any]], duration: float, p: SegmentPolicy
) -> tuple[list[tuple[str, float, float]], list[SpanIssue]]:
    """Valid spans (clipped to the video where allowed), sorted by start, and the issues."""
    good: list[tuple[str, float, float]] = []
    issues: list[SpanIssue] = []
    for s in spans:
        sid, a, b = str(s.get("span_id")), s.get("start"), s.get("end")
        if a is None or b is None or not (b > a) or a < 0:
            issues.append(SpanIssue(sid, "bad_span", f"span {sid}: [{a}, {b}] is not a span"))
            continue
        if b > duration + p.end_tolerance_s:
            if p.out_of_range == "reject" or a >= duration - EPS:
                issues.append(
                    SpanIssue(
                        sid,
                        "span_out_of_range",
                        f"span {sid}: [{a:.3f}, {b:.3f}] s ends past the video's measured end "
                        f"{duration:.3f} s",
                    )
                )
                continue
        good.append((sid, float(a), float(min(b, duration))))
    good.sort(key=lambda x: (x[1], x[2], x[0]))
    return good, issues


def contiguous_runs(
    spans: list[tuple[str, float, float]], gap: float
) -> list[list[tuple[str, float, float]]]:
    runs: list[list[tuple[str, float, float]]] = []
    for s in spans:
        if runs and -gap - EPS <= s[1] - runs[-1][-1][2] <= gap + EPS:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def join_run(
    run: list[tuple[str, float, float]], p: SegmentPolicy
) -> list[list[tuple[str, float, float]]]:
    """Contiguous clips → groups of at least min_join clips, each at most long_max_s long."""
    if len(run) < p.min_join:
        return []
    groups: list[list[tuple[str, float, float]]] = [[]]
    for s in run:
        g = groups[-1]
        if g and s[2] - g[0][1] > p.long_max_s + EPS and len(g) >= p.min_join:
            groups.append([s])
        else:
            g.append(s)
    if len(groups) > 1 and len(groups[-1]) < p.min_join:
        tail = groups.pop()
        groups[-1].extend(tail)  # a short tail joins the previous group rather than vanish
    return [g for g in groups if len(g) >= p.min_join]


def segment_spans(record: dict[str, Any], duration: float, p: SegmentPolicy) -> SegmentResult:
    spans, issues = check_spans(record.get("spans") or [], duration, p)
    samples: list[tuple[float, float, str, str, list[str]]] = []
    for sid, a, b in spans:
        length = b - a
        if p.short and p.short_min_s - EPS <= length <= p.short_max_s + EPS:
            samples.append((a, b, "short", "span", [sid]))
        elif p.long and length > p.short_max_s:
            for ca, cb in long_chunks(a, b, [], p):
                samples.append((ca, cb, "long", "span" if (ca, cb) == (a, b) else "chunk", [sid]))
    if p.long:
        for run in contiguous_runs(spans, p.join_gap_s):
            for g in join_run(run, p):
                a, b = g[0][1], g[-1][2]
                if b - a > p.long_max_s + EPS:
                    continue
                samples.append((a, b, "long", "joined_spans", [s[0] for s in g]))
    return SegmentResult(_finish(samples, record), issues)


def segment_shots(
    record: dict[str, Any], duration: float, cuts: Sequence[float], p: SegmentPolicy
) -> SegmentResult:
    shots = shot_intervals(duration, cuts)
    samples: list[tuple[float, float, str, str, list[str]]] = []
    if p.short:
        samples += [(a, b, "short", origin, []) for a, b, origin in short_clips(shots, p)]
    if p.long:
        chunks = long_chunks(0.0, duration, [s[0] for s in shots[1:]], p)
        for a, b in chunks:
            samples.append((a, b, "long", "whole" if len(chunks) == 1 else "chunk", []))
    return SegmentResult(_finish(samples, record), [])


def segment_whole(
    record: dict[str, Any], duration: float, cuts: Sequence[float], p: SegmentPolicy
) -> SegmentResult:
    bucket = bucket_for(duration, p)
    samples: list[tuple[float, float, str, str, list[str]]] = []
    if bucket == "short" or (bucket == "long" and duration <= p.long_max_s + EPS):
        samples.append((0.0, duration, bucket, "whole", []))
    elif bucket == "long":
        shots = shot_intervals(duration, cuts)
        samples += [
            (a, b, "long", "chunk", [])
            for a, b in long_chunks(0.0, duration, [s[0] for s in shots[1:]], p)
        ]
    elif p.short and duration > p.short_max_s:
        samples += [(a, b, "short", o, []) for a, b, o in short_clips([(0.0, duration)], p)]
    return SegmentResult(_finish(samples, record), [])


def segment_record(
    record: dict[str, Any], duration: float, cuts: Sequence[float], p: SegmentPolicy
) -> SegmentResult:
    """All samples of one video under ``p``; see the module docstring."""
    mode = p.mode
    if mode == "source_spans" and not record.get("spans"):
        mode = p.fallback
    if mode == "source_spans":
        return segment_spans(record, duration, p)
    if mode == "whole":
        return segment_whole(record, duration, cuts, p)
    return segment_shots(record, duration, cuts, p)


def _finish(
    samples: list[tuple[float, float, str, str, list[str]]], record: dict[str, Any]
) -> list[SampleSpec]:
    texts = record.get("texts") or []
    seen: set[tuple[int, int]] = set()
    out: list[SampleSpec] = []
    # stable sort: of two samples with the same span (a shot that is also the whole video) the
    # first emitted wins, and the key — a function of the span — stays unique
    for a, b, bucket, origin, ids in sorted(samples, key=lambda s: (s[0], s[1])):
        a, b = _r(a), _r(b)
        ident = (int(round(a * 1000)), int(round(b * 1000)))
        if ident in seen or b - a <= EPS:
            continue
        seen.add(ident)
        out.append(SampleSpec(a, b, bucket, origin, ids, retime_texts(texts, a, b)))
    return out
