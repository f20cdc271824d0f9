"""Generic source: a folder of videos, or a JSONL/CSV list with path (+ id, text, spans)."""

from __future__ import annotations

import json

import pytest

from longvid.errors import FormatError
from longvid.ingest.config import GenericSource
from tests.ingest_util import by_id, collect, reasons, spans, texts, write_csv


def test_folder_mode_lists_videos_recursively(tmp_path):
    root = tmp_path / "mine"
    for rel in [
        "a.mp4",
        "sub/b.MKV",
        "sub/deeper/c d.webm",
        "notes.txt",
        ".hidden.mp4",
        "-dash.mp4",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"not really a video")
    records, rejects = collect(GenericSource(root=str(root)))
    got = by_id(records)
    assert sorted(got) == ["-dash", "a", "sub__b", "sub__deeper__c d"]
    assert got["sub__b"].video_uri == str(root / "sub" / "b.MKV")
    assert got["sub__deeper__c d"].raw == {"path": "sub/deeper/c d.webm"}
    assert got["a"].licence == "unspecified" and got["a"].texts == [] and rejects == []
    # a file:// root gives the same records
    again, _ = collect(GenericSource(root=f"file://{root}"))
    assert [r.video_uri for r in again] == [r.video_uri for r in records]


@pytest.fixture
def listed(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    lines = [
        {"path": "a.mp4"},
        {
            "path": "b.mp4",
            "id": "-b",
            "text": "A  whole-video caption.",
            "duration": 12.5,
            "categories": ["home"],
            "licence": "cc-by-4.0",
        },
        {
            "path": "c.mp4",
            "text": [
                {"start": "00:00:01.5", "end": 3, "text": "first"},
                [0, 1, "zero"],
                [5, "a point"],
            ],
            "spans": [[0, 5], {"start": 6, "end": "00:00:09.25", "id": "tail"}],
            "fps": 25,
        },
        {"path": "/etc/passwd"},
        {"path": "../outside.mp4"},
        {"path": "d.mp4", "text": 42},
        {"path": "e.mp4", "spans": [[5, 5]]},
        "not json at all",
        {"text": "no path"},
        {"path": "f.mp4", "text": [{"start": 0, "end": 1, "text": None}]},
        {"path": "s3://bucket/x.mp4"},
        {"path": "g.mp4", "spans": [["00:00:01", "soon"]]},
    ]
    body = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    (root / "list.jsonl").write_text(body)
    return root


def test_jsonl_list(listed):
    records, rejects = collect(GenericSource(root=str(listed), manifest="list.jsonl"))
    got = by_id(records)
    assert list(got) == ["a", "-b", "c"]
    assert got["a"].video_uri == str(listed / "a.mp4") and got["a"].locator == "list.jsonl:1"
    b = got["-b"]
    assert b.video_uri == str(listed / "b.mp4")
    assert texts(b) == [(0.0, 12.5, "A whole-video caption.", "caption", "text")]
    assert (b.declared_duration, b.categories, b.licence) == (12.5, ["home"], "cc-by-4.0")
    c = got["c"]
    assert texts(c) == [
        (0.0, 1.0, "zero", "caption", "text"),
        (1.5, 3.0, "first", "caption", "text"),
        (5.0, None, "a point", "caption", "text"),
    ]
    assert spans(c) == [("0", 0.0, 5.0, "[0, 5]"), ("tail", 6.0, 9.25, '[6, "00:00:09.25"]')]
    assert c.declared_fps == 25.0
    assert reasons(rejects) == {
        "list.jsonl:4": "unsafe_id",
        "list.jsonl:5": "unsafe_id",
        "list.jsonl:6": "bad_text",
        "list.jsonl:7": "bad_span",
        "list.jsonl:8": "bad_json",
        "list.jsonl:9": "missing_field",
        "list.jsonl:10": "bad_text",
        "list.jsonl:11": "unsafe_id",
        "list.jsonl:12": "bad_time",
    }
    assert len(records) + len(rejects) == 12


def test_csv_list_with_list_literal_spans(tmp_path):
    root = tmp_path / "mine"
    write_csv(root / "list.csv", ["path", "id", "text", "spans", "categories"], [
        ["x/one.mp4", "", "Caption one.", "[[0, 5], [5, 9.5]]", "a; b"],
        ["two.mp4", "second", "", "", ""],
        ["three.mp4", "", "", "[[3, 1]]", ""],
        ["four.mp4", "", "", "__import__('os')", ""],
    ])  # fmt: skip
    records, rejects = collect(
        GenericSource(root=str(root), manifest="list.csv", text_kind="narration")
    )
    got = by_id(records)
    assert list(got) == ["x__one", "second"]
    one = got["x__one"]
    assert spans(one) == [
        ("0", 0.0, 5.0, "[[0, 5], [5, 9.5]]"),
        ("1", 5.0, 9.5, "[[0, 5], [5, 9.5]]"),
    ]
    assert texts(one) == [(0.0, None, "Caption one.", "narration", "text")]
    assert one.categories == ["a", "b"] and one.locator == "list.csv:2"
    assert reasons(rejects) == {"list.csv:4": "bad_span", "list.csv:5": "bad_span"}


def test_list_without_path_column_is_a_format_error(tmp_path):
    write_csv(tmp_path / "list.csv", ["file", "text"], [["a.mp4", "x"]])
    with pytest.raises(FormatError) as exc:
        collect(GenericSource(root=str(tmp_path), manifest="list.csv"))
    assert "list.csv" in str(exc.value) and "'path'" in str(exc.value)
