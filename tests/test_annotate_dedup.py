"""Corpus-wide duplicate filters: pure functions on sample rows."""

from __future__ import annotations

import numpy as np

from longvid.annotate.config import FiltersConfig
from longvid.annotate.dedup import (
    apply_duplicates,
    corpus_filter,
    exact_duplicates,
    near_duplicates,
)
from longvid.pipelines.config import BuildConfig


def unit(*v: float) -> list[float]:
    a = np.asarray(v, dtype=np.float64)
    return (a / np.linalg.norm(a)).tolist()


def row(key: str, record: str, sha: str | None = None, emb: list[float] | None = None,
        bucket: str = "short") -> dict:
    extra = {"scores": {"clip_sha256": sha}, "locator": f"list:{record}"}
    if emb is not None:
        extra["embedding"] = emb
    return {"key": key, "record_id": record, "source": "generic", "bucket": bucket,
            "extra": extra}


def test_exact_duplicates_keep_the_first_key():
    dups = exact_duplicates(["c", "a", "b", "d"], ["h1", "h1", "h2", None])
    assert [(d.key, d.kept, d.kind) for d in dups] == [("c", "a", "exact_duplicate")]


def test_near_duplicates_compare_other_videos_of_the_same_bucket_only():
    keys = ["a1", "a2", "b1", "c1", "d1"]
    groups = ["short", "short", "short", "long", "short"]
    videos = ["A", "A", "B", "C", "D"]
    embs = np.asarray([unit(1, 0, 0), unit(1, -0.02, 0),  # a2: same video as a1 → kept
                       unit(1, 0.01, 0),  # b1: other video, cosine 0.99995 with a1 → duplicate
                       unit(1, 0, 0),  # c1: identical but another bucket → kept
                       unit(0.6, 0.8, 0)], dtype=np.float32)  # d1: far → kept
    dups = near_duplicates(keys, groups, videos, embs, threshold=0.999, block=2)
    assert [(d.key, d.kept) for d in dups] == [("b1", "a1")]
    assert dups[0].value == np.float32(np.dot(embs[0], embs[2])).round(6)
    assert near_duplicates(keys, groups, videos, embs, threshold=0.99999) == []


def test_a_video_whose_samples_are_all_duplicates_is_one_record_reject():
    rows = [row("a_1", "g:a", "h1"), row("a_2", "g:a", "h2"),
            row("b_1", "g:b", "h1"), row("b_2", "g:b", "h2"),  # every sample of b duplicates a
            row("c_1", "g:c", "h1"), row("c_2", "g:c", "h9")]  # one sample of c duplicates a
    kept, rejects = apply_duplicates(rows, FiltersConfig(exact_duplicates=True))
    assert [r["key"] for r in kept] == ["a_1", "a_2", "c_2"]
    assert rejects == [
        {"source": "generic", "record_id": "g:b", "locator": "list:g:b", "stage": "filter",
         "reason": "filter:exact_duplicate",
         "detail": "g:b: all 2 samples are duplicates; first: sample b_1: clip bytes equal "
                   "those of a_1 (SHA-256)"},
        {"source": "generic", "record_id": "g:c", "locator": "g:c#c_1", "stage": "filter",
         "reason": "filter:exact_duplicate",
         "detail": "sample c_1: clip bytes equal those of a_1 (SHA-256)"},
    ]


def test_near_duplicate_rejects_carry_the_cosine_and_the_threshold():
    rows = [row("a_1", "g:a", "h1", unit(1, 0, 0)), row("b_1", "g:b", "h2", unit(1, 0.01, 0)),
            row("b_2", "g:b", "h3", unit(0, 1, 0))]
    kept, rejects = apply_duplicates(rows, FiltersConfig(exact_duplicates=True,
                                                         near_duplicate_cosine=0.999))
    assert [r["key"] for r in kept] == ["a_1", "b_2"]
    (r,) = rejects
    assert r["reason"] == "filter:near_duplicate" and r["locator"] == "g:b#b_1"
    assert r["detail"] == ("sample b_1: video embedding cosine 0.999950 with a_1 "
                           "(must be below 0.999)")


def test_no_corpus_filter_unless_the_filter_stage_runs():
    base = BuildConfig(manifest="m")
    assert corpus_filter(base) is None
    with_filter = BuildConfig(manifest="m", stages=["probe", "scan", "segment", "cut", "filter"])
    f = corpus_filter(with_filter)
    rows = [row("a", "g:a", "h"), row("b", "g:b", "h")]
    assert f is not None and [r["key"] for r in f(rows)[0]] == ["a"]
    off = BuildConfig(manifest="m", stages=["probe", "scan", "segment", "cut", "filter"],
                      annotate={"filters": {"exact_duplicates": False}})
    assert corpus_filter(off) is None
