"""LLM-written QA: a tiny random Qwen2 (built from a config, saved, loaded from its directory)
writes JSON under xgrammar's schema constraint; every output parses and matches its schema, the
validator rejects planted inconsistent items with the right reason, and a random model's items
never reach the data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest

from longvid.annotate.config import EventsConfig, LLMQAConfig
from longvid.annotate.counting import action_key
from longvid.annotate.llm_qa import (
    LLMQAWriter,
    Rejected,
    collect,
    merge_llm_items,
    task_schema,
    to_item,
)
from longvid.annotate.qa import QAItem, verify
from longvid.annotate.timeline import Scene, Timeline, build_timeline
from longvid.annotate.tiny_lm import save_random_qwen2
from tests.fixtures.annotate import (
    build_config,
    ingest_records,
    one_torch_thread,
    run_all_stages,
)
from tests.test_annotate_counting import KITCHEN


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    return save_random_qwen2(tmp_path_factory.mktemp("qwen2"), seed=0)


@pytest.fixture(scope="module")
def kitchen() -> Timeline:
    tl = build_timeline(KITCHEN, 60.0, [], [], EventsConfig())
    tl.scenes = [Scene(0.0, 12.0, "a kitchen with an open fridge", "clip:a"),
                 Scene(12.0, 40.0, "a table with a cup of milk", "clip:b"),
                 Scene(40.0, 60.0, "a cutting board with bread", "clip:c")]
    return tl


def cfg(**kw) -> LLMQAConfig:
    return LLMQAConfig(**{"device": "cpu", "batch_size": 4, "question_max_chars": 60, **kw})


def test_every_constrained_output_parses_and_matches_its_schema(tiny_qwen, kitchen):
    c = cfg(model_path=str(tiny_qwen), per_task=2)
    with one_torch_thread():
        writer = LLMQAWriter(c)
        items, stats, raw = writer.write(kitchen, ["A person makes breakfast."], "k", 0)
    assert writer.random  # the saved directory is marked random
    assert stats.generated == len(raw) == 2 * len(c.tasks)
    assert stats.parsed == stats.generated  # 100 %: the grammar admits only schema JSON
    tasks = [t for t in c.tasks for _ in range(2)]
    for task, text in zip(tasks, raw, strict=True):
        jsonschema.validate(json.loads(text), task_schema(task, kitchen, c))
    assert stats.accepted + sum(stats.rejected.values()) == stats.generated
    assert stats.accepted == len(items)
    for it in items:  # whatever a random model gets right still checks out
        assert verify(it, kitchen) is None
    assert writer.lineage()["constrained_by"].startswith("xgrammar")
    # greedy: the same prompt gives the same output
    with one_torch_thread():
        assert writer.write(kitchen, ["A person makes breakfast."], "k", 0)[2] == raw


QUESTIONS = {  # what a good LLM writes: paraphrases of the events they are about
    "temporal_grounding": "When does the camera wearer pour the milk into a cup?",
    "temporal_grounding_mc": "When is milk poured into the cup?",
    "event_counting": "How many times does the person open the refrigerator?",
    "event_counting_mc": "How often is the fridge opened?",
    "scene_relationship": "What comes right after the kitchen with the open fridge?",
}


def accept(task: str, data: dict, tl: Timeline) -> QAItem:
    q = QUESTIONS.get(task, "A question about the video?")
    item = to_item(task, {"question": q, **data}, tl, random.Random(0), cfg())
    assert verify(item, tl) is None, verify(item, tl)
    return item


def reason(task: str, data: dict, tl: Timeline, question: str | None = None) -> str:
    q = question or QUESTIONS.get(task, "A question about the video?")
    with pytest.raises(Rejected) as exc:
        to_item(task, {"question": q, **data}, tl, random.Random(0), cfg())
    return exc.value.reason


def test_correct_items_pass_and_their_answers_come_from_the_timeline(kitchen):
    # event 2: "C takes a bottle of milk"? find by text to stay readable
    ev = {e.text: i for i, e in enumerate(kitchen.events)}
    pour = ev["#C C pours milk into the cup"]
    e = kitchen.events[pour]
    g = accept("temporal_grounding", {"event": pour, "start": f"{e.start:.1f}",
                                      "end": f"{e.end:.1f}"}, kitchen)
    assert g.answer == f"From {e.start:.1f} to {e.end:.1f} seconds."
    mc = accept("temporal_grounding_mc", {
        "event": pour, "answer": "C", "options": [
            {"start": "1.0", "end": "3.0"}, {"start": "30.0", "end": "33.0"},
            {"start": f"{e.start:.1f}", "end": f"{e.end:.1f}"}, {"start": "50.0", "end": "52.0"}]},
        kitchen)
    assert mc.answer.startswith("(C)") and "(D) From 50.0 to 52.0 seconds." in mc.question
    opens = [i for i, x in enumerate(kitchen.events) if action_key(x.text) == "open|fridge"]
    c = accept("event_counting", {"events": opens, "count": 3}, kitchen)
    assert c.check["count"] == 3 and c.answer.startswith("It happens 3 times")
    cm = accept("event_counting_mc", {"events": opens, "count": 3, "options": [1, 3, 2, 5],
                                      "answer": "B"}, kitchen)
    assert cm.answer.startswith("(B)")
    o = accept("event_relationship", {"order": [ev["#C C takes a bottle of milk"], pour]}, kitchen)
    assert o.check["order"] == [ev["#C C takes a bottle of milk"], pour]
    s = accept("scene_relationship", {"anchor": 0, "relation": "after", "scene": 1}, kitchen)
    assert "A table with a cup of milk" in s.answer
    d = accept("long_video_description", {"events": [0, pour]}, kitchen)
    assert d.answer.startswith("From ")


def test_planted_inconsistent_items_are_rejected_with_their_reason(kitchen):
    ev = {e.text: i for i, e in enumerate(kitchen.events)}
    pour = ev["#C C pours milk into the cup"]
    e = kitchen.events[pour]
    opens = [i for i, x in enumerate(kitchen.events) if action_key(x.text) == "open|fridge"]
    assert reason("temporal_grounding", {"event": pour, "start": f"{e.start + 5:.1f}",
                                         "end": f"{e.end + 5:.1f}"}, kitchen) == "time_not_on_event"
    assert reason("temporal_grounding", {"event": pour, "start": "70.0", "end": "75.0"},
                  kitchen) == "time_outside_sample"
    assert reason("temporal_grounding", {"event": opens[0], "start": "0.0", "end": "4.0"},
                  kitchen) in ("ambiguous_event", "time_not_on_event")
    assert reason("event_counting", {"events": opens, "count": 4}, kitchen) == "count_wrong"
    assert reason("event_counting", {"events": opens[:2], "count": 2}, kitchen) == "not_one_action"
    assert reason("temporal_grounding_mc", {
        "event": pour, "answer": "A", "options": [
            {"start": f"{e.start:.1f}", "end": f"{e.end:.1f}"},
            {"start": f"{e.start + 0.5:.1f}", "end": f"{e.end:.1f}"},
            {"start": "30.0", "end": "33.0"}, {"start": "50.0", "end": "52.0"}]},
        kitchen) == "options_not_one_answer"
    assert reason("event_counting_mc", {"events": opens, "count": 3, "options": [3, 1, 2, 3],
                                        "answer": "A"}, kitchen) == "options_repeat"
    assert reason("event_counting_mc", {"events": opens, "count": 3, "options": [1, 3, 2, 5],
                                        "answer": "A"}, kitchen) == "answer_letter_wrong"
    assert reason("event_relationship", {"order": [pour, ev["#C C takes a bottle of milk"]]},
                  kitchen) == "order_inconsistent"
    assert reason("scene_relationship", {"anchor": 0, "relation": "after", "scene": 2},
                  kitchen) == "scene_not_adjacent"
    assert reason("temporal_grounding", {"event": pour, "start": f"{e.start:.1f}",
                                         "end": f"{e.end:.1f}"}, kitchen,
                  question="When does the man sit down on the sofa?") == "question_not_about_event"


def test_collect_counts_unparsable_and_rejected_outputs_by_reason(kitchen):
    raw = ["not json", json.dumps({"question": "When does it happen?", "event": 0,
                                   "start": "50.0", "end": "55.0"}),
           json.dumps({"question": "How many times?", "events": [0], "count": 1})]
    items, stats = collect(["temporal_grounding", "temporal_grounding", "event_counting"], raw,
                           kitchen, "k", 0, cfg())
    assert items == [] and stats.generated == 3 and stats.parsed == 2
    assert sum(stats.rejected.values()) == 3 and stats.rejected["unparsable"] == 1


def test_llm_items_replace_template_items_of_their_task_only():
    template = [QAItem("temporal_grounding", "t?", "a"), QAItem("event_counting", "c?", "b")]
    llm = [QAItem("temporal_grounding", "llm?", "x"), QAItem("temporal_grounding_mc", "mc?", "y")]
    merged = merge_llm_items(template, llm)
    assert [(it.task, it.question) for it in merged] == [
        ("temporal_grounding", "llm?"), ("event_counting", "c?"),
        ("temporal_grounding_mc", "mc?")]


def test_the_stage_on_a_real_long_sample_counts_a_random_llm_and_writes_none_of_it(
        sample_corpus, tiny_qwen, tmp_path):
    rec = ingest_records(sample_corpus, "ego4d")[0]
    stages = ["filter", "captions", "events", "qa", "llm_qa"]
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    plain = run_all_stages([rec], build_config(stages[:-1]), tmp_path / "a")
    (work,) = run_all_stages([rec], build_config(stages, llm_qa={
        "model_path": str(tiny_qwen), "device": "cpu", "question_max_chars": 60,
        "tasks": ["temporal_grounding", "event_counting_mc"]}), tmp_path / "b")
    assert not work.failed, work.rejects
    longs = [o for o in work.outputs if o.row["bucket"] == "long"]
    assert longs
    before = {o.key: json.loads(o.members["json"])["qa"] for o in plain[0].outputs}
    for out in longs:
        m = json.loads(out.members["json"])
        lin = m["lineage"]["llm_qa"]
        assert lin["random_weights"] is True and lin["generated"] == 2
        assert lin["parsed"] == lin["generated"]  # constrained: every output parses
        assert lin["accepted"] + sum(lin["rejected"].values()) == lin["generated"]
        assert len(lin["random_text"]) == 2  # the raw outputs: lineage only
        assert m["qa"] == before[out.key]  # the template items, untouched
        assert not any(q["check"].get("llm") for q in m["qa"])
        assert out.row["extra"]["llm_qa"]["generated"] == 2
