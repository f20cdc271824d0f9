"""Segmentation policy: pure functions, spans and re-timed texts checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from longvid.pipelines.config import UnitsConfig
from longvid.pipelines.plan import pack_offsets
from longvid.pipelines.stages.segment import snap_to_keyframe
from longvid.segment.config import SegmentPolicy
from longvid.segment.policy import (
    long_chunks,
    retime_texts,
    segment_record,
    short_clips,
    shot_intervals,
)


def spans(result):
    return [(s.start, s.end, s.bucket, s.origin) for s in result.samples]


def test_shot_intervals_cover_the_video_and_ignore_cuts_at_the_ends():
    assert shot_intervals(10.0, [0.0, 4.0, 2.0, 10.0]) == [(0.0, 2.0), (2.0, 4.0), (4.0, 10.0)]


def test_short_clips_keep_shots_in_range_drop_short_and_split_long_ones():
    p = SegmentPolicy(short_min_s=2, short_max_s=10, stride_s=4)
    clips = short_clips([(0, 1.5), (1.5, 8.0), (8.0, 20.0)], p)
    # 1.5 s shot dropped; 6.5 s shot kept; 12 s shot split into three 4 s stride pieces
    assert clips == [
        (1.5, 8.0, "shot"),
        (8.0, 12.0, "stride"),
        (12.0, 16.0, "stride"),
        (16.0, 20.0, "stride"),
    ]


def test_long_chunks_snap_to_a_near_shot_boundary():
    p = SegmentPolicy(long_min_s=60, long_max_s=100, snap_s=10)
    # 180 s → 2 chunks; even split at 90 s moves to the cut at 95 s
    assert long_chunks(0, 180, [30.0, 95.0, 150.0], p) == [(0, 95.0), (95.0, 180)]
    # no boundary within 10 s of 90: even split
    assert long_chunks(0, 180, [30.0, 150.0], p) == [(0, 90.0), (90.0, 180)]
    assert long_chunks(0, 50, [], p) == []  # shorter than long_min_s
    assert long_chunks(0, 80, [], p) == [(0, 80)]


def test_shots_policy_gives_short_clips_and_the_whole_video_as_long_sample():
    p = SegmentPolicy(
        mode="shots", short_min_s=2, short_max_s=30, long_min_s=60, long_max_s=3600, stride_s=10
    )
    rec = {"record_id": "g:v", "texts": []}
    res = segment_record(rec, 75.0, [20.0, 21.0, 40.0], p)
    assert spans(res) == [
        (0.0, 20.0, "short", "shot"),
        (0.0, 75.0, "long", "whole"),
        (21.0, 40.0, "short", "shot"),
        # the 35 s last shot is longer than short_max_s: four stride pieces of 8.75 s
        (40.0, 48.75, "short", "stride"),
        (48.75, 57.5, "short", "stride"),
        (57.5, 66.25, "short", "stride"),
        (66.25, 75.0, "short", "stride"),
    ]


def test_source_spans_join_four_contiguous_clips_into_a_long_sample():
    p = SegmentPolicy(
        mode="source_spans", short_min_s=2, short_max_s=60, min_join=4, join_gap_s=0.5
    )
    rec = {
        "record_id": "hdvila:x",
        "spans": [
            {"span_id": f"x.{i}", "start": a, "end": b}
            for i, (a, b) in enumerate([(0, 10), (10, 21), (21.3, 30), (30, 42), (50, 55)])
        ],
        "texts": [
            {"start": 0, "end": 10, "text": "first", "kind": "asr", "origin": "clip_text"},
            {"start": 50, "end": 55, "text": "last", "kind": "asr", "origin": "clip_text"},
        ],
    }
    res = segment_record(rec, 60.0, [], p)
    assert spans(res) == [
        (0.0, 10.0, "short", "span"),
        (0.0, 42.0, "long", "joined_spans"),
        (10.0, 21.0, "short", "span"),
        (21.3, 30.0, "short", "span"),
        (30.0, 42.0, "short", "span"),
        (50.0, 55.0, "short", "span"),
    ]
    joined = res.samples[1]
    assert joined.span_ids == ["x.0", "x.1", "x.2", "x.3"]
    assert [t["text"] for t in joined.texts] == ["first"]
    last = res.samples[-1]
    assert last.texts == [
        {
            "start": 0.0,
            "end": 5.0,
            "text": "last",
            "kind": "asr",
            "origin": "clip_text",
            "clipped": False,
        }
    ]


def test_three_contiguous_clips_are_not_joined():
    p = SegmentPolicy(mode="source_spans", min_join=4)
    rec = {
        "record_id": "hdvila:y",
        "texts": [],
        "spans": [{"span_id": str(i), "start": 10.0 * i, "end": 10.0 * i + 10} for i in range(3)],
    }
    assert all(s.bucket == "short" for s in segment_record(rec, 40.0, [], p).samples)


def test_span_past_the_end_is_rejected_or_clipped_by_policy():
    rec = {
        "record_id": "m:z",
        "texts": [],
        "spans": [{"span_id": "a", "start": 0, "end": 8}, {"span_id": "b", "start": 8, "end": 15}],
    }
    res = segment_record(rec, 12.0, [], SegmentPolicy(mode="source_spans"))
    assert spans(res) == [(0.0, 8.0, "short", "span")]
    assert [(i.span_id, i.reason) for i in res.issues] == [("b", "span_out_of_range")]
    clipped = segment_record(rec, 12.0, [], SegmentPolicy(mode="source_spans", out_of_range="clip"))
    assert spans(clipped) == [(0.0, 8.0, "short", "span"), (8.0, 12.0, "short", "span")]
    # within end_tolerance_s a span is clipped silently
    near = {**rec, "spans": [{"span_id": "c", "start": 4, "end": 12.2}]}
    res = segment_record(near, 12.0, [], SegmentPolicy(mode="source_spans"))
    assert spans(res) == [(4.0, 12.0, "short", "span")] and not res.issues


def test_whole_policy_and_source_spans_fallback():
    p = SegmentPolicy(mode="whole", long=False)
    assert spans(segment_record({"record_id": "w:1"}, 17.5, [], p)) == [
        (0.0, 17.5, "short", "whole")
    ]
    # too short for any bucket → nothing
    assert segment_record({"record_id": "w:2"}, 1.0, [], p).samples == []
    # source_spans without spans falls back to shots
    q = SegmentPolicy(mode="source_spans", fallback="shots", long=False)
    assert spans(segment_record({"record_id": "m:3", "spans": []}, 12.0, [5.0], q)) == [
        (0.0, 5.0, "short", "shot"),
        (5.0, 12.0, "short", "shot"),
    ]


def test_retime_texts_points_segments_and_untimed():
    texts = [
        {"start": 4.0, "end": None, "text": "#C opens", "kind": "narration", "origin": "p1"},
        {"start": 12.0, "end": None, "text": "after", "kind": "narration", "origin": "p1"},
        {"start": 1.0, "end": 6.0, "text": "overlap", "kind": "asr", "origin": "cap"},
        {"start": 6.0, "end": 8.0, "text": "inside", "kind": "asr", "origin": "cap"},
        {"start": None, "end": None, "text": "title", "kind": "title", "origin": "name"},
    ]
    out = retime_texts(texts, 3.0, 10.0)
    assert out == [
        {"start": None, "end": None, "text": "title", "kind": "title", "origin": "name"},
        {
            "start": 0.0,
            "end": 3.0,
            "text": "overlap",
            "kind": "asr",
            "origin": "cap",
            "clipped": True,
        },
        {"start": 1.0, "end": None, "text": "#C opens", "kind": "narration", "origin": "p1"},
        {
            "start": 3.0,
            "end": 5.0,
            "text": "inside",
            "kind": "asr",
            "origin": "cap",
            "clipped": False,
        },
    ]


def test_snap_to_keyframe_moves_start_only_within_limit():
    from longvid.stages.work import SampleSpec

    s = SampleSpec(3.1, 10.0, "short", "shot")
    assert snap_to_keyframe(s, [0.0, 2.0, 4.0, 6.0], 1.0, 2.0).start == 4.0
    assert snap_to_keyframe(s, [0.0, 2.0, 6.0], 1.0, 2.0) is s  # next keyframe too far
    assert snap_to_keyframe(SampleSpec(4.0, 9.0, "short", "shot"), [4.0], 1.0, 2.0).start == 4.0


@pytest.mark.parametrize("n", [1, 5, 9])
def test_units_are_packed_by_declared_seconds_and_count(n):
    cfg = UnitsConfig(videos_per_unit=4, max_unit_seconds=250)
    offsets = pack_offsets(np.full(n, 100.0, np.float32), cfg)
    assert offsets.tolist() == [*range(0, n, 2), n]  # two 100 s records fit in 250 s
    # a count limit closes a unit too; a video longer than the limit is a unit alone
    assert pack_offsets(np.ones(9, np.float32), cfg).tolist() == [0, 4, 8, 9]
    assert pack_offsets(np.array([10, 900, 10], np.float32), cfg).tolist() == [0, 1, 2, 3]
