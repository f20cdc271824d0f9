"""The audit's parts on their own: evaluation lists and id normalisation, histograms, duplicate
clusters, verdicts, and the config file against the config model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.audit.checks import CHECKS, verdicts
from longvid.audit.config import AuditConfig
from longvid.audit.duplicates import corpus_samples, groups, removed_by_build
from longvid.audit.eval_embed import windows
from longvid.audit.leakage import corpus_ids, id_leaks, normalise_id, read_eval_list, youtube_id
from longvid.audit.stats import histogram
from longvid.config import load_config
from longvid.dedup import DedupConfig, find_duplicates
from longvid.dedup.filter import detail
from longvid.errors import FormatError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, want", [
    ("https://www.youtube.com/watch?v=-ItHUJj9mQI", "-ItHUJj9mQI"),
    ("https://www.youtube.com/watch?feature=share&v=_Zbp1Jr-AeA&t=42s", "_Zbp1Jr-AeA"),
    ("http://youtube.com/watch?v=cd58wHGdiRK#t=3", "cd58wHGdiRK"),
    ("youtu.be/zZgLuBqqtVP?si=abc", "zZgLuBqqtVP"),
    ("https://m.youtube.com/shorts/S2D0FQJTSLi", "S2D0FQJTSLi"),
    ("https://www.youtube-nocookie.com/embed/gR7zJV9h7vR?start=5", "gR7zJV9h7vR"),
    ("www.youtube.com/v/gR7zJV9h7vR", "gR7zJV9h7vR"),
    ("https://www.youtube.com/live/gR7zJV9h7vR", "gR7zJV9h7vR"),
])
def test_youtube_urls_of_every_form_give_the_video_id(text, want):
    assert youtube_id(text) == want
    assert normalise_id(text) == want


@pytest.mark.parametrize("text, want", [
    ("https://www.youtube.com/watch?v=tooShort", "https://www.youtube.com/watch?v=tooShort"),
    ("https://vimeo.com/videos/12345.mp4", "12345"),
    ("/data/videomme/data/-ItHUJj9mQI.mp4", "-ItHUJj9mQI"),
    ("clips\\abc.MKV", "abc"),
    ("  plain_id  ", "plain_id"),
    ("v_-ItHUJj9mQI", "v_-ItHUJj9mQI"),
])
def test_other_ids_keep_their_last_path_part_without_extension(text, want):
    got = normalise_id(text)
    if want.startswith("https://"):
        assert youtube_id(text) is None  # not 11 characters: not a YouTube id
    else:
        assert got == want


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_evaluation_lists_in_every_format_give_the_same_ids(tmp_path):
    ids = {"-ItHUJj9mQI", "gR7zJV9h7vR", "someLocalId"}
    files = [
        _write(tmp_path / "list.txt", "# VideoMME subset\nhttps://www.youtube.com/watch?v=-ItHUJj9mQI"
               "\n\nyoutu.be/gR7zJV9h7vR  trailing words\nsomeLocalId # a comment\n"),
        _write(tmp_path / "list.csv", "question_id,videoID,duration\n1,-ItHUJj9mQI,short\n"
               "2,gR7zJV9h7vR,long\n3,someLocalId,short\n"),
        _write(tmp_path / "noheader.csv", "-ItHUJj9mQI,x\ngR7zJV9h7vR,y\nsomeLocalId,z\n"),
        _write(tmp_path / "list.tsv", "url\tq\nhttps://youtube.com/watch?v=-ItHUJj9mQI\ta\n"
               "https://youtu.be/gR7zJV9h7vR\tb\nsomeLocalId\tc\n"),
        _write(tmp_path / "videomme.json", json.dumps([
            {"video_id": "001", "videoID": "-ItHUJj9mQI", "question": "what?", "options": ["a"]},
            {"videoID": "gR7zJV9h7vR", "url": "https://www.youtube.com/watch?v=gR7zJV9h7vR"},
            {"video": "videos/someLocalId.mp4", "answer": "B"}])),
        _write(tmp_path / "keyed.json", json.dumps({
            "-ItHUJj9mQI": {"q": "x"}, "gR7zJV9h7vR": {"q": "y"}, "someLocalId": {}})),
        _write(tmp_path / "mvbench.jsonl", "\n".join(json.dumps(d) for d in [
            {"video": "-ItHUJj9mQI.mp4", "question": "q"}, {"video": "gR7zJV9h7vR.webm"},
            {"video": "a/b/someLocalId.mp4"}]) + "\n"),
    ]
    for f in files:
        got = {i.id for i in read_eval_list(f)}
        assert ids <= got, (f, got)
        # nothing but ids and what the id-like fields hold
        assert got - ids <= {"001"}, (f, got)
    first = read_eval_list(files[0])
    assert first[0].where == "list.txt:2" and first[0].raw.startswith("https://")


def test_unusable_evaluation_lists_are_clear_errors(tmp_path):
    with pytest.raises(FormatError, match="no video ids"):
        read_eval_list(_write(tmp_path / "empty.txt", "# nothing here\n\n"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(FormatError, match="UTF-8"):
        read_eval_list(str(bad))
    with pytest.raises(FormatError, match="broken.jsonl:2"):
        read_eval_list(_write(tmp_path / "broken.jsonl", '{"video": "a"}\n{oops\n'))


def test_ids_inside_release_urls_are_matched():
    samples = [
        {"key": "miradata_4979904_a", "record_id": "miradata:4979904", "video_id": "4979904",
         "duration": 160.0},
        {"key": "miradata_4979904_b", "record_id": "miradata:4979904", "video_id": "4979904",
         "duration": 12.0},
        {"key": "hdvila_x", "record_id": "hdvila:zZgLuBqqtVP", "video_id": "zZgLuBqqtVP",
         "duration": 9.0},
    ]
    manifest = [{"record_id": "miradata:4979904", "raw": json.dumps(
        {"platform": "youtube", "video_url": "https://www.youtube.com/watch?v=gR7zJV9h7vR"})}]
    ids = corpus_ids(samples, manifest)
    assert ids["gR7zJV9h7vR"] == {"miradata:4979904"}
    items = read_items(["youtu.be/gR7zJV9h7vR", "https://youtube.com/watch?v=zZgLuBqqtVP",
                        "https://youtube.com/watch?v=aaaaaaaaaaa"])
    leaks = id_leaks(items, samples, manifest, max_keys=10)
    assert leaks["matched_items"] == 2
    assert leaks["samples"] == 3
    assert leaks["hours"] == pytest.approx(181.0 / 3600, abs=1e-6)  # rounded to 6 places
    assert [m["records"] for m in leaks["matches"]] == [["miradata:4979904"],
                                                       ["hdvila:zZgLuBqqtVP"]]


def read_items(lines):
    from longvid.audit.leakage import EvalItem

    return [EvalItem(raw=s, id=normalise_id(s), where=f"test:{i}") for i, s in enumerate(lines)]


def test_histogram_counts_percentiles_and_missing_values():
    values = [3.0, 1.0, None, float("nan"), 2.0, 10.0, "x", 4.5]
    h = histogram(values, 4, [0, 50, 90, 100], unit="s")
    x = np.asarray([3.0, 1.0, 2.0, 10.0, 4.5])
    assert h["count"] == 5 and h["missing"] == 3
    assert sum(h["counts"]) == 5 and len(h["edges"]) == 5
    assert h["edges"][0] == 1.0 and h["edges"][-1] == 10.0
    assert h["counts"] == [int(c) for c in np.histogram(x, bins=4)[0]]
    for p in (0, 50, 90, 100):
        assert h["percentiles"][f"p{p}"] == pytest.approx(np.percentile(x, p), abs=1e-6)
    assert h["mean"] == pytest.approx(x.mean())
    assert histogram([], 5, [50]) == {"count": 0, "missing": 0, "unit": ""}
    ints = histogram([1, 2, 2, 5], 20, [50], integer=True)
    assert ints["edges"][0] == 0.5 and ints["counts"] == [1, 2, 0, 0, 1]  # one bar per value
    same = histogram([7.0, 7.0], 10, [50])
    assert same["counts"] == [2] and same["edges"] == [6.5, 7.5]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
       st.integers(2, 40))
def test_histogram_holds_every_value_once(values, bins):
    h = histogram(values, bins, [0, 100])
    assert sum(h["counts"]) == len(values)
    assert all(a < b for a, b in zip(h["edges"], h["edges"][1:], strict=False))
    assert h["percentiles"]["p0"] == pytest.approx(min(values), abs=1e-5)
    assert h["percentiles"]["p100"] == pytest.approx(max(values), abs=1e-5)


def test_duplicate_groups_list_the_kept_sample_and_each_members_signal():
    keys = ["a", "b", "c", "d", "e"]
    rows = [{"key": k, "record_id": f"r{k}", "bucket": "short"} for k in keys]
    extras = [{"scores": {"clip_sha256": h}} for h in ("h1", "h2", "h1", None, "h1")]
    extras[1]["embedding"] = [1.0, 0.0]
    extras[3]["embedding"] = [1.0, 0.001]
    facts = {"e": {"clip_sha256": "h1"}}
    s = corpus_samples(rows, extras, facts)
    assert s.content_hashes.tolist() == ["h1", "h2", "h1", None, "h1"]
    found = find_duplicates(s, DedupConfig(), near_cosine=0.99)
    listed, per_signal = groups(found.table, limit=10)
    assert [(g["kept"], [m["key"] for m in g["members"]], g["signals"]) for g in listed] == [
        ("a", ["c", "e"], ["exact"]), ("b", ["d"], ["embedding"])]
    assert per_signal == {"embedding": 1, "exact": 2}
    assert listed[1]["members"][0]["cosine"] >= 0.99 and listed[0]["kept_record"] == "ra"
    assert len(groups(found.table, limit=1)[0]) == 1


def test_duplicates_the_build_removed_are_grouped_by_the_kept_sample():
    row = {"key": "x", "kept_key": "generic_a_0_5", "signal": "exact", "cosine": None,
           "hamming": None}
    rejects = [
        {"record_id": "generic:b", "locator": "generic:b#generic_b_0_5",
         "reason": "filter:exact_duplicate", "detail": detail({**row, "key": "generic_b_0_5"},
                                                              0.95, 32)},
        {"record_id": "generic:c", "locator": "generic:c#generic_c_0_5",
         "reason": "filter:exact_duplicate", "detail": detail({**row, "key": "generic_c_0_5"},
                                                              0.95, 32)},
        {"record_id": "generic:d", "locator": "generic:d#generic_d_0_5",
         "reason": "filter:near_duplicate",
         "detail": detail({**row, "key": "generic_d_0_5", "signal": "embedding",
                           "cosine": 0.97}, 0.95, 32)},
        {"record_id": "generic:f", "locator": "generic:f#generic_f_0_5",
         "reason": "filter:fingerprint_duplicate",
         "detail": detail({**row, "key": "generic_f_0_5", "signal": "fingerprint",
                           "hamming": 12}, 0.95, 32)},
        {"source": "generic", "record_id": "generic:e", "locator": "x", "stage": "probe",
         "reason": "unreadable", "detail": "not a duplicate"},
    ]
    assert removed_by_build(rejects) == [
        {"kind": "exact_duplicate", "kept": "generic_a_0_5",
         "removed": ["generic_b_0_5", "generic_c_0_5"]},
        {"kind": "fingerprint_duplicate", "kept": "generic_a_0_5", "removed": ["generic_f_0_5"]},
        {"kind": "near_duplicate", "kept": "generic_a_0_5", "removed": ["generic_d_0_5"]},
    ]


def test_every_problem_fails_a_check_even_with_an_unknown_reason():
    problems = [
        {"shard": "shards/a.tar", "key": None, "reason": "truncated", "message": "m1"},
        {"shard": "shards/a.tar", "key": "k", "reason": "bad_json", "message": "m2"},
        {"shard": None, "key": None, "reason": "something_new", "message": "m3"},
    ]
    out = {c["name"]: c for c in verdicts(problems, with_leakage=False, max_listed=10)}
    assert not out["shard_structure"]["passed"] and out["shard_structure"]["count"] == 1
    assert not out["members_decodable"]["passed"]
    assert not out["other"]["passed"] and out["other"]["problems"][0]["message"] == "m3"
    assert all(out[c.name]["passed"] for c in CHECKS
               if c.name not in ("shard_structure", "members_decodable"))
    assert "no_leakage" not in out
    many = [{"shard": "s", "key": str(i), "reason": "missing_member", "message": ""}
            for i in range(30)]
    listed = {c["name"]: c for c in verdicts(many, with_leakage=True, max_listed=7)}
    assert listed["members_present"]["count"] == 30
    assert len(listed["members_present"]["problems"]) == 7
    assert listed["no_leakage"]["passed"]


def test_windows_cover_the_video_then_the_whole():
    assert windows(25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0), (0.0, 25.0)]
    assert windows(6.0, 10.0) == [(0.0, 6.0)]


def _fields(model, prefix=""):
    out = {}
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out.update(_fields(ann, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = f
    return out


def test_config_file_lists_every_key_with_a_comment_and_the_defaults():
    path = REPO / "conf" / "audit" / "default.yaml"
    cfg = load_config(path, AuditConfig)
    assert cfg == AuditConfig()
    data = yaml.safe_load(path.read_text())

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    assert set(leaves(data)) == set(_fields(AuditConfig))
    for line in path.read_text().splitlines():
        if re.match(r"\s*[a-z_]+:", line):
            assert "#" in line, f"no comment: {line!r}"
    for name, f in _fields(AuditConfig).items():
        assert f.description, f"{name} has no description"


def test_gallery_picks_are_seeded_bounded_and_per_source_and_bucket():
    from longvid.audit.gallery import extremes, pick_key, picks

    rows = [{"key": f"{src}_{i}", "source": src, "bucket": b, "duration": float(i)}
            for src in ("howto100m", "webvid") for b in ("short", "long") for i in range(50)]
    got = picks(rows, per_group=3, seed=7)
    assert list(got) == [("howto100m", "long"), ("howto100m", "short"), ("webvid", "long"),
                         ("webvid", "short")]
    for (src, b), chosen in got.items():
        group = [r for r in rows if r["source"] == src and r["bucket"] == b]
        want = sorted(group, key=lambda r: pick_key(7, r["key"]))[:3]
        assert chosen == want
    assert picks(list(reversed(rows)), 3, 7) == got  # the order of the rows does not matter
    assert picks(rows, 3, 8) != got
    longest, shortest = extremes(rows, 2)
    assert [r["duration"] for r in longest] == [49.0, 49.0]
    assert [r["duration"] for r in shortest] == [0.0, 0.0]
