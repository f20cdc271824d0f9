"""The timeline of a long sample: timestamped events and shot-level scenes (LongVid's backbone).

Events come from two places, as in LongVid:

* **source annotations** re-timed to the sample, of the kinds in ``event_kinds``: Ego4D
  narrations (points in time; each spans from the midpoint with the previous narration of its
  pass to the midpoint with the next, at most ``point_event_s`` in all: :func:`point_events`),
  HowTo100M ASR
  (fragments joined into utterances that never cross a shot cut), HD-VILA clip texts, MiraData
  window captions (Ego4D summaries span many events and are left out by default);
* **short-clip captions**: the captions of the short clips of the same video that lie inside the
  sample (their source caption or a model caption), and a captioner's per-frame captions. With
  ``clip_events: fill`` they are added only where source annotations leave a clip mostly
  uncovered, so a video with narrations is not described twice.

A text spanning (almost) the whole sample describes the sample, not an event in it, and a text
clipped by the sample's edges is only partly inside it: neither becomes an event. Nor does a text
without a time range: it is about the whole video (video-level context). Events with
the same text that overlap by ``dedup_iou`` are one event.

Scenes are the shots inside the sample (between detected cuts), each described by the short clip
with the same span when there is one, else by the visual event that overlaps it most. Speech
(ASR, kind ``asr``) keeps its kind: it is what is said, never a description of what is shown, so
it never describes a scene or the video (see :mod:`longvid.annotate.qa`).

All times are seconds from the sample's start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from longvid.annotate.captions import clean_text
from longvid.annotate.config import EventsConfig

EPS = 1e-6
SPEECH_KINDS = ("asr",)  # what is said, not what is shown: never a visual description


@dataclass
class Event:
    start: float
    end: float
    text: str
    kind: str  # the text kind it came from (narration, asr, caption, summary, title)
    origin: str  # where: the source field, "clip:<key>" or "model:<name>"

    @property
    def label(self) -> str:
        return normalise(self.text)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Scene:
    start: float
    end: float
    text: str | None  # None when nothing describes it
    origin: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Timeline:
    duration: float
    events: list[Event]
    scenes: list[Scene]

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "events": [e.as_dict() for e in self.events],
            "scenes": [s.as_dict() for s in self.scenes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        return cls(
            float(data["duration"]),
            [Event(**e) for e in data.get("events", [])],
            [Scene(**s) for s in data.get("scenes", [])],
        )


_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Comparison form of a text: lower case, no punctuation, single spaces."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def iou(a: Event | Scene, b: Event | Scene) -> float:
    inter = overlap(a.start, a.end, b.start, b.end)
    union = max(a.end, b.end) - min(a.start, b.start)
    return inter / union if union > EPS else 1.0


def _r(x: float) -> float:
    return round(x, 3)


def point_events(caps: Sequence[dict[str, Any]], duration: float, width: float,
                 rule: str = "fixed") -> list[Event]:
    """Point-in-time texts → events inside the sample.

    ``fixed``: ``width`` long, centred on the point. ``neighbours`` (the narration timeline):
    a narration marks a moment of an action that lasts until the annotator's next narration, so
    its event runs from the midpoint with the previous narration of the same origin (pass) to
    the midpoint with the next one, at most ``width / 2`` either side of the point (the first
    and last narrations, and lone ones, take ``width / 2``). Narrations at the same time share
    the span of that time. Spans of one pass therefore never overlap.
    """
    half = width / 2
    out = []
    by_origin: dict[str, list[float]] = {}
    for c in caps:
        by_origin.setdefault(c["origin"], []).append(float(c["start"]))
    times = {o: sorted(set(ts)) for o, ts in by_origin.items()}
    for c in caps:
        t = float(c["start"])
        a, b = t - half, t + half
        if rule == "neighbours":
            ts = times[c["origin"]]
            i = ts.index(t)
            if i > 0:
                a = max(a, (ts[i - 1] + t) / 2)
            if i + 1 < len(ts):
                b = min(b, (t + ts[i + 1]) / 2)
        a, b = max(0.0, a), min(duration, b)
        if b - a > EPS:
            out.append(Event(_r(a), _r(b), c["text"], c["kind"], c["origin"]))
    return out


def join_asr(
    caps: Sequence[dict[str, Any]], cuts: Sequence[float], gap: float, max_len: float
) -> list[Event]:
    """ASR fragments (in time order) → utterances: consecutive fragments closer than ``gap`` s
    join unless the join would cross a shot cut or exceed ``max_len`` s."""
    out: list[Event] = []
    cur: list[dict[str, Any]] = []

    def flush() -> None:
        if cur:
            text = " ".join(c["text"] for c in cur)
            out.append(Event(_r(cur[0]["start"]), _r(cur[-1]["end"]), text, "asr", cur[0]["origin"]))
            cur.clear()

    for c in sorted(caps, key=lambda c: (c["start"], c["end"])):
        if cur:
            a, last = cur[0]["start"], cur[-1]["end"]
            crosses = any(a + EPS < x < c["end"] - EPS for x in cuts)
            if c["start"] - last > gap + EPS or crosses or c["end"] - a > max_len + EPS:
                flush()
        cur.append(c)
    flush()
    return out


def source_events(
    captions: Sequence[dict[str, Any]], duration: float, cuts: Sequence[float], cfg: EventsConfig
) -> list[Event]:
    """Events from a sample's source captions (see the module docstring for the rules)."""
    points: list[dict[str, Any]] = []
    asr: list[dict[str, Any]] = []
    spans: list[Event] = []
    for c in captions:
        if (c["start"] is None or c.get("clipped") or c.get("scope") == "video"
                or c["kind"] not in cfg.event_kinds):
            continue
        if c["end"] is None:
            points.append(c)
            continue
        if c["end"] - c["start"] <= EPS:
            continue
        if (c["end"] - c["start"]) > cfg.max_event_fraction * duration + EPS:
            continue  # describes the whole sample
        if c["kind"] == "asr":
            asr.append(c)
        else:
            spans.append(Event(_r(c["start"]), _r(c["end"]), c["text"], c["kind"], c["origin"]))
    events = point_events(points, duration, cfg.point_event_s, cfg.point_event_rule)
    events += join_asr(asr, cuts, cfg.asr_join_gap_s, cfg.asr_max_s)
    events += one_per_span(spans, cfg.prefer_origins)
    return dedup_events(events, cfg.dedup_iou)


def one_per_span(events: Sequence[Event], prefer: Sequence[str]) -> list[Event]:
    """Texts with exactly the same span are alternative descriptions of one thing (MiraData's
    six caption columns per window): keep one, by ``prefer`` order of origins, else the
    longest text."""
    rank = {o: i for i, o in enumerate(prefer)}
    best: dict[tuple[float, float], Event] = {}
    for e in events:
        k = (e.start, e.end)
        cur = best.get(k)
        score = (rank.get(e.origin, len(rank)), -len(e.text))
        if cur is None or score < (rank.get(cur.origin, len(rank)), -len(cur.text)):
            best[k] = e
    return list(best.values())


def dedup_events(events: Iterable[Event], min_iou: float) -> list[Event]:
    """Sorted events; of two with the same text overlapping by ``min_iou``, the first stays."""
    kept: list[Event] = []
    for e in sorted(events, key=_order):
        if any(k.label == e.label and iou(k, e) >= min_iou - EPS and overlap(
                k.start, k.end, e.start, e.end) > EPS for k in kept):
            continue
        kept.append(e)
    return kept


def _order(e: Event) -> tuple[float, float, str, str]:
    return (e.start, e.end, e.text, e.origin)


def covered_fraction(a: float, b: float, events: Sequence[Event]) -> float:
    """Fraction of ``[a, b]`` covered by the union of ``events``."""
    if b - a <= EPS:
        return 1.0
    pieces = sorted((max(a, e.start), min(b, e.end)) for e in events if e.end > a and e.start < b)
    total, reach = 0.0, a
    for s, t in pieces:
        if t > reach:
            total += t - max(s, reach)
            reach = t
    return total / (b - a)


def scenes_from_cuts(
    duration: float,
    cuts: Sequence[float],
    clips: Sequence[Event],
    events: Sequence[Event],
    min_len: float,
) -> list[Scene]:
    """Shots inside the sample, each with the text of the clip of the same span (IoU ≥ 0.9) or
    of the event overlapping it most (ties: the earliest)."""
    points = [0.0] + sorted(c for c in cuts if EPS < c < duration - EPS) + [duration]
    scenes = []
    for a, b in zip(points, points[1:], strict=False):
        if b - a < min_len - EPS:
            continue
        shot = Scene(_r(a), _r(b), None, "")
        same = [c for c in clips if iou(c, shot) >= 0.9]
        if same:
            shot.text, shot.origin = same[0].text, same[0].origin
        else:
            # the most *specific* event: best IoU, so a summary spanning many shots loses to
            # a narration inside this one
            visual = [e for e in events if e.kind not in SPEECH_KINDS]  # speech is no scene
            best = max(visual, key=lambda e: (iou(e, shot), -e.start), default=None)
            if best is not None and overlap(a, b, best.start, best.end) > EPS:
                shot.text, shot.origin = best.text, best.origin
        scenes.append(shot)
    return scenes


def build_timeline(
    captions: Sequence[dict[str, Any]],
    duration: float,
    cuts: Sequence[float],
    clips: Sequence[dict[str, Any]],
    cfg: EventsConfig,
) -> Timeline:
    """A sample's timeline.

    Args:
        captions: the sample's source captions (:func:`longvid.annotate.captions.source_captions`).
        duration: the sample's length in seconds.
        cuts: shot boundaries inside the sample, seconds from its start.
        clips: short-clip and per-frame captions inside the sample: dicts with ``start``, ``end``,
            ``text``, ``kind`` and ``origin`` (sample-relative times).
        cfg: the ``events`` config.
    """
    events = source_events(captions, duration, cuts, cfg)
    clip_events = []
    for c in clips:
        text = clean_text(c.get("text"))
        a, b = max(0.0, float(c["start"])), min(duration, float(c["end"]))
        if text and b - a > EPS:
            clip_events.append(Event(_r(a), _r(b), text, str(c.get("kind") or "caption"),
                                     str(c.get("origin") or "")))
    if cfg.clip_events == "all":
        events = dedup_events(events + clip_events, cfg.dedup_iou)
    elif cfg.clip_events == "fill":
        gaps = [c for c in clip_events
                if covered_fraction(c.start, c.end, events) < cfg.fill_coverage - EPS]
        events = dedup_events(events + gaps, cfg.dedup_iou)
    scenes = scenes_from_cuts(duration, cuts, clip_events, events, cfg.min_scene_s)
    return Timeline(_r(duration), events, scenes)
