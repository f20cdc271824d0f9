"""MiraData v1: string clip ids, list-literal timestamps, window captions, grouping by source."""

from __future__ import annotations

import pytest

from longvid.errors import FormatError
from longvid.ingest.config import MiraDataSource
from longvid.ingest.miradata import V1_COLUMNS, parse_windows
from tests.ingest_util import accepted_inputs, by_id, collect, reasons, spans, texts, write_csv

WINDOWS = (
    "[|||120||| 240||| second part |||,|||0||| 120||| first part |||,|||240||| 360||| beyond |||,]"
)


def _row(
    clip_id,
    timestamp,
    *,
    framestamp="",
    fps="30.0",
    source="youtube, movies",
    file_path=None,
    dense="A dense caption.",
    short="A short caption.",
):
    num = clip_id.split(".")[0]
    stem = f"{int(num) // 1000:09d}/{int(num):012d}" if num.isdigit() else "x/x"
    n = clip_id.split(".")[-1]
    values = {
        "clip_id": clip_id,
        "source": source,
        "video_url": "https://www.youtube.com/watch?v=abc",
        "video_id": "abc",
        "width": "1280",
        "height": "720",
        "fps": fps,
        "seconds": "10.0",
        "timestamp": timestamp,
        "frame_number": "300",
        "framestamp": framestamp,
        "file_path": file_path if file_path is not None else f"video_clips/{stem}.{n}.mp4",
        "short_caption": short,
        "dense_caption": dense,
        "background_caption": "",
        "main_object_caption": "",
        "style_caption": "Realistic.",
        "camera_caption": "",
    }
    return [values[c] for c in V1_COLUMNS]


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "miradata"
    write_csv(root / "miradata_v1_9k.csv", V1_COLUMNS, [
        _row("1462616.30", "['00:06:21.300', '00:07:42.133']"),
        _row("1462616.3", "['00:00:00.000', '00:04:10.5']", dense=WINDOWS),
        _row("2000001.1", "", framestamp="[0, 558.0]", fps="24.0", source="pixabay"),
        _row("2000001.2", "['00:00:30.000', '00:00:30.000']"),
        _row("abc.1", "['00:00:00.000', '00:00:01.000']"),
        _row("1462616.7", "['00:10:00', '00:10:05.25']"),  # after another source: unsorted
        _row("1462616.30", "['00:06:21.300', '00:07:42.133']"),
        _row("", "['00:00:00.000', '00:00:01.000']"),
        _row("1462616.8", "['00:11:00', 'eleven']"),
    ])  # fmt: skip
    return root


def test_source_layout_groups_clips_by_source_video(release):
    records, rejects = collect(MiraDataSource(root=str(release)))
    got = by_id(records)
    assert sorted(got) == ["1462616", "2000001"]
    a = got["1462616"]
    assert a.video_uri == str(release / "000001462" / "000001462616.mp4")
    # ids kept as written: 1462616.3 and 1462616.30 are different clips
    assert spans(a) == [
        ("1462616.3", 0.0, 250.5, "['00:00:00.000', '00:04:10.5']"),
        ("1462616.30", 381.3, 462.133, "['00:06:21.300', '00:07:42.133']"),
        ("1462616.7", 600.0, 605.25, "['00:10:00', '00:10:05.25']"),
    ]
    # window captions: split, sorted by start, shifted by the clip start, clipped to its end
    dense = [t for t in texts(a) if t[4] == "dense_caption"]
    assert dense == [
        (0.0, 120.0, "first part", "caption", "dense_caption"),
        (120.0, 240.0, "second part", "caption", "dense_caption"),
        (240.0, 250.5, "beyond", "caption", "dense_caption"),
        (381.3, 462.133, "A dense caption.", "caption", "dense_caption"),
        (600.0, 605.25, "A dense caption.", "caption", "dense_caption"),
    ]
    origins = {t[4] for t in texts(a)}
    assert origins == {"short_caption", "dense_caption", "style_caption"}  # empty columns skipped
    assert a.categories == ["movies"] and a.raw["platform"] == "youtube"
    assert (a.declared_fps, a.declared_width, a.declared_height) == (30.0, 1280, 720)
    assert a.raw["input_records"] == 3
    assert [c["clip_id"] for c in a.raw["clips"]] == ["1462616.3", "1462616.30", "1462616.7"]
    b = got["2000001"]
    # framestamp "[0, 558.0]" at 24 fps when the timestamp is empty
    assert spans(b) == [("2000001.1", 0.0, 23.25, "[0, 558.0]")]
    assert b.categories == [] and b.raw["platform"] == "pixabay"
    assert b.video_uri == str(release / "000002000" / "000002000001.mp4")
    assert reasons(rejects) == {
        "miradata_v1_9k.csv:5": "bad_span",
        "miradata_v1_9k.csv:6": "bad_id",
        "miradata_v1_9k.csv:8": "duplicate_id",
        "miradata_v1_9k.csv:9": "missing_field",
        "miradata_v1_9k.csv:10": "bad_time",
    }
    assert accepted_inputs(records) + len(rejects) == 9  # every CSV row


def test_clips_layout_one_record_per_clip_file(release):
    records, rejects = collect(MiraDataSource(root=str(release), layout="clips"))
    got = by_id(records)
    assert list(got) == ["1462616.30", "1462616.3", "2000001.1", "1462616.7"]
    clip = got["1462616.30"]
    assert clip.video_uri == str(release / "video_clips" / "000001462" / "000001462616.30.mp4")
    assert clip.declared_duration == 10.0  # the `seconds` column
    assert texts(clip)[0] == (0.0, 80.833, "A short caption.", "caption", "short_caption")
    assert clip.raw["span_seconds"] == [381.3, 462.133]
    long_clip = [t for t in texts(got["1462616.3"]) if t[4] == "dense_caption"]
    assert [t[:3] for t in long_clip] == [
        (0.0, 120.0, "first part"),
        (120.0, 240.0, "second part"),
        (240.0, 250.5, "beyond"),
    ]
    # duplicates are the runner's job in this layout (same record id); rows still all accounted
    assert len(records) + len(rejects) == 9


def test_clip_file_path_escaping_the_root_is_rejected(release):
    write_csv(release / "miradata_v1_9k.csv", V1_COLUMNS, [
        _row("5.1", "['00:00:00', '00:00:02']", file_path="../../etc/passwd"),
        _row("5.2", "['00:00:00', '00:00:02']", file_path="/etc/passwd"),
        _row("5.3", "['00:00:00', '00:00:02']", file_path="video_clips/000000000/000000000005.3.mp4"),
    ])  # fmt: skip
    records, rejects = collect(MiraDataSource(root=str(release), layout="clips"))
    assert [r.video_id for r in records] == ["5.3"]
    assert [r.reason for r in rejects] == ["unsafe_id", "unsafe_id"]


def test_window_parser():
    assert parse_windows(WINDOWS) == [
        (0.0, 120.0, "first part"),
        (120.0, 240.0, "second part"),
        (240.0, 360.0, "beyond"),
    ]
    assert parse_windows("A plain caption [with brackets].") is None
    assert parse_windows("[|||0||| 120||| only one |||,]") == [(0.0, 120.0, "only one")]


def test_unreadable_window_caption_is_dropped_not_fatal(release):
    write_csv(
        release / "miradata_v1_9k.csv",
        V1_COLUMNS,
        [
            _row("7.1", "['00:00:00', '00:00:02']", dense="[|||zero||| 120||| text |||,]"),
        ],
    )
    records, rejects = collect(MiraDataSource(root=str(release)))
    assert rejects == [] and records[0].raw["dropped"] == {"bad_window_caption": 1}
    assert {t.origin for t in records[0].texts} == {"short_caption", "style_caption"}


def test_v0_csv_is_refused_with_expected_and_found_columns(release):
    v0 = ["index", "video_id", "start_frame", "end_frame", "fps", "start_timestep", "end_timestep"]
    write_csv(release / "miradata_v1_9k.csv", v0, [[0, "abc", 0, 100, 30, 0, 3.3]])
    with pytest.raises(FormatError) as exc:
        collect(MiraDataSource(root=str(release)))
    msg = str(exc.value)
    assert "miradata_v1_9k.csv" in msg and "v0" in msg
    assert str(V1_COLUMNS) in msg and str(v0) in msg
