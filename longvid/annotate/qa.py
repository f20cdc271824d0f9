"""LongVid-style QA from a timeline: the five task types, by deterministic templates.

* ``long_video_description``: describe the video in time order → the events with their times;
* ``temporal_grounding``: when does "<event>" happen? → a span (rounded outwards to 0.1 s, so it
  contains the event);
* ``event_relationship``: put these events in order / which happens first? → the order of their
  start times (only events that do not overlap, with distinct texts);
* ``scene_relationship``: what is shown in the scene right after/before the one with "<scene>"?
  → the adjacent scene's description (scenes are the shots between cuts);
* ``temporal_grounding_mc`` / ``event_counting_mc``: the same as multiple choice (four options,
  VideoChat-Flash's layout: :func:`mc_question`);
* ``event_counting``: how many times does "<event>" happen? → the number of occurrences of that
  action (events grouped by meaning: :mod:`longvid.annotate.counting`); only actions that happen
  at least twice, unless ``count_once_share``.

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
from longvid.annotate.counting import (
    Group,
    action_key,
    mentions,
    occurrences,
    verb_object_groups,
)
from longvid.annotate.timeline import EPS, SPEECH_KINDS, Event, Scene, Timeline, normalise

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
_GROUND_SPEECH = (
    'When is "{text}" said in the video? Answer with the start and end time in seconds.',
    'At what time does the speaker say "{text}"? Give its start and end time in seconds.',
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
_GROUND_MC = (
    'When does "{text}" happen in the video?',
    'At what time in the video does this happen: "{text}"?',
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


MC_LETTERS = "ABCD"
MC_SUFFIX = "Answer with the option's letter from the given choices directly."


def mc_question(question: str, options: Sequence[str]) -> str:
    """A multiple-choice question in VideoChat-Flash's (LLaVA-Video's) layout."""
    lines = [question, "Options:"] + [f"({MC_LETTERS[k]}) {o}" for k, o in enumerate(options)]
    return "\n".join(lines + [MC_SUFFIX])


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
    """The visual events in time order (speech is not a description of what is shown)."""
    visual = [i for i, e in enumerate(tl.events) if e.kind not in SPEECH_KINDS]
    if not visual:
        return []
    idx = visual
    if len(idx) > cfg.max_description_events:  # evenly spread, first and last included
        n = cfg.max_description_events
        idx = sorted({visual[round(i * (len(visual) - 1) / max(1, n - 1))] for i in range(n)})
    parts = []
    for i in idx:
        e = tl.events[i]
        a, b = outward(e.start, e.end)
        parts.append(f"From {fmt(a)} to {fmt(b)} seconds: {_quote(e.text)}.")
    return [QAItem("long_video_description", rng.choice(_DESCRIBE), " ".join(parts),
                   {"events": idx})]


def _unique_events(tl: Timeline) -> list[int]:
    """Events whose action happens once (so "when does it happen" has one answer)."""
    keys = [action_key(e.text) for e in tl.events]
    counts = Counter(keys)
    return [i for i, k in enumerate(keys) if counts[k] == 1]


def ground(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    pool = _unique_events(tl)
    rng.shuffle(pool)
    out = []
    for i in sorted(pool[: cfg.per_task]):
        e = tl.events[i]
        a, b = outward(e.start, e.end)
        said = e.kind in SPEECH_KINDS  # a speech-grounded question: when is it said
        q = rng.choice(_GROUND_SPEECH if said else _GROUND).format(text=_quote(e.text))
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


def count(tl: Timeline, rng: random.Random, cfg: QAConfig,
          groups: Sequence[Group] | None = None) -> list[QAItem]:
    """How many times does an action happen: events grouped by meaning (``groups``, else by
    verb-object key), counted as occurrences (:mod:`longvid.annotate.counting`); only actions
    that happen at least twice are asked, plus a ``count_once_share`` of once-only ones."""
    if groups is None:
        groups = verb_object_groups(tl.events, cfg.count_merge_gap_s)
    # what is said is not an action that happens: speech is not counted
    groups = [g for g in groups if all(tl.events[i].kind not in SPEECH_KINDS for i in g.events)]
    repeated = [g for g in groups if g.count >= 2]
    singles = [g for g in groups if g.count == 1]
    rng.shuffle(repeated)
    rng.shuffle(singles)
    chosen = repeated[: cfg.per_task]
    for g in singles:
        if len(chosen) >= cfg.per_task:
            break
        if rng.random() < cfg.count_once_share:
            chosen.append(g)
    out = []
    for g in sorted(chosen, key=lambda g: g.events[0]):
        n = g.count
        text = _quote(tl.events[g.events[0]].text)
        q = rng.choice(_COUNT).format(text=text)
        starts = ", ".join(f"{fmt(a)} s" for a, _ in g.occurrences)
        a = f"It happens {n} time{'s' if n != 1 else ''}, starting at {starts}."
        out.append(QAItem("event_counting", q, a, {
            "method": cfg.count_method, "key": g.key, "events": list(g.events),
            "occurrences": [list(o) for o in g.occurrences], "count": n,
            "merge_gap_s": cfg.count_merge_gap_s}))
    return out


def _far(a: float, b: float, e: Event, margin: float = 0.5) -> bool:
    """A span that is clearly not the event's (a start or an end off by more than ``margin``)."""
    return abs(a - e.start) > margin or abs(b - e.end) > margin


def ground_mc(tl: Timeline, rng: random.Random, cfg: QAConfig) -> list[QAItem]:
    """Temporal grounding, multiple choice: the event's span among three spans of other events
    (or, on short timelines, shifted copies), none of them close to the answer."""
    pool = _unique_events(tl)
    rng.shuffle(pool)
    out = []
    for i in sorted(pool[: cfg.per_task]):
        e = tl.events[i]
        right = outward(e.start, e.end)
        options = [right]
        others = [outward(x.start, x.end) for j, x in enumerate(tl.events) if j != i]
        rng.shuffle(others)
        width = right[1] - right[0]
        step = max(width, 2.0)
        others += [(round(right[0] + k * step, 1), round(right[1] + k * step, 1))
                   for k in (1, -1, 2, -2, 3, -3, 4, -4)]
        for a, b in others:
            if len(options) == 4:
                break
            if 0 <= a < b <= tl.duration + EPS and _far(a, b, e) and all(
                    _far(a, b, Event(x, y, "", "", "")) for x, y in options):
                options.append((a, b))
        if len(options) < 4:
            continue
        rng.shuffle(options)
        k = options.index(right)
        texts = [f"From {fmt(a)} to {fmt(b)} seconds." for a, b in options]
        q = mc_question(rng.choice(_GROUND_MC).format(text=_quote(e.text)), texts)
        out.append(QAItem("temporal_grounding_mc", q, f"({MC_LETTERS[k]}) {texts[k]}",
                          {"event": i, "options": [list(o) for o in options], "correct": k,
                           "tolerance": 0.1}))
    return out


def count_mc(tl: Timeline, rng: random.Random, cfg: QAConfig,
             groups: Sequence[Group] | None = None) -> list[QAItem]:
    """Event counting, multiple choice: the count among three other counts."""
    out = []
    for item in count(tl, rng, cfg, groups):
        n = item.check["count"]
        wrong = [m for m in (n + 1, n - 1, n + 2, n - 2, n + 3, n + 4) if m >= 1][:3]
        options = [n, *wrong]
        rng.shuffle(options)
        k = options.index(n)
        texts = [f"{m} time{'s' if m != 1 else ''}" for m in options]
        q = mc_question(item.question, texts)
        out.append(QAItem("event_counting_mc", q, f"({MC_LETTERS[k]}) {item.answer}",
                          {**item.check, "options": options, "correct": k}))
    return out


TASK_BUILDERS = {
    "long_video_description": describe,
    "temporal_grounding": ground,
    "event_relationship": order,
    "scene_relationship": scene,
    "event_counting": count,
    "temporal_grounding_mc": ground_mc,
    "event_counting_mc": count_mc,
}


def make_qa(tl: Timeline, key: str, seed: int, cfg: QAConfig,
            groups: Sequence[Group] | None = None) -> list[QAItem]:
    """QA items for one long sample, tasks in ``cfg.tasks`` order; a task whose facts the
    timeline cannot support unambiguously gives no item. ``groups``: the events grouped by
    meaning for counting (default: verb-object keys)."""
    out: list[QAItem] = []
    for task in cfg.tasks:
        rng = rng_for(seed, key, task)
        if task == "event_counting":
            out += count(tl, rng, cfg, groups)
        elif task == "event_counting_mc":
            out += count_mc(tl, rng, cfg, groups)
        else:
            out += TASK_BUILDERS[task](tl, rng, cfg)
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
        if sum(action_key(x.text) == action_key(e.text) for x in ev) != 1:
            return "the grounded text occurs more than once"
        named = (mentions(it.question, e.text) if c.get("llm")
                 else _quote(e.text) in it.question)  # the LLM may paraphrase
        if f"{fmt(a)} to {fmt(b)}" not in it.answer or not named:
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
        return verify_count(it, tl)
    if it.task == "event_counting_mc":
        options, k = c.get("options") or [], c.get("correct", -1)
        if [j for j, o in enumerate(options) if o == c["count"]] != [k]:
            return "the options do not hold exactly one correct count at the answer's letter"
        if not it.answer.startswith(f"({MC_LETTERS[k]})"):
            return "the answer's letter is not the correct option"
        return verify_count(it, tl)
    if it.task == "temporal_grounding_mc":
        e, tol = ev[c["event"]], float(c.get("tolerance", 0.0))
        on = [j for j, (a, b) in enumerate(c.get("options") or [])
              if abs(a - e.start) <= tol + 0.05 + EPS and abs(b - e.end) <= tol + 0.05 + EPS]
        if on != [c.get("correct")]:
            return "the options do not hold exactly one span of the event at the answer's letter"
        if not it.answer.startswith(f"({MC_LETTERS[c['correct']]})"):
            return "the answer's letter is not the correct option"
        if sum(action_key(x.text) == action_key(e.text) for x in ev) != 1:
            return "the grounded text occurs more than once"
        return None
    if it.task == "short_caption":
        return None
    return f"unknown task {it.task!r}"


def verify_count(it: QAItem, tl: Timeline) -> str | None:
    """A counting item: the counted events are one action (verb-object: all of its events), and
    the count is the number of their occurrences on the timeline."""
    c, ev = it.check, tl.events
    idx = list(c.get("events") or [])
    if not idx or any(not 0 <= i < len(ev) for i in idx):
        return "the counted events are not on the timeline"
    if c.get("method", "verb_object") == "verb_object":
        keys = [action_key(e.text) for e in ev]
        if {keys[i] for i in idx} != {c["key"]}:
            return f"the counted events are not all the action {c['key']!r}"
        if sorted(idx) != [i for i, k in enumerate(keys) if k == c["key"]]:
            return f"not every event of the action {c['key']!r} is counted"
    else:  # embedding groups: the listed events are the group
        members = set(idx)
        keys = [c["key"] if i in members else f"other|{i}" for i in range(len(ev))]
    n = len(occurrences(ev, idx, keys, float(c.get("merge_gap_s", 10.0))))
    if n != c["count"] or len(c.get("occurrences") or []) != n or f"{n} time" not in it.answer:
        return f"count {c['count']} does not match the timeline's {n}"
    return None

