"""Ingest of the sample corpus (all six sources from their conf/sources YAML files), checked
against the corpus's ground truth and against record counts taken from the files themselves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from longvid.config import read_yaml
from longvid.ingest.config import IngestConfig
from longvid.ingest.runner import run_ingest

SOURCES = ["ego4d", "howto100m", "hdvila", "miradata", "webvid", "generic"]


def _csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def expected_inputs(corpus: Path) -> dict[str, int]:
    """Input records per source, counted straight from the release files."""
    ego = json.loads((corpus / "ego4d/v2/ego4d.json").read_text())
    return {
        "ego4d": len(ego["videos"]),
        "howto100m": _csv_rows(corpus / "howto100m/HowTo100M_v1.csv"),
        "hdvila": _lines(corpus / "hdvila/hdvila_part0.jsonl"),
        "miradata": _csv_rows(corpus / "miradata/miradata_v1_9k.csv"),
        "webvid": _csv_rows(corpus / "webvid/results_10M_train.csv")
        + _csv_rows(corpus / "webvid/results_2M_val.csv"),
        "generic": _lines(corpus / "generic/manifest.jsonl"),
    }


@pytest.fixture(scope="module")
def ingested(sample_corpus, tmp_path_factory):
    sources = []
    for name in SOURCES:
        data = read_yaml(Path("conf/sources") / f"{name}.yaml")
        data["root"] = str(sample_corpus / name)
        sources.append(data)
    out = tmp_path_factory.mktemp("ingest-corpus")
    counts = run_ingest(IngestConfig(sources=sources, out=str(out), progress=False))
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    truth = json.loads((sample_corpus / "ground_truth.json").read_text())
    return counts, rows, rejects, truth


def _of(rows, source):
    return [r for r in rows if r["source"] == source]


def test_counts_add_up_per_source(ingested, sample_corpus):
    counts, rows, rejects, _ = ingested
    expected = expected_inputs(sample_corpus)
    assert list(counts) == SOURCES
    for name in SOURCES:
        c = counts[name]
        assert c.inputs == expected[name], name
        assert c.accepted + c.rejected == c.inputs, name
        assert c.rows == len(_of(rows, name))
    assert rejects == []  # the sample corpus is well-formed
    assert counts["miradata"].rows == 2 and counts["miradata"].accepted == 4
    assert dict(counts["howto100m"].dropped) == {"nan_text": 1}


def test_every_uri_is_a_file_of_the_ground_truth(ingested, sample_corpus):
    _, rows, _, truth = ingested
    raw_videos = {
        str(sample_corpus / v["path"]) for v in truth["videos"] if v.get("kind") != "clip"
    }
    uris = [r["video_uri"] for r in rows]
    assert len(set(uris)) == len(uris)
    assert set(uris) == raw_videos
    assert all(Path(u).is_file() for u in uris)
    for r in rows:
        assert r["licence"] and r["record_id"] == f"{r['source']}:{r['video_id']}"


def test_source_spans_match_the_ground_truth(ingested, sample_corpus):
    _, rows, _, truth = ingested
    by_path = {str(sample_corpus / v["path"]): v for v in truth["videos"]}
    for r in _of(rows, "hdvila"):
        shots = {(s["start"], s["end"]) for s in by_path[r["video_uri"]]["shots"]}
        assert r["spans"] and {(s["start"], s["end"]) for s in r["spans"]} <= shots
    clips = [v for v in truth["videos"] if v.get("kind") == "clip"]
    for r in _of(rows, "miradata"):
        want = sorted(
            (v["id"], v["parent_start"], v["parent_end"])
            for v in clips
            if str(sample_corpus / v["parent"]) == r["video_uri"]
        )
        assert [(s["span_id"], s["start"], s["end"]) for s in r["spans"]] == want
    assert {s["span_id"] for r in _of(rows, "miradata") for s in r["spans"]} >= {
        c["id"] for c in clips if c["id"].endswith((".3", ".30"))
    }


def test_texts_are_clean_and_inside_their_videos(ingested, sample_corpus):
    _, rows, _, truth = ingested
    duration = {str(sample_corpus / v["path"]): v["duration"] for v in truth["videos"]}
    for r in rows:
        for t in r["texts"]:
            assert t["text"] and "#" not in t["text"]
            assert 0.0 <= t["start"] <= duration[r["video_uri"]] + 1e-6, (r["record_id"], t)
            if t["kind"] == "title":  # WebVid: over the declared (scraped, maybe wrong) duration
                assert (t["start"], t["end"]) == (0.0, r["declared_duration"])
            elif t["end"] is not None:
                assert t["start"] < t["end"] <= duration[r["video_uri"]] + 1.0, (r["record_id"], t)
    for r in _of(rows, "howto100m"):
        asr = r["texts"]
        assert asr and all(a["end"] <= b["start"] for a, b in zip(asr, asr[1:], strict=False))
    ego = _of(rows, "ego4d")
    assert all(any(t["kind"] == "narration" and t["end"] is None for t in r["texts"]) for r in ego)
    assert all(any(t["kind"] == "summary" for t in r["texts"]) for r in ego)


def test_webvid_keeps_the_declared_duration_and_both_page_dirs(ingested, sample_corpus):
    _, rows, _, truth = ingested
    web = {r["video_uri"]: r for r in _of(rows, "webvid")}
    for v in (v for v in truth["videos"] if v["source"] == "webvid"):
        r = web[str(sample_corpus / v["path"])]
        assert r["declared_duration"] == v["metadata_duration_s"]
        assert r["video_id"] == f"{v['page_dir']}_{v['id']}"
    ids = [r["video_id"].split("_")[-1] for r in web.values()]
    assert len(ids) - len(set(ids)) == 1  # one videoid under two page_dirs


def test_generic_ids(ingested):
    _, rows, _, _ = ingested
    assert sorted(r["video_id"] for r in _of(rows, "generic")) == [
        "clip c",
        "clip_a",
        "holiday__clip_b",
    ]
