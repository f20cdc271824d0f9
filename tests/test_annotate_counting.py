"""Counting by meaning: release-shaped Ego4D narrations with paraphrased repeats, against counts
made by hand."""

from __future__ import annotations

import numpy as np
import pytest

from longvid.annotate.config import EventsConfig, QAConfig
from longvid.annotate.counting import (
    action_key,
    embedding_groups,
    embedding_keys,
    verb_object_groups,
)
from longvid.annotate.qa import QAItem, make_qa, verify
from longvid.annotate.timeline import Timeline, build_timeline
from longvid.errors import ConfigError


def narr(t: float, text: str, origin: str = "narration_pass_1") -> dict:
    return {"start": t, "end": None, "text": text, "kind": "narration", "origin": origin,
            "clipped": False}


# A kitchen video as Ego4D narrates it: two passes, tags, tenses and synonyms vary.
KITCHEN = [
    narr(2.0, "#C C opens the fridge"),
    narr(2.4, "#C C opens fridge door", "narration_pass_2"),  # the same moment, pass 2
    narr(6.0, "#C C takes a bottle of milk"),
    narr(10.0, "#C C closes the fridge"),
    narr(15.0, "#C C pours milk into the cup"),
    narr(20.0, "#C C opens the refrigerator"),
    narr(24.0, "#C C puts the bottle in the fridge"),
    narr(28.0, "#C C shuts the fridge #unsure"),
    narr(33.0, "#C C picks up the bottle"),
    narr(37.0, "#C C opened the fridge."),
    narr(41.0, "#C C grabs a knife"),
    narr(44.0, "#C C cuts the bread"),  # one run of cutting: three narrations, one occurrence
    narr(46.0, "#C C slices the bread"),
    narr(48.0, "#C C is cutting bread"),
    narr(52.0, "#C C puts down the knife"),
    narr(56.0, "#C C chops the bread"),  # cutting again after putting the knife down
]
# counted by hand: action -> occurrences
HAND_COUNTS = {"open|fridge": 3, "close|fridge": 2, "pick|bottle": 2, "cut|bread": 2,
               "put|bottle": 1, "pour|milk": 1, "pick|knife": 1, "put|knife": 1}


@pytest.fixture
def kitchen() -> Timeline:
    return build_timeline(KITCHEN, 60.0, [], [], EventsConfig())


def test_paraphrases_share_an_action_key():
    assert action_key("#C C opens the fridge") == action_key("#C C opened the refrigerator door.")
    assert action_key("#C C takes a bottle of milk") == action_key("#C C picks up the bottle")
    assert action_key("#C C is cutting bread") == action_key("#C C slices the bread")
    assert action_key("#C C shuts the fridge #unsure") == action_key("#C C closes the fridge")
    assert action_key("#C C puts the bottle in the fridge") != action_key("#C C picks up the bottle")
    assert action_key("#C C opens the fridge") != action_key("#C C opens the drawer")


def test_counts_match_the_hand_count(kitchen):
    groups = {g.key: g for g in verb_object_groups(kitchen.events, merge_gap_s=10.0)}
    assert {k: g.count for k, g in groups.items()} == HAND_COUNTS
    # the two passes' "open the fridge" at 2.0 and 2.4 s are one occurrence
    assert groups["open|fridge"].occurrences[0][0] == 0.0
    assert len(groups["open|fridge"].events) == 4


def test_counting_questions_ask_repeats_and_record_the_events_counted(kitchen):
    items = make_qa(kitchen, "k", 0, QAConfig(tasks=["event_counting"], per_task=10))
    assert items and all(it.check["count"] >= 2 for it in items)
    got = {it.check["key"]: it.check["count"] for it in items}
    assert got == {k: n for k, n in HAND_COUNTS.items() if n >= 2}
    for it in items:
        assert verify(it, kitchen) is None, (it, verify(it, kitchen))
        texts = [kitchen.events[i].text for i in it.check["events"]]
        assert {action_key(t) for t in texts} == {it.check["key"]}
        assert len(it.check["occurrences"]) == it.check["count"]
        assert f"{it.check['count']} times" in it.answer


def test_once_items_only_with_a_configured_share(kitchen):
    none = make_qa(kitchen, "k", 0, QAConfig(tasks=["event_counting"], per_task=20))
    assert all(it.check["count"] >= 2 for it in none)
    some = make_qa(kitchen, "k", 0, QAConfig(tasks=["event_counting"], per_task=20,
                                             count_once_share=1.0))
    assert {it.check["count"] for it in some} >= {1, 2, 3}
    for it in some:
        assert verify(it, kitchen) is None


def test_verify_rejects_a_wrong_count_and_a_partial_group(kitchen):
    (item,) = [it for it in make_qa(kitchen, "k", 0, QAConfig(tasks=["event_counting"],
                                                              per_task=10))
               if it.check["key"] == "open|fridge"]
    wrong = QAItem(item.task, item.question, item.answer.replace("3 times", "4 times"),
                   {**item.check, "count": 4})
    assert "count 4" in verify(wrong, kitchen)
    partial = QAItem(item.task, item.question, item.answer,
                     {**item.check, "events": item.check["events"][:-1]})
    assert "not every event" in verify(partial, kitchen)


def test_embedding_grouping_is_greedy_by_cosine_and_refuses_random_weights(kitchen):
    e = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [0.1, 0.995]])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert embedding_keys(e, 0.9) == ["emb|0", "emb|0", "emb|2", "emb|2"]
    assert embedding_keys(e, 0.999) == ["emb|0", "emb|1", "emb|2", "emb|3"]
    with pytest.raises(ConfigError, match="trained open_clip weights"):
        embedding_groups(kitchen.events, lambda texts: np.eye(len(texts)), 0.9, 1.0,
                         random_weights=True)
