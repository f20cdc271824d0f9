"""longvid.dedup: pure functions on columns (exact, SemDeDup-style near duplicates, perceptual
fingerprints, groups and the kept rule, the samples-dataset reader) and the build's filter."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvid.annotate.config import FiltersConfig
from longvid.dedup import DUPLICATES_SCHEMA, DedupConfig, Samples, find_duplicates
from longvid.dedup.exact import exact_pairs
from longvid.dedup.filter import apply_duplicates, corpus_filter
from longvid.dedup.fingerprint import FRAMES, frame_hashes, from_hex, hamming, to_hex
from longvid.dedup.read import read_samples, samples_from_rows
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


def planted(n: int, dim: int, groups: int, seed: int = 0, noise: float = 0.08):
    """Clustered unit embeddings (topics) with ``groups`` planted near-duplicate pairs, every
    row its own video: (x [n, dim] float16, planted pairs {(i, j)})."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(1, n // 200), dim))
    x = topics[rng.integers(0, len(topics), n)] + 0.7 * rng.standard_normal((n, dim))
    rows = rng.choice(n, size=2 * groups, replace=False).reshape(groups, 2)
    for a, b in rows:
        x[b] = x[a] + noise * rng.standard_normal(dim) * np.linalg.norm(x[a]) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16), {(min(a, b), max(a, b)) for a, b in rows}


def brute_pairs(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    xf = x.astype(np.float32)
    sims = xf @ xf.T
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def samples(x: np.ndarray, **kw) -> Samples:
    n = len(x)
    keys = np.asarray([f"k{i:06d}" for i in range(n)], dtype=object)
    return Samples(keys, kw.pop("records", keys.copy()),
                   kw.pop("buckets", np.asarray(["short"] * n, dtype=object)), embeddings=x, **kw)


def test_exact_pairs_join_equal_hashes_and_the_first_key_is_kept():
    keys = np.asarray(["c", "a", "b", "d", "e"], dtype=object)
    s = Samples(keys, keys.copy(), np.asarray(["short"] * 5, dtype=object),
                content_hashes=np.asarray(["h1", "h1", "h2", None, "h1"], dtype=object))
    p = exact_pairs(s.content_hashes, s.keys)
    assert sorted(zip(p.i.tolist(), p.j.tolist(), strict=True)) == [(0, 1), (1, 4)]
    t = find_duplicates(s, DedupConfig()).table.to_pylist()
    assert [(r["key"], r["kept_key"], r["signal"], r["similarity"]) for r in t] == [
        ("c", "a", "exact", 1.0), ("e", "a", "exact", 1.0)]


def test_a_duplicate_names_a_kept_sample_it_resembles_never_a_chain():
    # a~b (0.9999) and b~c (0.9999) but a, c unrelated: b goes (the first key stays), c stays
    x = np.asarray([unit(1, 0), unit(1, 0.0142), unit(1, 0.0284)], dtype=np.float32)
    x[2] = unit(1, 0.03)
    keys = np.asarray(["a", "b", "c"], dtype=object)
    s = Samples(keys, keys.copy(), np.asarray(["short"] * 3, dtype=object), embeddings=x)
    t = find_duplicates(s, DedupConfig(), near_cosine=0.99985).table.to_pylist()
    assert float(x[0] @ x[2]) < 0.99985 <= float(x[1] @ x[2])
    assert [(r["key"], r["kept_key"]) for r in t] == [("b", "a")]


def test_near_pairs_match_brute_force_inside_clusters():
    x, plant = planted(3000, 64, 60)
    cfg = DedupConfig(cluster_size=150)
    r = find_duplicates(samples(x), cfg, exact=False, near_cosine=0.9)
    truth = brute_pairs(x, 0.9)
    assert plant <= truth and r.stats["clusters"] == 20
    got = {(min(a, b), max(a, b)) for a, b in
           zip((int(k[1:]) for k in r.table.column("key").to_pylist()),
               (int(k[1:]) for k in r.table.column("kept_key").to_pylist()), strict=True)}
    assert got == truth  # pairs here are disjoint: each group is one pair
    assert all(c >= 0.9 for c in r.table.column("cosine").to_pylist())
    assert set(r.table.column("signal").to_pylist()) == {"embedding"}
    assert r.table.schema.equals(DUPLICATES_SCHEMA)


def test_near_duplicates_skip_one_video_another_bucket_and_rows_without_embedding():
    keys = ["a1", "a2", "b1", "c1", "d1", "e1"]
    x = np.asarray([unit(1, 0, 0), unit(1, -0.02, 0),  # a2: same video as a1 → kept
                    unit(1, 0.01, 0),  # b1: other video, cosine 0.99995 with a1 → duplicate
                    unit(1, 0, 0),  # c1: identical but another bucket → kept
                    unit(0.6, 0.8, 0),  # d1: far → kept
                    [0.0, 0.0, 0.0]], dtype=np.float32)  # e1: no embedding
    s = Samples(np.asarray(keys, dtype=object), np.asarray(["A", "A", "B", "C", "D", "E"],
                                                           dtype=object),
                np.asarray(["short", "short", "short", "long", "short", "short"], dtype=object),
                embeddings=x)
    t = find_duplicates(s, DedupConfig(), near_cosine=0.999).table.to_pylist()
    assert [(r["key"], r["kept_key"]) for r in t] == [("b1", "a1")]
    assert t[0]["cosine"] == pytest.approx(float(np.dot(x[0], x[2])), abs=1e-5)
    assert find_duplicates(s, DedupConfig(), near_cosine=0.99999).table.num_rows == 0


def test_result_does_not_depend_on_row_order():
    x, _ = planted(2000, 32, 40, seed=3)
    cfg = DedupConfig(cluster_size=100)
    base = find_duplicates(samples(x), cfg, near_cosine=0.9).table
    perm = np.random.default_rng(1).permutation(len(x))
    keys = np.asarray([f"k{i:06d}" for i in perm], dtype=object)
    shuffled = Samples(keys, keys.copy(), np.asarray(["short"] * len(x), dtype=object),
                       embeddings=x[perm])
    other = find_duplicates(shuffled, cfg, near_cosine=0.9).table
    assert base.num_rows > 30
    assert other.drop(["cluster"]).equals(base.drop(["cluster"]))


def test_frame_hash_survives_resizing_and_noise_and_flat_frames_hash_to_zero():
    rng = np.random.default_rng(0)
    # a picture with structure at every scale: random 8x8-pixel blocks, smoothed
    blocks = np.kron(rng.uniform(30, 220, (9, 16)), np.ones((8, 8)))  # [72, 128]
    for _ in range(3):
        blocks = (blocks + np.roll(blocks, 1, 0) + np.roll(blocks, 1, 1)) / 3
    frame = np.stack([blocks] * 3, -1).clip(0, 255).astype(np.uint8)
    small = frame[::2, ::2]  # the same picture at half the size
    noisy = (frame + rng.normal(0, 6, frame.shape)).clip(0, 255).astype(np.uint8)
    other = np.ascontiguousarray(frame[::-1, ::-1])
    flat = np.full_like(frame, 90)
    h, c = frame_hashes(np.stack([frame, noisy, other, flat]))
    hs, _ = frame_hashes(small[None])
    assert hamming(h[0], hs[0]) <= 4 and hamming(h[0], h[1]) <= 4
    assert hamming(h[0], h[2]) >= 16
    assert h[3] == 0 and c[3].tolist() == [90, 90, 90]
    fp = (np.asarray([h[0], h[1], h[2], h[0]], np.uint64), np.asarray(c))
    back = from_hex(to_hex(fp))
    assert back is not None and (back[0] == fp[0]).all() and (back[1] == fp[1]).all()


def test_fingerprint_copies_need_close_hashes_and_colours_and_other_videos():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(3, FRAMES), dtype=np.uint64)
    flip = np.uint64(0b1011)  # 3 bits per frame: 12 in all
    hashes = np.stack([base[0], base[0] ^ flip, base[0] ^ flip, base[1], base[2]])
    colours = np.full((5, FRAMES, 3), 100, np.uint8)
    colours[2] += 60  # same structure, other colour: not a copy
    keys = np.asarray(["v0", "v1", "v2", "v3", "v4"], dtype=object)
    s = Samples(keys, keys.copy(), np.asarray(["short"] * 5, dtype=object), fp_hashes=hashes,
                fp_colours=colours, fp_valid=np.ones(5, bool))
    t = find_duplicates(s, DedupConfig(fingerprint_max_bits=12)).table.to_pylist()
    assert [(r["key"], r["kept_key"], r["hamming"], r["signal"]) for r in t] == [
        ("v1", "v0", 12, "fingerprint")]
    assert find_duplicates(s, DedupConfig(fingerprint_max_bits=11)).table.num_rows == 0


def test_reader_streams_a_file_and_a_folder_of_parts_alike(tmp_path):
    x, _ = planted(300, 16, 5)
    keys = [f"k{i:04d}" for i in range(300)]
    extra = [json.dumps({"scores": {"clip_sha256": f"h{i % 290}"}}) for i in range(300)]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float16()), 16)
    emb = pa.array([None if i == 7 else v for i, v in enumerate(emb.to_pylist())],
                   pa.list_(pa.float16(), 16))
    table = pa.table({"key": keys, "record_id": keys, "bucket": ["short"] * 300,
                      "extra": extra, "embedding": emb})
    pq.write_table(table, tmp_path / "one.parquet")
    (tmp_path / "parts").mkdir()
    for p in range(3):
        pq.write_table(table.slice(p * 100, 100), tmp_path / "parts" / f"u{p}.parquet")
    one = read_samples(str(tmp_path / "one.parquet"), batch_rows=64)
    parts = read_samples(str(tmp_path / "parts"), batch_rows=64)
    assert one.keys.tolist() == parts.keys.tolist() == keys
    assert (one.embeddings == parts.embeddings).all() and one.embeddings.dtype == np.float16
    assert not one.embeddings[7].any() and (one.embeddings[8] == x[8]).all()
    assert one.content_hashes[295] == "h5"
    cfg = DedupConfig(cluster_size=100)
    a = find_duplicates(one, cfg, near_cosine=0.95).table
    assert a.equals(find_duplicates(parts, cfg, near_cosine=0.95).table)
    assert {"exact", "embedding"} <= {s for sig in a.column("signal").to_pylist()
                                      for s in sig.split("+")}


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
    assert samples_from_rows(rows).embeddings.dtype == np.float32  # as written in JSON


def test_no_corpus_filter_unless_the_filter_stage_runs():
    base = BuildConfig(manifest="m")
    assert corpus_filter(base) is None
    with_filter = BuildConfig(manifest="m", stages=["probe", "scan", "segment", "cut", "filter"])
    f = corpus_filter(with_filter)
    rows = [row("a", "g:a", "h"), row("b", "g:b", "h")]
    assert f is not None and [r["key"] for r in f(rows)[0]] == ["a"]
    off = BuildConfig(manifest="m", stages=["probe", "scan", "segment", "cut", "filter"],
                      annotate={"filters": {"exact_duplicates": False}},
                      dedup={"fingerprint_max_bits": None})
    assert corpus_filter(off) is None
