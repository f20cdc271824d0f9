"""The shard layer: deterministic tar shards, ranged reads by recorded offsets, the wids index,
samples.parquet, and verification — read back with the stock webdataset and wids readers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid import storage
from longvid.errors import FormatError
from longvid.schema import sample_key
from longvid.shards import (
    SAMPLES_SCHEMA,
    MemberLocation,
    ShardError,
    ShardInfo,
    ShardSequenceWriter,
    ShardWriter,
    iter_shard,
    read_index,
    read_member,
    read_sample,
    read_table,
    verify_corpus,
    verify_shard,
    write_index,
    write_table,
)
from longvid.shards.tarformat import BLOCK, END_OF_ARCHIVE, member_order


def make_samples(n: int, seed: int = 0, big: int = 3000) -> list[tuple[str, dict[str, bytes]]]:
    """``n`` samples with members of varied sizes (incl. block multiples and empty ones)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = sample_key("webvid", f"vid{i:03d}", i * 1.5, i * 1.5 + 10.0)
        meta = {"source": "webvid", "video_id": f"vid{i:03d}", "i": i}
        members = {
            "mp4": rng.randbytes(rng.randint(1, big) if i % 4 else BLOCK * 3),
            "json": json.dumps(meta).encode(),
            "txt": f"caption {i}".encode(),
            "emb.npy": rng.randbytes(64) if i % 3 else b"",
        }
        out.append((key, members))
    return out


def write_corpus(root: str, samples, *, target_bytes: int = 1 << 30, name: str = "test"):
    """Write shards + index + samples.parquet under ``root``; return (infos, rows)."""
    rows = []
    with ShardSequenceWriter(root, prefix="part", target_bytes=target_bytes) as w:
        for i, (key, members) in enumerate(samples):
            placed = w.add(key, members)
            rows.append(
                {
                    "key": key,
                    "shard": placed.shard,
                    "source": "webvid",
                    "video_id": f"vid{i:03d}",
                    "record_id": f"webvid:vid{i:03d}",
                    "bucket": "short" if i % 2 else "long",
                    "span_start": i * 1.5,
                    "span_end": i * 1.5 + 10.0,
                    "duration": 10.0,
                    "caption": members["txt"].decode(),
                    "members": placed.members,
                    "extra": {"scores": {"clip": i / 10}},
                }
            )
    infos = w.shards
    write_index(root, infos, name)
    write_table(storage.join(root, "samples.parquet"), rows)
    return infos, rows


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def test_same_samples_give_byte_identical_shards(tmp_path):
    samples = make_samples(6)
    infos = []
    for name in ("a", "b"):
        with ShardWriter(str(tmp_path / f"{name}.tar"), url=f"{name}.tar") as w:
            for key, members in samples:
                w.add(key, members)
        infos.append(w.info)
    a, b = (tmp_path / "a.tar").read_bytes(), (tmp_path / "b.tar").read_bytes()
    assert a == b
    assert infos[0].sha256 == infos[1].sha256 == hashlib.sha256(a).hexdigest()
    assert infos[0].filesize == len(a)
    assert infos[0].nsamples == 6
    assert infos[0].keys == tuple(k for k, _ in samples)
    assert a.endswith(END_OF_ARCHIVE) and len(a) % BLOCK == 0
    # Python's tarfile sees plain ustar members with the fixed header fields, json first.
    with tarfile.open(tmp_path / "a.tar") as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == [
        f"{key}.{ext}" for key, mem in samples for ext in member_order(mem)
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o644)
    }
    assert members[0].name.endswith(".json") and members[1].name.endswith(".emb.npy")


def test_recorded_offsets_range_read_each_member_exactly(tmp_path):
    samples = make_samples(8, seed=1)
    path = tmp_path / "s.tar"
    with ShardWriter(str(path)) as w:
        placed = [w.add(key, members) for key, members in samples]
    blob = path.read_bytes()
    for (key, members), locs in zip(samples, placed, strict=True):
        assert [m.ext for m in locs] == member_order(members)
        for loc in locs:
            assert blob[loc.offset : loc.offset + loc.size] == members[loc.ext]
            assert storage.read_bytes(str(path), loc.offset, loc.size) == members[loc.ext]
            got = read_member(str(tmp_path), "s.tar", loc.ext, key=key, location=loc)
            assert got == members[loc.ext]
        row = {"key": key, "shard": "s.tar", "members": [m.as_dict() for m in locs]}
        assert read_sample(str(tmp_path), row) == members
        assert read_member(str(tmp_path), row, "mp4") == members["mp4"]


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(
        st.lists(st.sampled_from([0, 1, 511, 512, 513, 1024, 1500]), min_size=1, max_size=3),
        min_size=1,
        max_size=5,
    )
)
def test_offsets_hold_for_any_member_sizes(sizes):
    exts = ["mp4", "json", "emb.npy"]
    samples = [
        (f"k{i}", {exts[j]: bytes([i + j + 1]) * n for j, n in enumerate(row)})
        for i, row in enumerate(sizes)
    ]
    with tempfile.TemporaryDirectory() as d:
        with ShardWriter(os.path.join(d, "x.tar")) as w:
            placed = [w.add(k, m) for k, m in samples]
        blob = Path(d, "x.tar").read_bytes()
        for (_, members), locs in zip(samples, placed, strict=True):
            assert {loc.ext: blob[loc.offset : loc.offset + loc.size] for loc in locs} == members
        assert list(iter_shard(os.path.join(d, "x.tar"))) == samples
        assert (
            w.info.filesize
            == len(blob)
            == sum(BLOCK + -(-len(v) // BLOCK) * BLOCK for _, m in samples for v in m.values())
            + len(END_OF_ARCHIVE)
        )


@pytest.mark.parametrize(
    "key,members,match",
    [
        ("a.b", {"mp4": b"x"}, "'a.b'"),
        ("a/b", {"mp4": b"x"}, "'a/b'"),
        ("", {"mp4": b"x"}, "''"),
        ("-rf", {"mp4": b"x"}, "'-rf'"),
        ("__key__", {"mp4": b"x"}, "'__key__'"),
        ("k", {"MP4": b"x"}, "'MP4'"),
        ("k", {"mp4.": b"x"}, "'mp4.'"),
        ("k", {}, "no members"),
        ("k" * 97, {"mp4": b"x"}, "100"),
    ],
)
def test_bad_keys_and_extensions_are_refused_before_writing(tmp_path, key, members, match):
    with ShardWriter(str(tmp_path / "s.tar")) as w:
        w.add("good", {"txt": b"ok"})
        with pytest.raises(ValueError, match=match):
            w.add(key, members)
        assert w.nbytes == BLOCK * 2  # the refused sample wrote nothing
    assert [k for k, _ in iter_shard(str(tmp_path / "s.tar"))] == ["good"]


def test_duplicate_keys_are_refused_within_a_shard_and_a_sequence(tmp_path):
    with ShardWriter(str(tmp_path / "s.tar")) as w:
        w.add("k1", {"txt": b"a"})
        with pytest.raises(ValueError, match="duplicate sample key 'k1'"):
            w.add("k1", {"txt": b"b"})
    with ShardSequenceWriter(str(tmp_path), target_bytes=2048) as seq:
        seq.add("k1", {"txt": b"a"})
        seq.add("k2", {"txt": b"b"})  # rolls over: k1 is in the previous shard
        with pytest.raises(ValueError, match="duplicate sample key 'k1'"):
            seq.add("k1", {"txt": b"c"})
    assert [s.keys for s in seq.shards] == [("k1",), ("k2",)]


def test_sequence_rolls_over_at_the_target_size(tmp_path):
    samples = make_samples(30, seed=2)
    target = 16 * 1024
    infos, rows = write_corpus(str(tmp_path), samples, target_bytes=target)
    assert len(infos) > 3
    assert [i.url for i in infos] == [f"shards/part-{n:05d}.tar" for n in range(len(infos))]
    assert [k for i in infos for k in i.keys] == [k for k, _ in samples]
    sizes = {k: sum(BLOCK + -(-len(v) // BLOCK) * BLOCK for v in m.values()) for k, m in samples}
    for n, info in enumerate(infos):
        path = tmp_path / info.url
        assert path.stat().st_size == info.filesize
        assert info.filesize <= target  # no sample here is bigger than the target on its own
        if n + 1 < len(infos):  # rolled over only because the next sample did not fit
            assert info.filesize + sizes[infos[n + 1].keys[0]] > target
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        Path(i.url).name for i in infos
    ]
    assert [r["shard"] for r in rows] == [i.url for i in infos for _ in i.keys]


def test_sample_larger_than_target_gets_a_shard_of_its_own_and_max_samples_caps(tmp_path):
    with ShardSequenceWriter(str(tmp_path), target_bytes=4096, max_samples=2) as w:
        w.add("small1", {"txt": b"a"})
        w.add("huge", {"mp4": b"x" * 10_000})
        for i in range(5):
            w.add(f"s{i}", {"txt": b"b"})
    assert [s.keys for s in w.shards] == [
        ("small1",),
        ("huge",),
        ("s0", "s1"),
        ("s2", "s3"),
        ("s4",),
    ]


def test_exception_mid_shard_publishes_nothing(tmp_path):
    final = tmp_path / "shards" / "s.tar"
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(str(final)) as w:
            w.add("k1", {"mp4": b"x" * 5000})
            raise RuntimeError("boom")
    assert not final.exists()
    assert list((tmp_path / "shards").iterdir()) == []  # no temp file left either
    # A sequence keeps the shards it finished and drops the one in progress.
    with pytest.raises(RuntimeError, match="boom"):
        with ShardSequenceWriter(str(tmp_path), prefix="p", target_bytes=4096) as seq:
            seq.add("a", {"mp4": b"x" * 3000})
            seq.add("b", {"mp4": b"y" * 3000})
            raise RuntimeError("boom")
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["p-00000.tar"]
    assert [k for k, _ in iter_shard(str(tmp_path / "shards" / "p-00000.tar"))] == ["a"]


# --------------------------------------------------------------------------------------------
# Stock readers
# --------------------------------------------------------------------------------------------


def test_stock_webdataset_reads_the_shards(tmp_path):
    import webdataset as wds

    samples = make_samples(12, seed=3)
    infos, _ = write_corpus(str(tmp_path), samples, target_bytes=12 * 1024)
    assert len(infos) > 1
    urls = [str(tmp_path / i.url) for i in infos]
    got = list(wds.WebDataset(urls, shardshuffle=False, empty_check=True))
    assert [s["__key__"] for s in got] == [k for k, _ in samples]
    for s, (_, members) in zip(got, samples, strict=True):
        assert {k: v for k, v in s.items() if not k.startswith("__")} == members


def test_wids_reads_the_corpus_from_its_index(tmp_path):
    import wids

    samples = make_samples(12, seed=4)
    infos, _ = write_corpus(str(tmp_path / "corpus"), samples, target_bytes=12 * 1024)
    ds = wids.ShardListDataset(
        str(tmp_path / "corpus" / "index.json"),
        cache_dir=str(tmp_path / "wids-cache"),
        transformations=[],
    )
    try:
        assert len(ds) == len(samples)
        for i, (key, members) in enumerate(samples):
            s = ds[i]
            assert s["__key__"] == key
            assert {k[1:]: v.read() for k, v in s.items() if not k.startswith("__")} == members
        assert ds[len(samples) - 1]["__shard__"].endswith(infos[-1].url)
    finally:
        ds.close()


# --------------------------------------------------------------------------------------------
# Index and samples table
# --------------------------------------------------------------------------------------------


def test_index_round_trip_and_format(tmp_path):
    root = str(tmp_path)
    infos, _ = write_corpus(root, make_samples(9, seed=5), target_bytes=8 * 1024, name="demo")
    doc = json.loads((tmp_path / "index.json").read_text())
    assert doc["__kind__"] == "wids-shard-index-v1" and doc["wids_version"] == 1
    assert doc["name"] == "demo"
    assert doc["shardlist"] == [i.index_entry() for i in infos]
    index = read_index(root)
    assert index.name == "demo" and index.nsamples == 9
    assert [s.url for s in index.shards] == [i.url for i in infos]
    assert index.shard_uri(index.shards[0]) == str(tmp_path / infos[0].url)
    # Absolute urls under the root become relative; others are refused.
    absolute = ShardInfo(str(tmp_path / "x" / "a.tar"), 1, 10, "00")
    write_index(root, [absolute], "abs", filename="abs.json")
    assert read_index(root, filename="abs.json").shards[0].url == "x/a.tar"
    with pytest.raises(ValueError, match="not under the corpus root"):
        write_index(root, [ShardInfo("/elsewhere/a.tar", 1, 10, "00")], "bad")


@pytest.mark.parametrize(
    "doc,match",
    [
        ({"wids_version": 2, "shardlist": []}, "wids_version"),
        ({"wids_version": 1, "shardlist": [{"url": "../etc/x.tar", "nsamples": 1}]}, "inside"),
        ({"wids_version": 1, "shardlist": [{"url": "/abs/x.tar", "nsamples": 1}]}, "inside"),
        ({"wids_version": 1, "shardlist": [{"url": "a.tar"}]}, "nsamples"),
        ({"wids_version": 1, "shardlist": [{"url": "a.tar", "nsamples": -1}]}, "nsamples"),
        ({"wids_version": 1, "shardlist": [{"url": "a.tar", "nsamples": 1}] * 2}, "twice"),
        ({"wids_version": 1}, "shardlist"),
    ],
)
def test_bad_index_is_a_format_error_naming_the_file(tmp_path, doc, match):
    (tmp_path / "index.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=match) as err:
        read_index(str(tmp_path))
    assert str(tmp_path / "index.json") in str(err.value)


def test_samples_table_round_trip_and_queries(tmp_path):
    infos, rows = write_corpus(str(tmp_path), make_samples(10, seed=6), target_bytes=8 * 1024)
    table = read_table(str(tmp_path / "samples.parquet"))
    assert table.schema.equals(SAMPLES_SCHEMA)
    back = table.to_pylist()
    assert [r["key"] for r in back] == [r["key"] for r in rows]
    assert back[3]["members"] == [m.as_dict() for m in rows[3]["members"]]
    assert json.loads(back[4]["extra"]) == {"scores": {"clip": 0.4}}
    assert back[4]["width"] is None  # columns a row leaves out are null
    df = table.to_pandas()
    assert df.groupby("bucket").size().to_dict() == {"long": 5, "short": 5}
    assert df.groupby("shard").size().to_dict() == {i.url: i.nsamples for i in infos}
    # A pandas row works for ranged reads just like a dict row.
    assert read_member(str(tmp_path), df.iloc[2], "txt") == b"caption 2"


@pytest.mark.parametrize(
    "row,match",
    [
        ({"key": "a", "shard": "s.tar", "members": [], "colour": "red"}, "colour"),
        ({"shard": "s.tar", "members": []}, "'key' is required"),
        ({"key": "a", "shard": "s.tar", "members": [], "bucket": "medium"}, "medium"),
        ({"key": "a", "shard": "s.tar", "members": [], "width": "wide"}, "schema"),
    ],
)
def test_bad_samples_rows_are_refused(tmp_path, row, match):
    with pytest.raises(ValueError, match=match):
        write_table(str(tmp_path / "samples.parquet"), [row])
    assert not (tmp_path / "samples.parquet").exists()


def test_samples_table_refuses_duplicate_keys_and_accepts_arrow_tables(tmp_path):
    row = {"key": "a", "shard": "s.tar", "members": [MemberLocation("txt", 512, 3)]}
    with pytest.raises(ValueError, match="duplicate sample key 'a'"):
        write_table(str(tmp_path / "s.parquet"), [row, dict(row)])
    table = pa.table(
        {"key": ["a"], "shard": ["s.tar"], "members": [[{"ext": "txt", "offset": 512, "size": 3}]]}
    )
    write_table(str(tmp_path / "s.parquet"), table)
    back = read_table(str(tmp_path / "s.parquet"))
    assert back.schema.equals(SAMPLES_SCHEMA) and back.column("key").to_pylist() == ["a"]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(FormatError, match="junk.parquet"):
        read_table(str(tmp_path / "junk.parquet"))


# --------------------------------------------------------------------------------------------
# Reading and verification
# --------------------------------------------------------------------------------------------


def one_shard(tmp_path, n: int = 6, seed: int = 7):
    root = str(tmp_path)
    samples = make_samples(n, seed=seed)
    infos, rows = write_corpus(root, samples)
    assert len(infos) == 1
    return root, samples, infos[0], rows, tmp_path / infos[0].url


def test_good_corpus_verifies_clean_and_streams_back(tmp_path):
    root, samples, info, rows, path = one_shard(tmp_path)
    assert verify_shard(root, info, rows) == []
    assert verify_corpus(root) == []
    assert list(iter_shard(str(path))) == samples


def test_truncated_shard_is_caught_everywhere(tmp_path):
    root, samples, info, rows, path = one_shard(tmp_path)
    blob = path.read_bytes()
    last = next(m for m in rows[-1]["members"] if m.ext == "mp4")
    assert last.size > 1
    path.write_bytes(blob[: last.offset + last.size // 2])  # cut inside the last sample's mp4
    reasons = {p.reason for p in verify_shard(root, info, rows)}
    assert reasons == {"truncated", "size_mismatch", "checksum_mismatch"}
    with pytest.raises(ShardError, match="truncated") as err:
        list(iter_shard(str(path)))
    assert err.value.reason == "truncated" and str(path) in str(err.value)
    with pytest.raises(ShardError, match="truncated"):
        read_member(root, rows[-1], last.ext)
    assert read_sample(root, rows[0]) == samples[0][1]  # what is still there reads fine
    # Cut exactly at a member boundary: tarfile would accept this, we do not.
    path.write_bytes(blob[: -len(END_OF_ARCHIVE)])
    problems = verify_shard(root, info, rows)
    assert "truncated" in {p.reason for p in problems}
    with pytest.raises(ShardError, match="end-of-archive"):
        list(iter_shard(str(path)))


def test_flipped_bytes_are_a_checksum_mismatch(tmp_path):
    root, samples, info, rows, path = one_shard(tmp_path)
    blob = bytearray(path.read_bytes())
    loc = rows[2]["members"][-1]
    blob[loc.offset] ^= 0xFF  # inside member data: the tar still parses
    path.write_bytes(bytes(blob))
    problems = verify_shard(root, info, rows)
    assert [(p.reason, p.key) for p in problems] == [("checksum_mismatch", None)]
    assert info.sha256 in problems[0].message


def test_flipped_header_byte_is_a_bad_header(tmp_path):
    root, samples, info, rows, path = one_shard(tmp_path)
    blob = bytearray(path.read_bytes())
    loc = rows[1]["members"][0]
    blob[loc.offset - BLOCK + 3] ^= 0x01  # in the name field of the header
    path.write_bytes(bytes(blob))
    reasons = {p.reason for p in verify_shard(root, info, rows)}
    assert {"checksum_mismatch", "bad_header"} <= reasons
    with pytest.raises(ShardError, match="offset_mismatch"):
        read_member(root, rows[1], loc.ext)


def test_deleted_member_is_reported_with_its_key(tmp_path):
    root, samples, info, rows, path = one_shard(tmp_path)
    victim_key, victim = samples[3]
    # Rewrite the shard (same name) without the victim's txt member.
    with ShardWriter(str(path)) as w:
        for key, members in samples:
            w.add(key, {e: v for e, v in members.items() if (key, e) != (victim_key, "txt")})
    problems = verify_shard(root, info, rows)
    missing = [(p.key, p.message) for p in problems if p.reason == "missing_member"]
    assert len(missing) == 1 and missing[0][0] == victim_key
    assert f"{victim_key}.txt" in missing[0][1]
    # Members after the hole moved: their recorded offsets no longer hold.
    moved = {p.key for p in problems if p.reason == "offset_mismatch"}
    assert moved == {k for k, _ in samples[4:]}
    assert {"size_mismatch", "checksum_mismatch"} <= {p.reason for p in problems}


def test_duplicate_keys_unexpected_samples_and_missing_shards(tmp_path):
    root = str(tmp_path)
    path = tmp_path / "dup.tar"
    # A shard from another tool with a key that comes back after another sample.
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name in ("a.txt", "b.txt", "a.json"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    info = {"url": "dup.tar", "nsamples": 2, "filesize": 0, "sha256": ""}
    problems = verify_shard(root, info, [])
    assert [(p.reason, p.key) for p in problems if p.reason == "duplicate_key"] == [
        ("duplicate_key", "a")
    ]
    assert {(p.reason, p.key) for p in problems if p.reason == "unexpected_key"} == {
        ("unexpected_key", "a"),
        ("unexpected_key", "b"),
    }
    missing = verify_shard(root, {"url": "gone.tar", "nsamples": 1, "filesize": 1, "sha256": ""})
    assert [(p.reason, p.shard) for p in missing] == [("missing_shard", "gone.tar")]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_iter_shard_reads_tars_written_by_other_tools(tmp_path, fmt):
    long_key = "k" * 150  # needs a pax or GNU long-name record
    entries = [(f"{long_key}.txt", b"long"), (f"{long_key}.json", b"{}"), ("d/k2.txt", b"sub")]
    path = tmp_path / "other.tar"
    with tarfile.open(path, "w", format=fmt) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert list(iter_shard(str(path))) == [
        (long_key, {"txt": b"long", "json": b"{}"}),
        ("d/k2", {"txt": b"sub"}),
    ]


def test_verify_corpus_reports_shards_and_rows_that_disagree(tmp_path):
    root = str(tmp_path)
    infos, rows = write_corpus(root, make_samples(12, seed=8), target_bytes=8 * 1024)
    os.remove(tmp_path / infos[1].url)
    rows[0]["shard"] = "shards/other.tar"
    rows[0]["members"] = [m.as_dict() for m in rows[0]["members"]]
    write_table(str(tmp_path / "samples.parquet"), rows)
    problems = verify_corpus(root)
    assert ("missing_shard", infos[1].url) in {(p.reason, p.shard) for p in problems}
    assert [(p.reason, p.key) for p in problems if p.reason == "not_in_index"] == [
        ("not_in_index", rows[0]["key"])
    ]
    # The row moved away from shard 0, so shard 0 now holds a sample nobody lists.
    assert [(p.reason, p.key) for p in problems if p.shard == infos[0].url] == [
        ("unexpected_key", rows[0]["key"])
    ]


def test_offset_mismatch_between_table_and_shard(tmp_path):
    root, samples, info, rows, path = one_shard(tmp_path)
    bad = dict(rows[2])
    mp4 = next(m for m in bad["members"] if m.ext == "mp4")
    bad["members"] = [
        MemberLocation(m.ext, m.offset + BLOCK, m.size) if m is mp4 else m for m in bad["members"]
    ]
    problems = verify_shard(root, info, [*rows[:2], bad, *rows[3:]])
    assert [(p.reason, p.key) for p in problems] == [("offset_mismatch", bad["key"])]
    with pytest.raises(ShardError, match="offset_mismatch"):
        read_member(root, bad, "mp4")


# --------------------------------------------------------------------------------------------
# S3 (real rclone S3 server on loopback)
# --------------------------------------------------------------------------------------------


def test_s3_round_trip_ranged_reads_and_verify(s3_server):
    root = s3_server.uri("shards-round-trip")
    samples = make_samples(10, seed=9)
    infos, rows = write_corpus(root, samples, target_bytes=8 * 1024)
    assert len(infos) > 1
    assert storage.list_files(root, suffix=".tar") == [storage.join(root, i.url) for i in infos]
    # The objects on the server are the bytes the writer hashed.
    for info in infos:
        body = storage.read_bytes(storage.join(root, info.url))
        assert hashlib.sha256(body).hexdigest() == info.sha256 and len(body) == info.filesize
    table = read_table(storage.join(root, "samples.parquet"))
    assert table.column("key").to_pylist() == [k for k, _ in samples]
    for row, (_, members) in zip(table.to_pylist(), samples, strict=True):
        assert read_sample(root, row) == members
        assert read_member(root, row, "mp4") == members["mp4"]
    assert read_index(root).nsamples == len(samples)
    assert [s for info in infos for s in iter_shard(storage.join(root, info.url))] == samples
    assert verify_corpus(root) == []
    # Damage an object behind the server's back: verification over S3 catches it.
    victim = s3_server.path(f"shards-round-trip/{infos[0].url}")
    blob = bytearray(victim.read_bytes())
    loc = rows[0]["members"][-1]
    blob[loc.offset] ^= 0x55
    victim.write_bytes(bytes(blob))
    assert [(p.reason, p.shard) for p in verify_corpus(root)] == [
        ("checksum_mismatch", infos[0].url)
    ]
    victim.write_bytes(bytes(blob[: loc.offset]))
    assert {"truncated", "size_mismatch"} <= {p.reason for p in verify_corpus(root)}
    with pytest.raises(ShardError, match="truncated"):
        read_member(root, rows[0], loc.ext)


def test_s3_exception_mid_shard_publishes_nothing(s3_server):
    uri = s3_server.uri("shards-abort/shards/s.tar")
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(uri) as w:
            w.add("k1", {"mp4": b"x" * 5000})
            raise RuntimeError("boom")
    assert not storage.exists(uri)
    assert storage.list_files(s3_server.uri("shards-abort")) == []
