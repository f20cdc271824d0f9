"""LLM-written QA (the LongVid method) with schema-constrained decoding, every item validated.

A local causal LM (transformers, ``save_pretrained`` directory) gets a sample's timeline (events
with ids and times, scenes, the video-level texts as context) and one instruction per task type;
its decoding is constrained by xgrammar to a JSON schema built for that sample (event and scene
ids are enums of the ids that exist, times are ``ddd.d`` strings, counts bounded integers,
questions bounded strings), so every output parses. What the LLM chooses (which event, which
times, which order, which count, which options) is then **validated against the timeline**
(:func:`to_item`); an item that fails is dropped with its reason and counted, never written.

The LLM writes the question wording and picks the facts; the answer text is composed from the
validated facts, and each item carries the same ``check`` as the template items, so
:func:`longvid.annotate.qa.verify` holds for it too.

Why xgrammar: it compiles a JSON schema (enums, patterns, integer ranges, string lengths) into a
token mask applied as a transformers ``LogitsProcessor`` on CPU and CUDA, offline, with a
byte-level vocabulary of any Hugging Face tokenizer; it is maintained (vLLM, SGLang and
TensorRT-LLM use it) and installs from PyPI without pulling another torch.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from longvid.annotate.config import LLMQAConfig
from longvid.annotate.counting import action_key, mentions, verb_object_groups
from longvid.annotate.embed import _dtype, resolve_device
from longvid.annotate.local_lm import load_causal_lm, require_lm_dir
from longvid.annotate.provenance import weights_random
from longvid.annotate.qa import (
    MC_LETTERS,
    QAItem,
    fmt,
    mc_question,
    outward,
    rng_for,
    verify,
)
from longvid.annotate.timeline import EPS, Timeline
from longvid.errors import ConfigError

TIME_PATTERN = r"^[0-9]{1,5}\.[0-9]$"
QUESTION_PATTERN = r"^[A-Za-z0-9 ,.;:?!'()-]{8,%d}$"

_INSTRUCTIONS = {
    "temporal_grounding": "Pick one event that happens only once. Write a question asking when "
    "it happens, and give its event id and its start and end time in seconds.",
    "temporal_grounding_mc": "Pick one event that happens only once. Write a question asking "
    "when it happens, with four time-span options, exactly one of them the event's span; give "
    "the event id, the options and the letter of the correct one.",
    "event_relationship": "Pick two to four events that do not overlap. Write a question asking "
    "in which order they happen, and give their event ids in the order they happen.",
    "event_counting": "Pick an action that happens several times. Write a question asking how "
    "many times it happens, and give the ids of all its events and the number of times.",
    "event_counting_mc": "Pick an action that happens several times. Write a question asking "
    "how many times it happens, with four numbers as options, exactly one correct; give the ids "
    "of its events, the options and the letter of the correct one.",
    "scene_relationship": "Pick a scene. Write a question asking what is shown right before or "
    "after it, and give the scene id, the relation and the id of the answer scene.",
    "long_video_description": "Write a request for a detailed description of the video, and "
    "give the ids of the events the description should mention, in time order.",
}
LLM_TASKS = tuple(_INSTRUCTIONS)


# ---- prompt and schema ------------------------------------------------------------------------


def timeline_prompt(tl: Timeline, context: Sequence[str], task: str, cfg: LLMQAConfig) -> str:
    lines = [cfg.preamble.strip(), f"Video length: {fmt(tl.duration)} seconds."]
    if context:
        lines.append("About the whole video: " + " ".join(context)[: cfg.max_context_chars])
    lines.append("Events (id, start-end seconds, kind: text):")
    for i, e in enumerate(tl.events[: cfg.max_events]):
        lines.append(f"[{i}] {fmt(e.start)}-{fmt(e.end)} {e.kind}: {e.text}")
    if tl.scenes:
        lines.append("Scenes (id, start-end seconds: description):")
        for i, s in enumerate(tl.scenes[: cfg.max_events]):
            lines.append(f"[{i}] {fmt(s.start)}-{fmt(s.end)}: {s.text or '(undescribed)'}")
    lines += [f"Task: {_INSTRUCTIONS[task]}", "Answer with one JSON object.", "JSON:"]
    return "\n".join(lines)


def _time() -> dict[str, Any]:
    return {"type": "string", "pattern": TIME_PATTERN}


def task_schema(task: str, tl: Timeline, cfg: LLMQAConfig) -> dict[str, Any]:
    """The JSON schema of one task's answer for this timeline."""
    n_events = min(len(tl.events), cfg.max_events)
    events = {"type": "integer", "enum": list(range(max(1, n_events)))}
    # plain characters only: no escapes, so the longest output is known (see longest_output)
    question = {"type": "string", "pattern": QUESTION_PATTERN % cfg.question_max_chars}
    props: dict[str, Any] = {"question": question}
    letter = {"type": "string", "enum": list(MC_LETTERS)}
    if task in ("temporal_grounding", "temporal_grounding_mc"):
        props["event"] = events
        if task == "temporal_grounding":
            props |= {"start": _time(), "end": _time()}
        else:
            span = {"type": "object", "properties": {"start": _time(), "end": _time()},
                    "required": ["start", "end"], "additionalProperties": False}
            props |= {"options": {"type": "array", "items": span, "minItems": 4, "maxItems": 4},
                      "answer": letter}
    elif task == "event_relationship":
        props["order"] = {"type": "array", "items": events, "minItems": 2, "maxItems": 4}
    elif task in ("event_counting", "event_counting_mc"):
        props["events"] = {"type": "array", "items": events, "minItems": 1,
                           "maxItems": max(1, min(n_events, 20))}
        num = {"type": "integer", "minimum": 1, "maximum": 20}
        props["count"] = num
        if task == "event_counting_mc":
            props |= {"options": {"type": "array", "items": num, "minItems": 4, "maxItems": 4},
                      "answer": letter}
    elif task == "scene_relationship":
        scenes = {"type": "integer", "enum": list(range(max(1, len(tl.scenes[: cfg.max_events]))))}
        props |= {"anchor": scenes, "relation": {"type": "string", "enum": ["before", "after"]},
                  "scene": scenes}
    elif task == "long_video_description":
        props["events"] = {"type": "array", "items": events, "minItems": 1,
                           "maxItems": max(1, min(n_events, 12))}
    else:
        raise ConfigError(f"annotate.llm_qa.tasks: unknown task {task!r}; known: {LLM_TASKS}")
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def longest_output(schema: dict[str, Any]) -> str:
    """The longest JSON a schema of :func:`task_schema` admits, written as the constrained
    decoder writes it (``", "`` and ``": "`` separators): its length bounds the tokens needed
    (every token is at least one character), so no output is ever cut short."""

    def longest(sc: dict[str, Any]) -> Any:
        if "enum" in sc:
            return max(sc["enum"], key=lambda v: len(json.dumps(v)))
        kind = sc["type"]
        if kind == "object":
            return {k: longest(v) for k, v in sc["properties"].items()}
        if kind == "array":
            return [longest(sc["items"])] * sc["maxItems"]
        if kind == "integer":
            return sc["maximum"]
        if sc.get("pattern") == TIME_PATTERN:
            return "99999.9"
        return "x" * int(sc["pattern"].split(",")[-1].split("}")[0])  # the question

    return json.dumps(longest(schema))


# ---- validation: the LLM's facts against the timeline ---------------------------------------


class Rejected(Exception):
    """An LLM item whose facts do not hold; ``reason`` is the rejects-count key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _seconds(value: str, tl: Timeline) -> float:
    t = float(value)
    if not -EPS <= t <= tl.duration + EPS:
        raise Rejected("time_outside_sample", f"{t} not in [0, {tl.duration}]")
    return t


def _event(tl: Timeline, i: int):
    if not 0 <= i < len(tl.events):
        raise Rejected("event_not_on_timeline", f"event {i}")
    return tl.events[i]


def _on_event(tl: Timeline, i: int, a: float, b: float, tol: float) -> bool:
    e = tl.events[i]
    return abs(a - e.start) <= tol + EPS and abs(b - e.end) <= tol + EPS


def _once(tl: Timeline, i: int) -> None:
    key = action_key(tl.events[i].text)
    if sum(action_key(e.text) == key for e in tl.events) != 1:
        raise Rejected("ambiguous_event", f"the action of event {i} happens more than once")


def _named(question: str, text: str) -> None:
    if not mentions(question, text):
        raise Rejected("question_not_about_event", f"the question does not name {text!r}")


def _mc(options: list[Any], answer: str, correct: list[int]) -> int:
    if len({json.dumps(o, sort_keys=True) for o in options}) != len(options):
        raise Rejected("options_repeat")
    if len(correct) != 1:
        raise Rejected("options_not_one_answer", f"{len(correct)} options are correct")
    if MC_LETTERS.index(answer) != correct[0]:
        raise Rejected("answer_letter_wrong", f"{answer} is not the correct option")
    return correct[0]


def to_item(task: str, data: dict[str, Any], tl: Timeline, rng: random.Random,
            cfg: LLMQAConfig) -> QAItem:
    """A validated QA item from the LLM's JSON, or :class:`Rejected` with the reason."""
    q = " ".join(str(data.get("question", "")).split())
    if len(q) < 8:
        raise Rejected("question_empty")
    tol = cfg.time_tolerance_s
    if task in ("temporal_grounding", "temporal_grounding_mc"):
        i = int(data["event"])
        e = _event(tl, i)
        if task == "temporal_grounding":
            a, b = _seconds(data["start"], tl), _seconds(data["end"], tl)
            if not a < b:
                raise Rejected("order_inconsistent", f"start {a} is not before end {b}")
            if not _on_event(tl, i, a, b, tol):
                raise Rejected("time_not_on_event", f"[{a}, {b}] vs [{e.start}, {e.end}]")
            _once(tl, i)
            _named(q, e.text)
            lo, hi = outward(e.start, e.end)
            return QAItem(task, q, f"From {fmt(lo)} to {fmt(hi)} seconds.",
                          {"event": i, "span": [lo, hi], "llm": True})
        spans = [(_seconds(o["start"], tl), _seconds(o["end"], tl)) for o in data["options"]]
        if any(not a < b for a, b in spans):
            raise Rejected("order_inconsistent", "an option ends before it starts")
        correct = [k for k, (a, b) in enumerate(spans) if _on_event(tl, i, a, b, tol)]
        k = _mc(spans, data["answer"], correct)
        _once(tl, i)
        _named(q, e.text)
        opts = [f"From {fmt(a)} to {fmt(b)} seconds." for a, b in spans]
        return QAItem(task, mc_question(q, opts), f"({MC_LETTERS[k]}) {opts[k]}",
                      {"event": i, "options": [list(s) for s in spans], "correct": k,
                       "tolerance": tol, "llm": True})
    if task == "event_relationship":
        order = [int(x) for x in data["order"]]
        if len(set(order)) != len(order):
            raise Rejected("events_repeat")
        seq = [_event(tl, i) for i in order]
        if len({action_key(e.text) for e in seq}) != len(seq):
            raise Rejected("ambiguous_event", "two of the events are the same action")
        for x, y in zip(seq, seq[1:], strict=False):
            if not x.end <= y.start + EPS:
                raise Rejected("order_inconsistent", "the order does not match the timestamps")
        shown = order[:]
        while len(shown) > 1 and shown == order:
            rng.shuffle(shown)
        texts = {i: tl.events[i].text.rstrip(" .") for i in order}
        question = q + " " + "; ".join(f'({MC_LETTERS[j].lower()}) "{texts[i]}"'
                                       for j, i in enumerate(shown))
        answer = "The order is: " + "; then ".join(
            f'"{texts[i]}" at {fmt(tl.events[i].start)} s' for i in order) + "."
        return QAItem(task, question, answer, {"order": order, "shown": shown, "llm": True})
    if task in ("event_counting", "event_counting_mc"):
        idx = sorted({int(x) for x in data["events"]})
        for i in idx:
            _event(tl, i)
        keys = {action_key(tl.events[i].text) for i in idx}
        if len(keys) != 1:
            raise Rejected("not_one_action", f"{len(keys)} actions among the events")
        (key,) = keys
        group = next(g for g in verb_object_groups(tl.events, cfg.count_merge_gap_s)
                     if g.key == key)
        if idx != group.events:
            raise Rejected("not_one_action", "not every event of the action is listed")
        n = int(data["count"])
        if n != group.count:
            raise Rejected("count_wrong", f"says {n}, the events are {group.count} occurrences")
        if n < 2:
            raise Rejected("count_once", "the action happens once")
        if not any(mentions(q, tl.events[i].text) for i in idx):
            raise Rejected("question_not_about_event", f"the question does not name {key!r}")
        check = {"method": "verb_object", "key": key, "events": idx,
                 "occurrences": [list(o) for o in group.occurrences], "count": n,
                 "merge_gap_s": cfg.count_merge_gap_s, "llm": True}
        starts = ", ".join(f"{fmt(a)} s" for a, _ in group.occurrences)
        answer = f"It happens {n} times, starting at {starts}."
        if task == "event_counting":
            return QAItem(task, q, answer, check)
        options = [int(x) for x in data["options"]]
        k = _mc(options, data["answer"], [j for j, o in enumerate(options) if o == n])
        opts = [f"{o} time{'s' if o != 1 else ''}" for o in options]
        return QAItem(task, mc_question(q, opts), f"({MC_LETTERS[k]}) {answer}",
                      {**check, "options": options, "correct": k})
    if task == "scene_relationship":
        sc = tl.scenes
        a, t, rel = int(data["anchor"]), int(data["scene"]), data["relation"]
        if not (0 <= a < len(sc) and 0 <= t < len(sc)):
            raise Rejected("scene_not_on_timeline")
        if not (sc[a].text and sc[t].text):
            raise Rejected("scene_undescribed")
        if Counter(s.text for s in sc if s.text)[sc[a].text] != 1:
            raise Rejected("ambiguous_event", "the anchor scene's description repeats")
        _named(q, sc[a].text or "")
        adjacent = (abs(sc[a].end - sc[t].start) <= 1e-3 if rel == "after"
                    else abs(sc[t].end - sc[a].start) <= 1e-3)
        if not adjacent:
            raise Rejected("scene_not_adjacent", f"scene {t} is not right {rel} scene {a}")
        text = (sc[t].text or "").rstrip(" .")
        answer = f"{text[:1].upper() + text[1:]}, from {fmt(sc[t].start)} to {fmt(sc[t].end)} seconds."
        return QAItem(task, q, answer, {"anchor": a, "scene": t, "relation": rel, "llm": True})
    if task == "long_video_description":
        idx = [int(x) for x in data["events"]]
        seq = [_event(tl, i) for i in idx]
        if len(set(idx)) != len(idx) or any(
                (x.start, x.end) > (y.start, y.end) for x, y in zip(seq, seq[1:], strict=False)):
            raise Rejected("order_inconsistent", "events not listed once each in time order")
        parts = []
        for e in seq:
            lo, hi = outward(e.start, e.end)
            parts.append(f"From {fmt(lo)} to {fmt(hi)} seconds: {e.text.rstrip(' .')}.")
        return QAItem(task, q, " ".join(parts), {"events": idx, "llm": True})
    raise Rejected("unknown_task", task)


# ---- the model ---------------------------------------------------------------------------------


@dataclass
class Stats:
    """What the LLM stage did: outputs generated and parsed, items accepted, rejects by reason."""

    generated: int = 0
    parsed: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)

    def add(self, other: Stats) -> None:
        self.generated += other.generated
        self.parsed += other.parsed
        self.accepted += other.accepted
        self.rejected.update(other.rejected)

    def as_dict(self) -> dict[str, Any]:
        return {"generated": self.generated, "parsed": self.parsed, "accepted": self.accepted,
                "rejected": dict(sorted(self.rejected.items()))}


class LLMQAWriter:
    """``write(tl, context, key, seed) -> (items, stats, raw outputs)``."""

    def __init__(self, cfg: LLMQAConfig):
        import xgrammar as xgr

        path = require_lm_dir(cfg.model_path, "annotate.llm_qa.model_path", "llm_qa")
        self.tokenizer, self.model = load_causal_lm(path, "QA language model")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model.to(self.device, _dtype(cfg.dtype, self.device)).eval()
        self.random = weights_random(cfg.model_path, False, cfg.random_weights)
        info = xgr.TokenizerInfo.from_huggingface(self.tokenizer,
                                                  vocab_size=self.model.config.vocab_size)
        self.compiler = xgr.GrammarCompiler(info)

    def decoding(self) -> dict[str, Any]:
        """Greedy; the token budget of each batch is the length of its longest admissible
        output (:func:`longest_output`), so constrained outputs always finish."""
        return {"do_sample": False, "num_beams": 1, "max_new_tokens": "longest admissible output"}

    def generate(self, prompts: Sequence[str], schemas: Sequence[dict[str, Any]]) -> list[str]:
        """Greedy decoding, each prompt constrained to its schema; ``batch_size`` per call."""
        import torch
        import xgrammar as xgr

        out: list[str] = []
        for s in range(0, len(prompts), self.cfg.batch_size):
            batch = list(prompts[s : s + self.cfg.batch_size])
            grammars = [self.compiler.compile_json_schema(json.dumps(sc), any_whitespace=False)
                        for sc in schemas[s : s + self.cfg.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            proc = xgr.contrib.hf.LogitsProcessor(grammars)  # one use per generate call
            budget = 2 + max(len(longest_output(sc))
                             for sc in schemas[s : s + self.cfg.batch_size])
            with torch.inference_mode():
                ids = self.model.generate(**enc, do_sample=False, num_beams=1,
                                          max_new_tokens=budget, logits_processor=[proc],
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]  # [B, new tokens]
            out += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return out

    def write(self, tl: Timeline, context: Sequence[str], key: str, seed: int
              ) -> tuple[list[QAItem], Stats, list[str]]:
        tasks = [t for t in self.cfg.tasks for _ in range(self.cfg.per_task)]
        prompts = [timeline_prompt(tl, context, t, self.cfg) for t in tasks]
        if self.cfg.per_task > 1:  # greedy decoding: distinct prompts for distinct items
            prompts = [f"{p[:-5]}Question {n % self.cfg.per_task + 1} of {self.cfg.per_task}: "
                       "choose other events than the earlier questions.\nJSON:"
                       for n, p in enumerate(prompts)]
        raw = self.generate(prompts, [task_schema(t, tl, self.cfg) for t in tasks])
        items, stats = collect(tasks, raw, tl, key, seed, self.cfg)
        return items, stats, raw

    def lineage(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"model_path": self.cfg.model_path, "random_weights": self.random,
                "dtype": str(self.model.dtype).replace("torch.", ""),
                "decoding": self.decoding(), "constrained_by": f"xgrammar {version('xgrammar')}",
                "transformers": version("transformers")}


def collect(tasks: Sequence[str], raw: Sequence[str], tl: Timeline, key: str, seed: int,
            cfg: LLMQAConfig) -> tuple[list[QAItem], Stats]:
    """Parse and validate the LLM's outputs: the accepted items and the counts."""
    stats = Stats()
    items: list[QAItem] = []
    for n, (task, text) in enumerate(zip(tasks, raw, strict=True)):
        stats.generated += 1
        try:
            data = json.loads(text)
        except ValueError:
            stats.rejected["unparsable"] += 1
            continue
        stats.parsed += 1
        try:
            item = to_item(task, data, tl, rng_for(seed, key, f"llm_qa:{n}"), cfg)
        except Rejected as exc:
            stats.rejected[exc.reason] += 1
            continue
        except (KeyError, TypeError, ValueError):
            stats.rejected["schema"] += 1
            continue
        problem = verify(item, tl)
        if problem is not None:  # belt and braces: the template checks hold too
            stats.rejected["verify"] += 1
            continue
        stats.accepted += 1
        items.append(item)
    return items, stats


def merge_llm_items(template: Sequence[QAItem], llm: Sequence[QAItem]) -> list[QAItem]:
    """The template items with those of each task the LLM wrote replaced by the LLM's (the
    template generator stays the fallback for the tasks it did not get right)."""
    by_task: dict[str, list[QAItem]] = {}
    for it in llm:
        by_task.setdefault(it.task, []).append(it)
    out: list[QAItem] = []
    for it in template:
        if it.task in by_task:
            if by_task[it.task]:
                out += by_task.pop(it.task)
                by_task[it.task] = []  # replaced: later template items of the task are dropped
            continue
        out.append(it)
    for items in by_task.values():
        out += items
    return out
