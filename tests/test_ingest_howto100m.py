"""HowTo100M: video list + streamed caption.json with NaN texts, rolling ASR, odd ids."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.errors import FormatError
from longvid.ingest.base import Drops
from longvid.ingest.config import HowTo100MSource
from longvid.ingest.howto100m import dedup_rolling_asr, parse_captions
from tests.ingest_util import accepted_inputs, by_id, collect, reasons, texts, write_csv

CAPTION_JSON = (
    '{"-abc_DEF123": {"start": [0.0, 2.5, 5.0, 68.46000000000001], "end": [4.0, 7.0, 9.0, 70.0],'
    ' "text": ["so today we", "today we are making", NaN, "pancakes"]},\n'
    ' "_xyz987654A": {"start": [1, 3], "end": [2], "text": ["hi", "there"]},\n'
    ' "unlisted0001": {"start": [0.5], "end": [1.5], "text": ["hello  NaN  world"]},\n'
    ' "badentry0001": [1, 2],\n'
    ' "nokeys000001": {"start": [1]},\n'
    ' "a/b": {"start": [], "end": [], "text": []}}\n'
)


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "howto100m"
    write_csv(root / "HowTo100M_v1.csv", ["video_id", "category_1", "category_2", "rank", "task_id"], [
        ["-abc_DEF123", "Food and Entertaining", "Recipes", 1, 11967],
        ["_xyz987654A", "Hobbies and Crafts", "Crafts", 3, 22222],
        ["nocaption01", "Food and Entertaining", "Recipes", 2, 11967],
        ["-abc_DEF123", "Food and Entertaining", "Recipes", 1, 11967],
        ["../../etc/passwd", "x", "y", 1, 1],
        ["", "x", "y", 1, 1],
    ])  # fmt: skip
    (root / "task_ids.csv").write_text("11967\tMake Pancakes\n22222\tFold Paper Cranes\n")
    (root / "caption.json").write_text(CAPTION_JSON)
    return root


def test_adapter_parses_every_trap(release):
    records, rejects = collect(HowTo100MSource(root=str(release)))
    got = by_id(records)
    assert list(got) == ["-abc_DEF123", "_xyz987654A", "unlisted0001", "nocaption01"]
    first = got["-abc_DEF123"]
    # an id starting with '-' stays intact and the URI starts with the (absolute) root
    assert first.video_uri == str(release / "videos" / "-abc_DEF123.mp4")
    assert first.categories == ["Food and Entertaining", "Recipes", "Make Pancakes"]
    assert first.licence == "youtube-content"
    assert first.locator == "HowTo100M_v1.csv:2"
    # NaN text skipped and counted; rolling repeat removed; float artefact normalised
    assert texts(first) == [
        (0.0, 2.5, "so today we", "asr", "caption"),
        (2.5, 7.0, "are making", "asr", "caption"),
        (68.46, 70.0, "pancakes", "asr", "caption"),
    ]
    assert first.raw["dropped"] == {"nan_text": 1}
    assert first.raw["task_id"] == "11967" and first.raw["caption_locator"] == "caption.json:0"
    # lists of different lengths: read to the shortest, the rest counted
    assert texts(got["_xyz987654A"]) == [(1.0, 2.0, "hi", "asr", "caption")]
    assert got["_xyz987654A"].raw["dropped"] == {"misaligned": 1}
    assert got["_xyz987654A"].categories == ["Hobbies and Crafts", "Crafts", "Fold Paper Cranes"]
    # the word NaN inside a string is text, not a NaN token
    assert texts(got["unlisted0001"]) == [(0.5, 1.5, "hello NaN world", "asr", "caption")]
    assert got["unlisted0001"].categories == [] and got["unlisted0001"].raw["listed"] is False
    assert got["nocaption01"].texts == [] and got["nocaption01"].locator == "HowTo100M_v1.csv:4"
    assert reasons(rejects) == {
        "HowTo100M_v1.csv:5": "duplicate_id",
        "HowTo100M_v1.csv:6": "unsafe_id",
        "HowTo100M_v1.csv:7": "missing_field",
        "caption.json:3": "bad_record",
        "caption.json:4": "missing_field",
        "caption.json:5": "unsafe_id",
    }
    assert all(r.stage == "ingest" and r.source == "howto100m" for r in rejects)
    assert "'../../etc/passwd'" in next(r.detail for r in rejects if r.reason == "unsafe_id")
    # inputs: 6 CSV rows + 4 caption entries that are not in the CSV
    assert accepted_inputs(records) + len(rejects) == 6 + 4


def test_raw_caption_file_and_no_task_table(release):
    (release / "raw_caption.json").write_text(
        '{"nocaption01": {"start": [0], "end": [3.25], "text": ["and the a pancake"]}}'
    )
    (release / "task_ids.csv").unlink()
    records, rejects = collect(HowTo100MSource(root=str(release), caption_file="raw_caption.json"))
    got = by_id(records)
    assert texts(got["nocaption01"]) == [(0.0, 3.25, "and the a pancake", "asr", "raw_caption")]
    assert got["nocaption01"].categories == ["Food and Entertaining", "Recipes"]
    assert len(records) == 3 and len(rejects) == 3  # the three bad CSV rows


def test_task_table_with_header_and_commas(release):
    (release / "task_ids.csv").write_text("task_id,task_name\n11967,Make Pancakes\n")
    records, _ = collect(HowTo100MSource(root=str(release)))
    assert by_id(records)["nocaption01"].categories[-1] == "Make Pancakes"


def test_dedup_rule_on_hand_written_rolling_captions():
    segments = [
        (5.0, 9.0, "are making pancakes"),  # unsorted input
        (0.0, 4.0, "so today we"),
        (2.5, 7.0, "today we are making"),  # repeats the tail "today we"
        (5.0, 9.5, "yes"),  # same start as the previous kept one: merged
        (9.0, 12.0, "Pancakes YES"),  # only repeats (case-insensitively): dropped
        (20.0, 21.0, "later"),  # a gap is kept
    ]
    out, repeats = dedup_rolling_asr(segments)
    assert out == [
        (0.0, 2.5, "so today we"),
        (2.5, 5.0, "are making"),
        (5.0, 9.5, "pancakes yes"),
        (20.0, 21.0, "later"),
    ]
    assert repeats == 1
    for (s0, e0, _), (s1, _, _) in zip(out, out[1:], strict=False):
        assert s0 < e0 <= s1  # non-overlapping, in order


def test_dedup_keeps_clean_segments_untouched():
    clean = [(0.0, 1.0, "one two"), (1.0, 2.0, "three four"), (3.0, 4.0, "five")]
    assert dedup_rolling_asr(clean) == (clean, 0)
    assert dedup_rolling_asr([(0.0, 1.0, "a b"), (0.5, 1.5, "a b")]) == ([(0.0, 1.0, "a b")], 1)


def test_parse_captions_counts_each_kind_of_bad_item():
    drops = Drops()
    value = {
        "start": [0, 1, "x", 5, 7, 9],
        "end": [1, 2, 3, 4, 8, 10],
        "text": ["a", None, "b", "c", 42, "   "],
    }
    segments, n = parse_captions(value, drops, dedup=False)
    assert segments == [(0.0, 1.0, "a")] and n == 6
    assert dict(drops.counts) == {
        "nan_text": 1,
        "bad_time": 1,
        "bad_span": 1,
        "non_string_text": 1,
        "empty_text": 1,
    }


def test_caption_file_that_is_not_a_dict_is_a_format_error(release):
    (release / "caption.json").write_text(json.dumps([{"video_id": "x"}]))
    with pytest.raises(FormatError) as exc:
        collect(HowTo100MSource(root=str(release)))
    assert "caption.json" in str(exc.value) and "found a file starting with b'['" in str(exc.value)


def test_video_list_without_video_id_column_is_a_format_error(release):
    write_csv(release / "HowTo100M_v1.csv", ["id", "category"], [["a", "b"]])
    with pytest.raises(FormatError) as exc:
        collect(HowTo100MSource(root=str(release)))
    msg = str(exc.value)
    assert "HowTo100M_v1.csv" in msg and "found ['id', 'category']" in msg and "video_id" in msg


_segment = st.tuples(
    st.integers(0, 40).map(lambda x: x / 2),
    st.integers(1, 12).map(lambda x: x / 2),
    st.lists(st.sampled_from(["a", "b", "A", "c"]), min_size=1, max_size=5).map(" ".join),
).map(lambda t: (t[0], t[0] + t[1], t[2]))


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(_segment, max_size=15))
def test_dedup_output_is_ordered_and_non_overlapping(segments):
    out, repeats = dedup_rolling_asr(segments)
    assert all(s < e for s, e, _ in out)
    assert all(e0 <= s1 and s0 < s1 for (s0, e0, _), (s1, _, _) in zip(out, out[1:], strict=False))
    words_in = sum(len(t.split()) for _, _, t in segments)
    assert sum(len(t.split()) for _, _, t in out) <= words_in
    assert len(out) + repeats <= len(segments)
    # every input start is covered: the first output starts at the earliest input start
    if segments:
        assert out and out[0][0] == min(s for s, _, _ in segments)
