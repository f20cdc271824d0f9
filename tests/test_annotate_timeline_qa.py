"""Source captions, timelines and LongVid QA: pure functions, answers checked against timelines."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.annotate.captions import source_captions
from longvid.annotate.config import EventsConfig, QAConfig
from longvid.annotate.counting import action_key, verb_object_groups
from longvid.annotate.qa import (
    QAItem,
    conversations,
    make_qa,
    outward,
    short_caption_qa,
    verify,
)
from longvid.annotate.timeline import (
    Event,
    Scene,
    Timeline,
    build_timeline,
    join_asr,
)
from longvid.segment.policy import retime_texts


def cap(start, end, text, kind="caption", origin="o", clipped=False):
    return {"start": start, "end": end, "text": text, "kind": kind, "origin": origin,
            "clipped": clipped}


# ---- source captions -------------------------------------------------------------------------


def test_source_captions_clean_clamp_dedup_and_keep_kind_and_origin():
    texts = [
        {"start": 3.0, "end": 5.0, "text": "  a  red\nscreen ", "kind": "asr", "origin": "caption"},
        {"start": 3.0, "end": 5.0, "text": "a red screen", "kind": "asr", "origin": "caption"},
        {"start": 1.0, "end": None, "text": float("nan"), "kind": "narration", "origin": "p1"},
        {"start": 8.0, "end": 12.5, "text": "past the end", "kind": "caption", "origin": "dense",
         "clipped": True},
        {"start": None, "end": None, "text": "whole video title", "kind": "title",
         "origin": "name"},
    ]
    caps = source_captions(texts, duration=10.0)
    assert caps == [
        cap(None, None, "whole video title", "title", "name"),
        cap(3.0, 5.0, "a red screen", "asr", "caption"),
        cap(8.0, 10.0, "past the end", "caption", "dense", clipped=True),
    ]


# ---- timeline --------------------------------------------------------------------------------


def test_point_texts_become_centred_events_clipped_to_the_sample():
    cfg = EventsConfig(point_event_s=4.0)
    caps = [cap(1.0, None, "C opens a door", "narration", "narration_pass_1"),
            cap(10.0, None, "C sits down", "narration", "narration_pass_1")]
    tl = build_timeline(caps, 30.0, [], [], cfg)
    assert [(e.start, e.end, e.text) for e in tl.events] == [
        (0.0, 3.0, "C opens a door"),  # 1 s - 2 s is before the sample: clipped to 0
        (8.0, 12.0, "C sits down"),
    ]
    assert all(e.kind == "narration" and e.origin == "narration_pass_1" for e in tl.events)


def test_asr_fragments_join_into_utterances_that_never_cross_a_cut():
    frags = [cap(0.0, 1.5, "here we have", "asr"), cap(1.5, 3.0, "a red screen", "asr"),
             cap(3.2, 4.0, "with stripes", "asr"),  # 0.2 s gap: joins
             cap(4.5, 6.0, "here we have", "asr"),  # a cut at 4.2 s lies between
             cap(6.0, 7.0, "a blue one", "asr"),
             cap(9.5, 10.0, "and then", "asr")]  # 2.5 s gap: new utterance
    events = join_asr(frags, cuts=[4.2], gap=1.0, max_len=20.0)
    assert [(e.start, e.end, e.text) for e in events] == [
        (0.0, 4.0, "here we have a red screen with stripes"),
        (4.5, 7.0, "here we have a blue one"),
        (9.5, 10.0, "and then"),
    ]
    # max_len splits a long run of contiguous fragments
    events = join_asr(frags[:3], cuts=[], gap=1.0, max_len=3.5)
    assert [e.text for e in events] == ["here we have a red screen", "with stripes"]


def test_whole_sample_texts_summaries_and_clipped_texts_are_not_events():
    caps = [cap(0.0, 60.0, "the whole sample", "caption", "dense_caption"),
            cap(0.0, 40.0, "C watches screens", "summary", "narration_pass_1"),
            cap(50.0, 60.0, "runs past the end", "caption", "dense_caption", clipped=True),
            cap(10.0, 20.0, "a window", "caption", "dense_caption")]
    tl = build_timeline(caps, 60.0, [], [], EventsConfig())
    assert [e.text for e in tl.events] == ["a window"]


def test_texts_sharing_a_span_give_one_event_by_origin_preference():
    caps = [cap(0.0, 20.0, "short one", "caption", "short_caption"),
            cap(0.0, 20.0, "the dense description", "caption", "dense_caption"),
            cap(0.0, 20.0, "static camera", "caption", "camera_caption"),
            cap(20.0, 40.0, "static camera", "caption", "camera_caption"),
            cap(20.0, 40.0, "second short", "caption", "short_caption")]
    tl = build_timeline(caps, 100.0, [], [], EventsConfig())
    assert [(e.start, e.text, e.origin) for e in tl.events] == [
        (0.0, "the dense description", "dense_caption"),
        (20.0, "second short", "short_caption"),
    ]


def test_clip_captions_fill_only_where_source_events_leave_gaps():
    caps = [cap(0.0, 10.0, "source event", "asr", "caption")]
    clips = [{"start": 0.0, "end": 10.0, "text": "clip over the source", "kind": "caption",
              "origin": "clip:a"},
             {"start": 10.0, "end": 20.0, "text": "clip in the gap", "kind": "caption",
              "origin": "clip:b"}]
    cuts = [10.0]
    fill = build_timeline(caps, 20.0, cuts, clips, EventsConfig(clip_events="fill"))
    assert [e.text for e in fill.events] == ["source event", "clip in the gap"]
    every = build_timeline(caps, 20.0, cuts, clips, EventsConfig(clip_events="all"))
    assert [e.text for e in every.events] == ["clip over the source", "source event",
                                              "clip in the gap"]
    none = build_timeline(caps, 20.0, cuts, clips, EventsConfig(clip_events="none"))
    assert [e.text for e in none.events] == ["source event"]
    # scenes are the shots: described by the clip with the same span
    assert [(s.start, s.end, s.text, s.origin) for s in fill.scenes] == [
        (0.0, 10.0, "clip over the source", "clip:a"), (10.0, 20.0, "clip in the gap", "clip:b")]


def test_scene_without_a_clip_takes_the_most_specific_overlapping_event():
    caps = [cap(0.0, 30.0, "long window", "caption", "dense_caption"),
            cap(11.0, None, "C opens a door", "narration", "p1")]
    tl = build_timeline(caps, 100.0, [10.0, 14.0, 40.0], [], EventsConfig(point_event_s=2.0))
    by_start = {s.start: s for s in tl.scenes}
    assert by_start[10.0].text == "C opens a door"  # the 2 s narration beats the 30 s window
    assert by_start[0.0].text == "long window"
    assert by_start[40.0].text is None  # nothing describes 40-100 s


def test_same_text_overlapping_events_are_one():
    caps = [cap(10.0, None, "C waves", "narration", "narration_pass_1"),
            cap(10.5, None, "C waves", "narration", "narration_pass_2"),
            cap(30.0, None, "C waves", "narration", "narration_pass_1")]
    tl = build_timeline(caps, 60.0, [], [], EventsConfig(point_event_s=4.0))
    assert [(e.start, e.origin) for e in tl.events] == [(8.0, "narration_pass_1"),
                                                        (28.0, "narration_pass_1")]


# ---- QA on a timeline with known answers ----------------------------------------------------


def known_timeline() -> Timeline:
    events = [Event(2.0, 6.0, "C opens the fridge", "narration", "n"),
              Event(8.0, 12.4, "C pours milk", "narration", "n"),
              Event(15.0, 19.0, "C opens the fridge", "narration", "n"),
              Event(21.05, 25.0, "C closes the door", "narration", "n")]
    scenes = [Scene(0.0, 7.0, "a kitchen", "clip:a"), Scene(7.0, 14.0, "a table", "clip:b"),
              Scene(14.0, 30.0, "a hallway", "clip:c")]
    return Timeline(30.0, events, scenes)


def by_task(items):
    return {it.task: it for it in items}


def test_all_five_tasks_with_answers_that_match_the_timeline():
    tl = known_timeline()
    items = by_task(make_qa(tl, "k", 0, QAConfig(order_events=3)))
    assert set(items) == {"long_video_description", "temporal_grounding", "event_relationship",
                          "scene_relationship", "event_counting", "temporal_grounding_mc",
                          "event_counting_mc"}
    for it in items.values():
        assert verify(it, tl) is None, (it.task, verify(it, tl))

    d = items["long_video_description"]
    assert d.answer.startswith("From 2.0 to 6.0 seconds: C opens the fridge. From 8.0 to 12.4")
    assert "From 21.0 to 25.0 seconds: C closes the door." in d.answer  # 21.05 rounded outwards

    g = items["temporal_grounding"]
    e = tl.events[g.check["event"]]
    assert e.text in ("C pours milk", "C closes the door")  # the repeated text is never asked
    a, b = g.check["span"]
    assert a <= e.start and e.end <= b
    assert g.answer == f"From {a:.1f} to {b:.1f} seconds." and e.text in g.question

    o = items["event_relationship"]
    starts = [tl.events[i].start for i in o.check["order"]]
    assert starts == sorted(starts) and len(starts) == 2  # only 2 unique texts can be ordered

    c = items["event_counting"]
    assert (c.check["key"], c.check["count"], c.check["events"]) == ("open|fridge", 2, [0, 2])
    assert c.answer == "It happens 2 times, starting at 2.0 s, 15.0 s."

    s = items["scene_relationship"]
    anchor, target = tl.scenes[s.check["anchor"]], tl.scenes[s.check["scene"]]
    if s.check["relation"] == "after":
        assert target.start == anchor.end
    else:
        assert target.end == anchor.start
    assert target.text.lower() in s.answer.lower() and anchor.text in s.question


def test_multiple_choice_items_hold_exactly_one_answer_at_their_letter():
    tl = known_timeline()
    items = by_task(make_qa(tl, "k", 0, QAConfig()))
    g = items["temporal_grounding_mc"]
    e = tl.events[g.check["event"]]
    assert g.question.count("\n(") == 4 and g.question.endswith(
        "Answer with the option's letter from the given choices directly.")
    k = g.check["correct"]
    assert g.answer.startswith(f"({'ABCD'[k]}) From ")
    on = [j for j, (a, b) in enumerate(g.check["options"])
          if abs(a - e.start) <= 0.15 and abs(b - e.end) <= 0.15]
    assert on == [k]
    c = items["event_counting_mc"]
    assert sorted(set(c.check["options"])) == sorted(c.check["options"])  # four distinct counts
    assert c.check["options"][c.check["correct"]] == c.check["count"] == 2
    # planted: a second correct option, a wrong letter
    two = QAItem(g.task, g.question, g.answer, {**g.check, "options": [
        g.check["options"][k]] * 2 + g.check["options"][2:]})
    assert "exactly one" in verify(two, tl)
    letter = "ABCD"[(k + 1) % 4]
    wrong = QAItem(g.task, g.question, f"({letter}) x", g.check)
    assert "letter" in verify(wrong, tl)


def test_order_of_three_events_lists_letters_in_time_order():
    tl = Timeline(40.0, [Event(1, 3, "first thing", "c", "o"), Event(10, 12, "second thing", "c",
                                                                          "o"),
                         Event(20, 22, "third thing", "c", "o")], [])
    (item,) = [it for it in make_qa(tl, "k", 1, QAConfig(order_events=3))
               if it.task == "event_relationship"]
    assert item.check["order"] == [0, 1, 2]
    assert item.check["shown"] != [0, 1, 2]  # never asked in the answer's order
    letters = "abc"
    expected = "".join(f"({letters[item.check['shown'].index(i)]})" for i in (0, 1, 2))
    assert item.answer.replace(", ", "").startswith("The order is " + expected)
    assert verify(item, tl) is None


def test_verify_catches_wrong_answers():
    tl = known_timeline()
    items = by_task(make_qa(tl, "k", 0, QAConfig()))
    g = items["temporal_grounding"]
    bad = QAItem(g.task, g.question, g.answer, {**g.check, "span": [g.check["span"][0] + 1.0,
                                                                    g.check["span"][1]]})
    assert "does not contain" in verify(bad, tl)
    c = items["event_counting"]
    assert "does not match" in verify(QAItem(c.task, c.question, "It happens 3 times.",
                                             {**c.check, "count": 3}), tl)
    o = items["event_relationship"]
    assert "order" in verify(QAItem(o.task, o.question, o.answer,
                                    {**o.check, "order": o.check["order"][::-1]}), tl)


def test_qa_is_a_function_of_seed_and_key():
    tl = Timeline(100.0, [Event(float(10 * i), float(10 * i + 5), f"event number {i}", "c", "o")
                          for i in range(9)], [])
    cfg = QAConfig()
    assert make_qa(tl, "key-a", 0, cfg) == make_qa(tl, "key-a", 0, cfg)
    groundings = {make_qa(tl, f"key-{n}", 0, cfg)[1].check["event"] for n in range(20)}
    assert len(groundings) > 1  # different samples get different questions


def test_conversations_are_llava_turns_with_the_video_placeholder_first():
    items = [QAItem("temporal_grounding", "When?", "From 1.0 to 2.0 seconds."),
             QAItem("event_counting", "How many?", "It happens 1 time.")]
    assert conversations(items) == [
        {"from": "human", "value": "<image>\nWhen?"},
        {"from": "gpt", "value": "From 1.0 to 2.0 seconds."},
        {"from": "human", "value": "How many?"},
        {"from": "gpt", "value": "It happens 1 time."},
    ]
    short = short_caption_qa("a red screen", "k", 0)
    assert short.task == "short_caption" and short.answer == "a red screen"


def test_empty_timeline_gives_no_questions():
    assert make_qa(Timeline(10.0, [], []), "k", 0, QAConfig()) == []


# ---- property: every generated answer verifies ----------------------------------------------

texts = st.sampled_from(["a red square", "a blue grid", "C opens a door", "C sits down",
                         "stripes scroll left", "noise flickers"])


@st.composite
def timelines(draw):
    n = draw(st.integers(0, 12))
    events = []
    for _ in range(n):
        a = draw(st.floats(0, 95, allow_nan=False))
        length = draw(st.floats(0.1, 20, allow_nan=False))
        events.append(Event(round(a, 3), round(min(100.0, a + length), 3), draw(texts), "c", "o"))
    events.sort(key=lambda e: (e.start, e.end, e.text))
    cuts = sorted(set(round(c, 3) for c in draw(st.lists(st.floats(1, 99), max_size=6))))
    pts = [0.0, *cuts, 100.0]
    scenes = [Scene(a, b, draw(st.one_of(st.none(), texts)), "x")
              for a, b in zip(pts, pts[1:], strict=False)]
    return Timeline(100.0, events, scenes)


@settings(max_examples=150, deadline=None)
@given(timelines(), st.integers(0, 3), st.integers(2, 4))
def test_every_generated_answer_verifies(tl, seed, k):
    for item in make_qa(tl, f"key{seed}", seed, QAConfig(order_events=k, per_task=2)):
        assert verify(item, tl) is None, (item, verify(item, tl))
        if item.task == "temporal_grounding":
            e = tl.events[item.check["event"]]
            a, b = item.check["span"]
            assert a <= e.start + 1e-9 and e.end <= b + 1e-9
        if item.task == "event_counting":
            keys = [action_key(e.text) for e in tl.events]
            assert item.check["events"] == [i for i, k in enumerate(keys)
                                            if k == item.check["key"]]
            assert item.check["count"] >= 2


def test_outward_rounding_contains_the_span():
    for a, b in ((0.04, 0.06), (1.25, 1.25), (2.0, 3.0), (7.999999, 8.000001)):
        lo, hi = outward(a, b)
        assert lo <= a and hi >= b and hi - lo <= (b - a) + 0.2 + 1e-9
        assert math.isclose(lo * 10, round(lo * 10)) and math.isclose(hi * 10, round(hi * 10))


# ---- on the sample corpus's real ingest output ----------------------------------------------


@pytest.mark.parametrize("source", ["ego4d", "howto100m", "hdvila", "miradata"])
def test_timelines_of_sample_corpus_videos_follow_the_ground_truth(sample_corpus, source):
    import json

    from tests.fixtures.annotate import ingest_records

    truth = {(v["source"], v["id"]): v
             for v in json.loads((sample_corpus / "ground_truth.json").read_text())["videos"]}
    for rec in ingest_records(sample_corpus, source):
        video = truth[(source, rec["video_id"])]
        dur = float(video["duration"])
        caps = source_captions(retime_texts(rec["texts"], 0.0, dur), dur)
        tl = build_timeline(caps, dur, video["cut_times"], [], EventsConfig())
        assert tl.events, rec["record_id"]
        shots = video["shots"]
        for e in tl.events:
            # every event's text names what is on screen inside its span (the corpus's texts
            # describe the shot they were written for; ASR may stop mid-sentence)
            inside = [s for s in shots if s["start"] < e.end and s["end"] > e.start]
            assert any(" ".join(s["text"].split()[:4]) in e.text for s in inside), (
                e, [s["text"] for s in inside])
        items = make_qa(tl, rec["record_id"], 0, QAConfig())
        tasks = {it.task for it in items}
        assert "temporal_grounding" in tasks
        # a description only of what is shown: HowTo100M's and HD-VILA's texts are speech
        visual = [e for e in tl.events if e.kind != "asr"]
        assert ("long_video_description" in tasks) == bool(visual)
        assert bool(visual) == (source in ("ego4d", "miradata"))
        # counting is asked exactly when an action happens at least twice
        repeats = any(g.count >= 2 for g in verb_object_groups(tl.events, 10.0))
        assert ("event_counting" in tasks) == repeats
        for it in items:
            assert verify(it, tl) is None, (it, verify(it, tl))


# ---- text scope -------------------------------------------------------------------------------


def test_narration_spans_run_between_neighbouring_narrations_of_their_pass():
    caps = [cap(10.0, None, "C picks up a knife", "narration", "narration_pass_1"),
            cap(11.0, None, "C cuts the onion", "narration", "narration_pass_1"),
            cap(20.0, None, "C washes the knife", "narration", "narration_pass_1"),
            cap(10.6, None, "C grabs the knife", "narration", "narration_pass_2")]
    tl = build_timeline(caps, 60.0, [], [], EventsConfig(point_event_s=4.0))
    got = {(e.text, e.start, e.end) for e in tl.events}
    assert got == {
        ("C picks up a knife", 8.0, 10.5),  # no earlier narration: 2 s before; then the midpoint
        ("C cuts the onion", 10.5, 13.0),  # midpoint with 10 s; the next is 9 s away: 2 s cap
        ("C washes the knife", 18.0, 22.0),
        ("C grabs the knife", 8.6, 12.6),  # pass 2 has no neighbours: its own timeline
    }
    # spans of one pass never overlap
    p1 = sorted((e.start, e.end) for e in tl.events if e.origin == "narration_pass_1")
    assert all(a[1] <= b[0] for a, b in zip(p1, p1[1:], strict=False))
    fixed = build_timeline(caps, 60.0, [], [], EventsConfig(point_event_s=4.0,
                                                            point_event_rule="fixed"))
    assert {(e.text, e.start, e.end) for e in fixed.events} >= {("C cuts the onion", 9.0, 13.0)}


def test_a_whole_video_text_is_never_the_caption_of_a_sub_clip():
    from longvid.pipelines.captions import main_caption

    texts = retime_texts([{"start": None, "end": None, "text": "a red screen, then a blue grid",
                           "kind": "caption", "origin": "text"},
                          {"start": 1.0, "end": 4.0, "text": "hello there", "kind": "asr",
                           "origin": "asr"}], 0.0, 5.0)
    assert main_caption(texts, [], 100, whole_video=True) == "a red screen, then a blue grid"
    assert main_caption(texts, [], 100, whole_video=False) == "hello there"
    assert main_caption(texts[:1], [], 100, whole_video=False) == ""
    # it stays video-level context: a caption record without times, never an event
    caps = source_captions(texts, 5.0)
    assert caps[0]["start"] is None and caps[0]["text"] == "a red screen, then a blue grid"
    tl = build_timeline(caps, 5.0, [], [], EventsConfig())
    assert [e.text for e in tl.events] == ["hello there"]


def test_texts_spanning_the_whole_video_are_marked_video_level():
    from longvid.pipelines.captions import main_caption, mark_video_level, video_level

    source = [{"start": 0.0, "end": 14.6, "text": "a webvid name", "kind": "title",
               "origin": "name"},
              {"start": 0.0, "end": None, "text": "a folder text", "kind": "caption",
               "origin": "text"},
              {"start": 0.0, "end": None, "text": "C opens a door", "kind": "narration",
               "origin": "narration_pass_1"},  # a point in time at 0 s, not the whole video
              {"start": 3.0, "end": 9.0, "text": "a clip text", "kind": "caption",
               "origin": "text"}]
    assert [video_level(t, 15.0) for t in source] == [True, True, False, False]
    sub = mark_video_level(retime_texts(source, 0.0, 5.0), source, 15.0)
    assert {t["text"] for t in sub if t.get("scope") == "video"} == {"a webvid name",
                                                                     "a folder text"}
    # the 0-5 s clip: neither whole-video text is its caption, nor an event of it
    assert main_caption(sub, [], 100, whole_video=False) == "C opens a door"
    assert main_caption(sub, [], 100, whole_video=True) == "a folder text"  # the name: clipped
    caps = source_captions(sub, 5.0)
    tl = build_timeline(caps, 5.0, [], [], EventsConfig())
    assert [e.text for e in tl.events] == ["C opens a door"]


# ---- speech stays speech ----------------------------------------------------------------------


def test_asr_is_speech_never_a_scene_description_or_a_counted_action():
    caps = [cap(0.0, 4.0, "so now we open the box", "asr", "caption"),
            cap(10.0, 14.0, "so now we open the box", "asr", "caption"),
            cap(20.0, 24.0, "and that is it", "asr", "caption")]
    clips = [{"start": 4.0, "end": 10.0, "text": "a red box on a table", "kind": "caption",
              "origin": "model:captioner"}]
    tl = build_timeline(caps, 30.0, [4.0, 10.0, 20.0], clips, EventsConfig())
    assert {e.kind for e in tl.events} == {"asr", "caption"}
    # scenes: only the clip describes one; speech describes none
    assert [(s.start, s.text) for s in tl.scenes] == [
        (0.0, None), (4.0, "a red box on a table"), (10.0, None), (20.0, None)]
    items = {it.task: it for it in make_qa(tl, "k", 0, QAConfig(per_task=5))}
    d = items["long_video_description"]
    assert "a red box on a table" in d.answer and "open the box" not in d.answer
    assert "event_counting" not in items  # "open the box" is said twice, not done twice
    g = items["temporal_grounding"]
    if tl.events[g.check["event"]].kind == "asr":
        assert " said" in g.question or "say" in g.question
    for it in items.values():
        assert verify(it, tl) is None


def test_caption_segments_are_shots_with_long_shots_split_into_windows():
    from longvid.annotate.frames import caption_segments

    segs = caption_segments(60.0, [5.0, 30.0], window_s=10.0, max_segments=64)
    assert segs == [(0.0, 5.0), (5.0, 13.333), (13.333, 21.667), (21.667, 30.0),
                    (30.0, 40.0), (40.0, 50.0), (50.0, 60.0)]
    few = caption_segments(60.0, [5.0, 30.0], window_s=10.0, max_segments=3)
    assert few == [segs[0], segs[3], segs[6]]
