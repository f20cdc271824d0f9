"""Ego4D: ego4d.json + narration.json (dict keyed by uid), tags turned into words."""

from __future__ import annotations

import json

import pytest

from longvid.errors import FormatError
from longvid.ingest.config import Ego4DSource
from longvid.ingest.ego4d import untag
from tests.ingest_util import accepted_inputs, by_id, collect, reasons, spans, texts

UID1 = "2f1c43a8-7d6a-4b4e-9c1e-0a5b6c7d8e9f"
UID2 = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "ego4d"
    (root / "v2" / "annotations").mkdir(parents=True)
    videos = [
        {
            "video_uid": UID1,
            "duration_sec": 1440.5,
            "scenarios": ["Cooking", "Baking"],
            "video_metadata": {
                "fps": 30.0,
                "num_frames": 43215,
                "display_resolution_width": 1920,
                "display_resolution_height": 1080,
                "mp4_duration_sec": 1440.5,
            },
            "split_em": None,
            "video_source": "unict",
            "device": "GoPro Hero 7",
            "some_new_field": {"nested": [1, 2]},
        },
        {"video_uid": UID2, "duration_sec": 900, "scenarios": [], "video_metadata": {}},
        {"video_uid": "../escape", "duration_sec": 5},
        {"video_uid": UID1, "duration_sec": 3},
        {"duration_sec": 5},
    ]
    top = {
        "date": "2023-03-07",
        "version": "v2",
        "description": "x",
        "videos": videos,
        "clips": [{"clip_uid": "c", "video_uid": UID1}],
        "concurrent_video_sets": [],
        "physical_settings": [],
    }
    (root / "v2" / "ego4d.json").write_text(json.dumps(top, indent=2))
    narration = {
        UID1: {
            "narration_pass_1": {
                "narrations": [
                    {
                        "timestamp_sec": 12.5,
                        "timestamp_frame": 375,
                        "narration_text": "#C C opens a door",
                        "_unmapped_timestamp_sec": 14.1,
                        "annotation_uid": "a",
                    },
                    {"timestamp_sec": 3.0, "narration_text": "#O man X gives C a cup"},
                    {"timestamp_frame": 150, "narration_text": "#C C picks the #unsure"},
                    {"timestamp_sec": 20.0, "narration_text": 42},
                    {"timestamp_sec": "abc", "narration_text": "#C C sits"},
                    {"timestamp_sec": 21.0, "narration_text": "#unsure"},
                    {"timestamp_sec": 22.0, "narration_text": "#C C looks at the oven #unsure"},
                ],
                "summaries": [
                    {"start_sec": 0.0, "end_sec": 60.0, "summary_text": "#summary C was cooking"},
                    {"start_sec": 70, "end_sec": 65, "summary_text": "C left"},
                ],
            },
            "narration_pass_2": {
                "narrations": [{"timestamp_sec": 1.0, "narration_text": "#C C waves at #O O"}],
                "summaries": [],
            },
            "status": "complete",
        },
        "ghost-uid": {"narration_pass_1": {"narrations": [], "summaries": []}},
    }
    (root / "v2" / "annotations" / "narration.json").write_text(json.dumps(narration))
    return root


def test_adapter_joins_videos_and_narrations(release):
    records, rejects = collect(Ego4DSource(root=str(release)))
    got = by_id(records)
    assert list(got) == [UID1, UID2]
    rec = got[UID1]
    assert rec.video_uri == str(release / "v2" / "full_scale" / f"{UID1}.mp4")
    assert (rec.declared_duration, rec.declared_fps) == (1440.5, 30.0)
    assert (rec.declared_width, rec.declared_height) == (1920, 1080)
    assert rec.categories == ["Cooking", "Baking"] and rec.licence == "ego4d-licence"
    assert rec.locator == "ego4d.json:videos[0]"
    assert texts(rec) == [
        (0.0, 60.0, "The camera wearer was cooking", "summary", "narration_pass_1"),
        (3.0, None, "Man X gives the camera wearer a cup", "narration", "narration_pass_1"),
        (5.0, None, "The camera wearer picks something", "narration", "narration_pass_1"),
        (12.5, None, "The camera wearer opens a door", "narration", "narration_pass_1"),
        (22.0, None, "The camera wearer looks at the oven", "narration", "narration_pass_1"),
    ]
    assert spans(rec) == [("narration_pass_1.summary.0", 0.0, 60.0, "[0.0, 60.0]")]
    assert rec.raw["dropped"] == {
        "bad_span": 1,
        "bad_time": 1,
        "empty_text": 1,
        "non_string_text": 1,
    }
    assert rec.raw["narration_passes"] == ["narration_pass_1"]
    assert rec.raw["video_source"] == "unict" and "some_new_field" not in rec.raw
    assert got[UID2].texts == [] and got[UID2].declared_fps is None
    assert reasons(rejects) == {
        "ego4d.json:videos[2]": "unsafe_id",
        "ego4d.json:videos[3]": "duplicate_id",
        "ego4d.json:videos[4]": "missing_field",
        "narration.json:1": "unknown_video",
    }
    # inputs: 5 videos[] entries + 1 narration entry for an unknown uid
    assert accepted_inputs(records) + len(rejects) == 6


def test_all_passes_keeps_the_second_pass(release):
    records, _ = collect(Ego4DSource(root=str(release), all_passes=True))
    rec = by_id(records)[UID1]
    assert texts(rec)[0] == (
        0.0,
        60.0,
        "The camera wearer was cooking",
        "summary",
        "narration_pass_1",
    )
    assert (
        1.0,
        None,
        "The camera wearer waves at another person",
        "narration",
        "narration_pass_2",
    ) in texts(rec)
    assert rec.raw["narration_passes"] == ["narration_pass_1", "narration_pass_2"]
    assert not any("#" in t.text for r in records for t in r.texts)


def test_an_empty_first_pass_falls_back_to_the_second(release):
    path = release / "v2" / "annotations" / "narration.json"
    narration = json.loads(path.read_text())
    narration[UID1]["narration_pass_1"] = {"narrations": [], "summaries": []}
    path.write_text(json.dumps(narration))
    records, _ = collect(Ego4DSource(root=str(release)))
    rec = by_id(records)[UID1]
    assert texts(rec) == [
        (1.0, None, "The camera wearer waves at another person", "narration", "narration_pass_2")
    ]
    assert rec.raw["narration_passes"] == ["narration_pass_2"]


def test_without_narration_file(release):
    records, rejects = collect(Ego4DSource(root=str(release), narration_file=None))
    assert [r.texts for r in records] == [[], []] and len(rejects) == 3


@pytest.mark.parametrize(
    "raw, words",
    [
        ("#C C opens a door", "The camera wearer opens a door"),
        ("#c c walks to the sink", "The camera wearer walks to the sink"),
        ("#O man X gives C a cup", "Man X gives the camera wearer a cup"),
        ("#O O waves at C", "Another person waves at the camera wearer"),
        ("#C C talks to #O woman Y", "The camera wearer talks to woman Y"),
        ("#C C looks at C's phone .", "The camera wearer looks at the camera wearer's phone."),
        ("#C C picks #unsure", "The camera wearer picks something"),
        ("#C C puts #unsure in the bag", "The camera wearer puts something in the bag"),
        ("#C C adjusts the #Unsure.", "The camera wearer adjusts something."),
        (
            "#C C watches a screen drifting up #unsure",
            "The camera wearer watches a screen drifting up",
        ),
        ("#summary C cooked a meal", "The camera wearer cooked a meal"),
        ("#unsure", ""),
        ("#C #unsure .", ""),
        ("#C C holds a #cup", "The camera wearer holds a"),
    ],
)
def test_untag(raw, words):
    assert untag(raw) == words
    assert "#" not in untag(raw)


def test_wrong_top_level_is_a_format_error(release):
    (release / "v2" / "ego4d.json").write_text(json.dumps({"video_list": [], "version": "v2"}))
    with pytest.raises(FormatError) as exc:
        collect(Ego4DSource(root=str(release)))
    msg = str(exc.value)
    assert "ego4d.json" in msg and "['video_list', 'version']" in msg and "videos" in msg


def test_narration_list_is_a_format_error(release):
    (release / "v2" / "annotations" / "narration.json").write_text("[]")
    with pytest.raises(FormatError) as exc:
        collect(Ego4DSource(root=str(release)))
    assert "narration.json" in str(exc.value) and "keyed by id" in str(exc.value)
