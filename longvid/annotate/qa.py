"""LongVid-style QA from a timeline: the five task types, by deterministic templates.

* ``long_video_description``: describe the video in time order → the events with their times;
* ``temporal_grounding``: when does "<event>" happen? → a span (rounded outwards to 0.1 s, so it
  contains the event);
* ``event_relationship``: put these events in order / which happens first? → the order of their
  start times (only events that do not overlap, with distinct texts);
* ``scene_relationship``: what is shown in the scene right after/before the one with "<scene>"?
  → the adjacent scene's description (scenes are the shots between cuts);
* ``event_counting``: how many times does "<event>" happen? → the number of events with that text.

Every item carries ``check``: what the answer claims in machine-readable form, so that
:func:`verify` can test it against the timeline (the tests do, and the rewriter uses it to keep
only rewrites that leave the facts alone). Choices are a pure function of (seed, sample key).
Questions whose facts would be ambiguous (a text that occurs twice for grounding, overlapping
events for ordering) are not asked.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from longvid.annotate.config import QAConfig
from longvid.annotate.timeline import EPS, Scene, Timeline, normalise

VIDEO_PLACEHOLDER = "<image>"  # what LLaVA-style trainers (VideoChat-Flash's too) expect first

_DESCRIBE = (
    "Describe what happens in this video in detail, in the order it happens.",
    "Give a detailed, time-ordered account of the events in the video.",
    "What happens in the video from beginning to end? Mention when each event happens.",
)
_GROUND = (
    'When does "{text}" happen in the video? Answer with the start and end time in seconds.',
    'Find the moment when "{text}". Give its start and end time in seconds.',
    'At what time in the video does this happen: "{text}"? Answer with a time span in seconds.',
)
_ORDER2 = (
    'Which happens first in the video: "{a}" or "{b}"?',
    'Of these two events, which one comes earlier: "{a}" or "{b}"?',
)
_ORDER_N = (
    "Put these events in the order they happen in the video: {items}.",
    "In what order do the following events happen? {items}.",
)
_SCENE = (
    'What is shown in the scene right {rel} the one where "{text}"?',
    'Describe the scene that comes right {rel} the scene showing "{text}".',
)
_COUNT = (
    'How many times does "{text}" happen in the video?',
    'Count how often this happens in the video: "{text}".',
)
_SHORT = (
    "Describe this video briefly.",
    "What does this short clip show?",
    "Write a short caption for this video.",
)


@dataclass
class QAItem:
    task: str
    question: str
    answer: str
    check: dict[str, Any] = field(default_factory=dict)
    rewritten: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rng_for(seed: int, key: str, salt: str = "qa") -> random.Random:
    """A generator that depends only on (seed, key, salt)."""
    digest = hashlib.sha256(f"{seed}\x00{key}\x00{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def fmt(t: float) -> str:
    return f"{t:.1f}"


def outward(start: float, end: float) -> tuple[float, float]:
    """``[start, end]`` rounded outwards to 0.1 s (so the rounded span contains it)."""
    return (math.floor(start * 10 + 1e-6) / 10, math.ceil(end * 10 - 1e-6) / 10)


def _quote(text: str) -> str:
    return text.rstrip(" .")


# ---- the five tasks -------------------------------------------------------------------------


def describe(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    if not tl.events:
        return []
    idx = list(range(len(tl.events)))
    if len(idx) > cfg.max_description_events:  # evenly spread, first and last included
        n = cfg.max_description_events
        idx = sorted({round(i * (len(tl.events) - 1) / max(1, n - 1)) for i in range(n)})
    parts = []
    for i in idx:
        e = tl.events[i]
        a, b = outward(e.start, e.end)
        parts.append(f"From {fmt(a)} to {fmt(b)} seconds: {_quote(e.text)}.")
    return [QAItem("long_video_description", rng.choice(_DESCRIBE), " ".join(parts),
                   {"events": idx})]


def _unique_events(tl: Timeline) -> list[int]:
    counts = Counter(e.label for e in tl.events)
    return [i for i, e in enumerate(tl.events) if counts[e.label] == 1]


def ground(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    pool = _unique_events(tl)
    rng.shuffle(pool)
    out = []
    for i in sorted(pool[: cfg.per_task]):
        e = tl.events[i]
        a, b = outward(e.start, e.end)
        q = rng.choice(_GROUND).format(text=_quote(e.text))
        out.append(QAItem("temporal_grounding", q, f"From {fmt(a)} to {fmt(b)} seconds.",
                          {"event": i, "span": [a, b]}))
    return out


def _disjoint_chain(tl: Timeline, pool: list[int], k: int, rng: random.Random) -> list[int] | None:
    """``k`` events from ``pool``, pairwise non-overlapping with distinct texts, in time order."""
    order = pool[:]
    rng.shuffle(order)
    chosen: list[int] = []
    for i in order:
        e = tl.events[i]
        if all(e.label != tl.events[j].label and (e.end <= tl.events[j].start + EPS
               or tl.events[j].end <= e.start + EPS) for j in chosen):
            chosen.append(i)
            if len(chosen) == k:
                return sorted(chosen, key=lambda j: (tl.events[j].start, tl.events[j].end))
    return None


def order(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    pool = _unique_events(tl)
    out = []
    for _ in range(cfg.per_task):
        k = min(cfg.order_events, len(pool))
        chain = None
        while k >= 2 and chain is None:
            chain = _disjoint_chain(tl, pool, k, rng)
            k -= 1 if chain is None else 0
        if chain is None:
            break
        shown = chain[:]
        while len(shown) > 1 and shown == chain:  # never list them already in order
            rng.shuffle(shown)
        texts = {i: _quote(tl.events[i].text) for i in chain}
        if len(chain) == 2:
            q = rng.choice(_ORDER2).format(a=texts[shown[0]], b=texts[shown[1]])
            first, second = chain
            a = (f'"{texts[first]}" happens first (at {fmt(tl.events[first].start)} s), then '
                 f'"{texts[second]}" (at {fmt(tl.events[second].start)} s).')
        else:
            letters = "abcdefghij"
            items = "; ".join(f'({letters[j]}) "{texts[i]}"' for j, i in enumerate(shown))
            q = rng.choice(_ORDER_N).format(items=items)
            seq = [letters[shown.index(i)] for i in chain]
            a = ("The order is " + ", ".join(f"({c})" for c in seq) + ": " + "; then ".join(
                f'"{texts[i]}" at {fmt(tl.events[i].start)} s' for i in chain) + ".")
        out.append(QAItem("event_relationship", q, a, {"order": chain, "shown": shown}))
        pool = [i for i in pool if i not in chain]
    return out


def _scene_pairs(scenes: Sequence[Scene]) -> list[tuple[int, int]]:
    """(anchor, answer) index pairs of adjacent scenes, both described, texts distinct, the
    anchor's text unique among the scenes."""
    counts = Counter(normalise(s.text) for s in scenes if s.text)
    pairs = []
    for i in range(len(scenes) - 1):
        a, b = scenes[i], scenes[i + 1]
        if not (a.text and b.text) or abs(a.end - b.start) > 1e-3:
            continue
        if normalise(a.text) == normalise(b.text):
            continue
        if counts[normalise(a.text)] == 1:
            pairs.append((i, i + 1))
        if counts[normalise(b.text)] == 1:
            pairs.append((i + 1, i))
    return pairs


def scene(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    pairs = _scene_pairs(tl.scenes)
    rng.shuffle(pairs)
    out = []
    for anchor, target in sorted(pairs[: cfg.per_task]):
        rel = "after" if target > anchor else "before"
        a, t = tl.scenes[anchor], tl.scenes[target]
        q = rng.choice(_SCENE).format(rel=rel, text=_quote(a.text or ""))
        ans = (f"{_capital(_quote(t.text or ''))}, from {fmt(t.start)} to {fmt(t.end)} seconds.")
        out.append(QAItem("scene_relationship", q, ans,
                          {"anchor": anchor, "scene": target, "relation": rel}))
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def count(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    counts = Counter(e.label for e in tl.events)
    if not counts:
        return []
    first_of: dict[str, int] = {}
    for i, e in enumerate(tl.events):
        first_of.setdefault(e.label, i)
    labels = sorted(counts, key=lambda lab: first_of[lab])
    repeated = [lab for lab in labels if counts[lab] > 1]
    rng.shuffle(repeated)
    singles = [lab for lab in labels if counts[lab] == 1]
    rng.shuffle(singles)
    out = []
    for lab in (repeated + singles)[: cfg.per_task]:
        n = counts[lab]
        text = _quote(tl.events[first_of[lab]].text)
        q = rng.choice(_COUNT).format(text=text)
        a = f"It happens {n} time{'s' if n != 1 else ''}."
        out.append(QAItem("event_counting", q, a, {"label": lab, "count": n}))
    return out


TASK_BUILDERS = {
    "long_video_description": describe,
    "temporal_grounding": ground,
    "event_relationship": order,
    "scene_relationship": scene,
    "event_counting": count,
}


def make_qa(tl: Timeline, key: str, seed: int, cfg: QAConfig) -> list[QAItem]:
    """QA items for one long sample, tasks in ``cfg.tasks`` order; a task whose facts the
    timeline cannot support unambiguously gives no item."""
    out: list[QAItem] = []
    for task in cfg.tasks:
        out += TASK_BUILDERS[task](tl, rng_for(seed, key, task), cfg)
    return out


def short_caption_qa(caption: str, key: str, seed: int) -> QAItem:
    """The one question of a short sample, answered by its main caption."""
    q = rng_for(seed, key, "short_caption").choice(_SHORT)
    return QAItem("short_caption", q, caption, {"caption": True})


def conversations(items: Sequence[QAItem]) -> list[dict[str, str]]:
    """LLaVA-style turns of all items; the first human turn starts with the video placeholder."""
    turns: list[dict[str, str]] = []
    for i, it in enumerate(items):
        q = f"{VIDEO_PLACEHOLDER}\n{it.question}" if i == 0 else it.question
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": it.answer}]
    return turns


# ---- checking -------------------------------------------------------------------------------


def verify(item: QAItem | dict[str, Any], tl: Timeline) -> str | None:
    """None when the item's facts hold on ``tl``, else what is wrong (one line)."""
    it = item if isinstance(item, QAItem) else QAItem(**item)
    c = it.check
    ev = tl.events
    if it.task == "long_video_description":
        pos = 0
        for i in c["events"]:
            where = it.answer.find(_quote(ev[i].text), pos)
            if where < 0:
                return f"event {i} is missing or out of order in the description"
            pos = where + 1
        return None
    if it.task == "temporal_grounding":
        e, (a, b) = ev[c["event"]], c["span"]
        if not (a <= e.start + EPS and e.end <= b + EPS):
            return f"span [{a}, {b}] does not contain event [{e.start}, {e.end}]"
        if b - a > (e.end - e.start) + 0.2 + EPS:
            return f"span [{a}, {b}] is wider than event [{e.start}, {e.end}] + rounding"
        if sum(x.label == e.label for x in ev) != 1:
            return "the grounded text occurs more than once"
        if f"{fmt(a)} to {fmt(b)}" not in it.answer or _quote(e.text) not in it.question:
            return "question or answer does not show the event and span"
        return None
    if it.task == "event_relationship":
        seq = [ev[i] for i in c["order"]]
        for x, y in zip(seq, seq[1:], strict=False):
            if not x.end <= y.start + EPS:
                return "the answer's order does not match the timestamps"
        if sorted(c["shown"]) != sorted(c["order"]):
            return "the question lists other events than the answer"
        where = [it.answer.find(_quote(e.text)) for e in seq]
        if any(w < 0 for w in where) or where != sorted(where):
            return "the answer text does not list the events in time order"
        return None
    if it.task == "scene_relationship":
        sc = tl.scenes
        a, t = sc[c["anchor"]], sc[c["scene"]]
        adjacent = (abs(a.end - t.start) <= 1e-3 if c["relation"] == "after"
                    else abs(t.end - a.start) <= 1e-3)
        if not adjacent:
            return f"scene {c['scene']} is not right {c['relation']} scene {c['anchor']}"
        if not t.text or _quote(t.text).lower() not in it.answer.lower():
            return "the answer does not describe the adjacent scene"
        return None
    if it.task == "event_counting":
        n = sum(e.label == c["label"] for e in ev)
        if n != c["count"] or f"{n} time" not in it.answer:
            return f"count {c['count']} does not match the timeline's {n}"
        return None
    if it.task == "short_caption":
        return None
    return f"unknown task {it.task!r}"
