"""WebVid: columns by name in either release order, (page_dir, videoid) ids, ISO durations."""

from __future__ import annotations

import pytest

from longvid.errors import FormatError
from longvid.ingest.config import WebVidSource
from tests.ingest_util import by_id, collect, reasons, texts, write_csv

HEADER_10M = ["videoid", "contentUrl", "duration", "page_dir", "name"]
HEADER_2M = ["videoid", "name", "page_idx", "page_dir", "duration", "contentUrl"]


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "webvid"
    write_csv(root / "results_10M_train.csv", HEADER_10M, [
        ["1001", "https://x/1001.mp4", "PT00H00M17S", "000001_000050", "Waves  at sunset."],
        ["1001", "https://x/1001b.mp4", "PT00H01M02S", "000051_000100", "Another clip."],
        ["-1002", "https://x/1002.mp4", "17 seconds", "000001_000050", "Bad duration."],
        ["1003", "https://x/1003.mp4", "PT00H00M09S", "000001_000050", ""],
        ["1004", "https://x/1004.mp4", "PT00H00M09S", "../../etc", "Escapes."],
        ["-1005", "https://x/1005.mp4", "", "000001_000050", "No duration."],
    ])  # fmt: skip
    write_csv(
        root / "results_2M_val.csv",
        HEADER_2M,
        [
            ["2001", "A cat.", "7", "000301_000350", "PT00H00M20S", "https://x/2001.mp4"],
        ],
    )
    return root


def test_both_column_orders_map_by_name(release):
    records, rejects = collect(WebVidSource(root=str(release)))
    got = by_id(records)
    assert list(got) == [
        "000001_000050_1001",
        "000051_000100_1001",
        "000001_000050_-1005",
        "000301_000350_2001",
    ]
    first = got["000001_000050_1001"]
    assert first.video_uri == str(release / "videos" / "000001_000050" / "1001.mp4")
    assert first.declared_duration == 17.0 and first.licence == "webvid-non-commercial-research"
    assert texts(first) == [(0.0, 17.0, "Waves at sunset.", "title", "name")]
    assert first.raw == {
        "videoid": "1001",
        "contentUrl": "https://x/1001.mp4",
        "duration": "PT00H00M17S",
        "page_dir": "000001_000050",
        "name": "Waves  at sunset.",
    }
    # the same videoid under another page_dir is another video
    assert got["000051_000100_1001"].declared_duration == 62.0
    assert got["000001_000050_-1005"].declared_duration is None
    val = got["000301_000350_2001"]
    assert val.video_uri == str(release / "videos" / "000301_000350" / "2001.mp4")
    assert texts(val) == [(0.0, 20.0, "A cat.", "title", "name")] and val.raw["page_idx"] == "7"
    assert val.locator == "results_2M_val.csv:2"
    assert reasons(rejects) == {
        "results_10M_train.csv:4": "bad_time",
        "results_10M_train.csv:5": "missing_field",
        "results_10M_train.csv:6": "unsafe_id",
    }
    assert len(records) + len(rejects) == 7


def test_files_are_read_in_pattern_order(release):
    records, _ = collect(
        WebVidSource(root=str(release), metadata_files=["results_2M_val.csv", "results_10M_*.csv"])
    )
    assert records[0].video_id == "000301_000350_2001"
    assert [r.locator.split(":")[0] for r in records] == ["results_2M_val.csv"] + [
        "results_10M_train.csv"
    ] * 3


def test_missing_columns_are_a_format_error(release):
    write_csv(release / "results_10M_train.csv", ["id", "caption"], [["1", "x"]])
    with pytest.raises(FormatError) as exc:
        collect(WebVidSource(root=str(release), metadata_files=["results_10M_train.csv"]))
    msg = str(exc.value)
    assert "results_10M_train.csv" in msg and "found ['id', 'caption']" in msg
    assert "missing ['videoid', 'page_dir', 'name']" in msg


def test_a_missing_named_file_is_a_storage_error(release):
    from longvid.errors import NotFoundError

    with pytest.raises(NotFoundError) as exc:
        collect(WebVidSource(root=str(release), metadata_files=["results_2M_train.csv"]))
    assert "results_2M_train.csv" in str(exc.value)
