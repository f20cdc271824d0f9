"""HD-VILA-100M: JSONL metadata with span strings, clip text joined through an on-disk index."""

from __future__ import annotations

import json

import pytest

from longvid.errors import FormatError
from longvid.ingest.config import HDVilaSource
from tests.ingest_util import accepted_inputs, by_id, collect, reasons, spans, texts


def _line(vid, clips, key="clip"):
    return json.dumps(
        {
            "video_id": vid,
            "url": f"https://www.youtube.com/watch?v={vid}",
            key: [{"clip_id": c, "span": s} for c, s in clips],
        }
    )


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "hdvila"
    root.mkdir()
    lines = [
        _line("-vid0000001", [
            ("-vid0000001.1.mp4", ["00:00:00.000", "00:00:12.50000"]),
            ("-vid0000001.2.mp4", ["0:00:12.5", "00:00:25.1"]),
            ("-vid0000001.3.mp4", ["00:00:30.000", "00:00:29.000"]),
        ]),
        '{"video_id": "broken", "clip": [',
        _line("vid2", [("vid2.1.mp4", ["00:00:00.000", "00:00:01.000"])], key="clips"),
        _line("../x", [("x.1.mp4", ["00:00:00.000", "00:00:01.000"])]),
        _line("vid3", [("vid3.1.mp4", ["00:01:00.000", "00:00:59.000"])]),
        "",
        _line("vid4", [("vid4.1.mp4", ["1:02:03.4567", "1:02:05"])]),
    ]  # fmt: skip
    (root / "hdvila_part0.jsonl").write_text("\n".join(lines) + "\n")
    (root / "renamed_part1.jsonl").write_text(
        _line("vid5", [("vid5.1.mp4", ["00:00:02.000", "00:00:04.000"])]) + "\n"
    )
    text_lines = [
        {"clip_id": "-vid0000001.1.mp4", "text": "hello there"},
        {"clip_id": "-vid0000001.2.mp4", "text": 7},
        {"clip_id": "vid4.1.mp4", "text": "  spaced   text "},
        {"clip_id": "vid4.1.mp4", "text": "a later duplicate"},
        {"no_clip_id": 1},
    ]
    (root / "hdvila_clip_text_100m.jsonl").write_text(
        "\n".join(json.dumps(t) for t in text_lines) + "\n"
    )
    return root


def test_raw_video_mode(release):
    cfg = HDVilaSource(
        root=str(release), metadata_files=["hdvila_part*.jsonl", "renamed_part1.jsonl"]
    )
    records, rejects = collect(cfg)
    got = by_id(records)
    assert list(got) == ["-vid0000001", "vid4", "vid5"]
    first = got["-vid0000001"]
    assert first.video_uri == str(release / "download_videos" / "-vid0000001.mp4")
    assert first.licence == "hdvila-research-use-agreement"
    assert first.locator == "hdvila_part0.jsonl:1"
    assert spans(first) == [
        ("-vid0000001.1.mp4", 0.0, 12.5, '["00:00:00.000", "00:00:12.50000"]'),
        ("-vid0000001.2.mp4", 12.5, 25.1, '["0:00:12.5", "00:00:25.1"]'),
    ]
    # clip text aligned to the clip span; the non-string text was skipped
    assert texts(first) == [(0.0, 12.5, "hello there", "asr", "hdvila_clip_text")]
    assert first.raw["dropped"] == {"bad_span": 1}
    assert first.raw["url"] == "https://www.youtube.com/watch?v=-vid0000001"
    assert spans(got["vid4"]) == [("vid4.1.mp4", 3723.4567, 3725.0, '["1:02:03.4567", "1:02:05"]')]
    assert texts(got["vid4"]) == [(3723.4567, 3725.0, "spaced text", "asr", "hdvila_clip_text")]
    assert got["vid5"].locator == "renamed_part1.jsonl:1" and got["vid5"].texts == []
    assert reasons(rejects) == {
        "hdvila_part0.jsonl:2": "bad_json",
        "hdvila_part0.jsonl:3": "missing_field",
        "hdvila_part0.jsonl:4": "unsafe_id",
        "hdvila_part0.jsonl:5": "bad_span",
    }
    assert "'clips'" in next(r.detail for r in rejects if r.reason == "missing_field")
    # inputs: 7 non-blank metadata lines over both files
    assert accepted_inputs(records) + len(rejects) == 7


def test_clip_file_mode(release):
    records, rejects = collect(HDVilaSource(root=str(release), use_clip_files=True))
    got = by_id(records)
    assert list(got) == ["-vid0000001.1", "-vid0000001.2", "vid4.1"]
    clip = got["-vid0000001.2"]
    assert clip.video_uri == str(release / "video_clips" / "-vid0000001" / "-vid0000001.2.mp4")
    assert clip.declared_duration == 12.6 and clip.texts == []
    assert clip.raw["span_seconds"] == [12.5, 25.1]
    assert texts(got["-vid0000001.1"]) == [(0.0, 12.5, "hello there", "asr", "hdvila_clip_text")]
    assert reasons(rejects) == {
        "hdvila_part0.jsonl:1:clip[2]": "bad_span",
        "hdvila_part0.jsonl:2": "bad_json",
        "hdvila_part0.jsonl:3": "missing_field",
        "hdvila_part0.jsonl:4": "unsafe_id",
        "hdvila_part0.jsonl:5:clip[0]": "bad_span",
    }
    # inputs: the clips of readable clip lists (3 + 1 + 1 + 1), plus one for the unreadable
    # line and one for vid2's line, whose 'clip' list is missing
    assert accepted_inputs(records) + len(rejects) == (3 + 1 + 1 + 1) + 1 + 1


def test_text_file_given_as_metadata_is_a_format_error(release):
    cfg = HDVilaSource(
        root=str(release), metadata_files=["hdvila_clip_text_100m.jsonl"], text_file=None
    )
    with pytest.raises(FormatError) as exc:
        collect(cfg)
    assert "hdvila_clip_text_100m.jsonl" in str(exc.value) and "clip_id" in str(exc.value)


def test_no_matching_metadata_file_is_a_format_error(release):
    with pytest.raises(FormatError) as exc:
        collect(HDVilaSource(root=str(release), metadata_files=["nothing_*.jsonl"]))
    assert "no file matches nothing_*.jsonl" in str(exc.value)
