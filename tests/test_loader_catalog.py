"""The memory-mapped catalog cache: same view as the in-memory catalog, compiled once, shared,
rebuilt when the corpus changes or a cache file is damaged."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from longvid.errors import FormatError
from longvid.shards.index import read_index, write_index
from longvid.shards.manifest import SAMPLES_NAME, SAMPLES_SCHEMA, read_table
from longvid.shards.tarwriter import ShardInfo
from longvid.training.data import catalog_cache
from longvid.training.data.catalog import COLUMNS, load_catalog

REPO = Path(__file__).resolve().parents[1]


# --- the reference: the in-memory catalog this cache replaced ---------------------------------


def old_fingerprint(table: pa.Table, shard_sums: dict[str, str]) -> str:
    """The in-memory catalog's corpus fingerprint, verbatim (cursors written with it resume)."""
    t = table.sort_by("key")
    h = hashlib.sha256()
    h.update("\n".join(t.column("key").to_pylist()).encode("utf-8"))
    shards = t.column("shard").to_pylist()
    h.update("\n".join(f"{s}:{shard_sums.get(s, '')}" for s in shards).encode("utf-8"))
    h.update(t.column("duration").to_numpy(zero_copy_only=False).astype("<f8").tobytes())
    members = pc.list_flatten(t.column("members"))
    for name in ("ext", "offset", "size"):
        col = pc.struct_field(members, name)
        if name == "ext":
            h.update("\n".join(col.to_pylist()).encode("utf-8"))
        else:
            h.update(col.to_numpy(zero_copy_only=False).astype("<i8").tobytes())
    h.update(pc.list_value_length(t.column("members")).to_numpy().astype("<i8").tobytes())
    return h.hexdigest()


def old_view(roots: list[str]) -> tuple[list[dict], str, list[str]]:
    """(rows sorted by key then corpus, fingerprint, corpus fingerprints), all in memory."""
    tables, prints = [], []
    for i, root in enumerate(roots):
        table = read_table(f"{root}/{SAMPLES_NAME}").select(COLUMNS)
        sums = {s.url: s.sha256 for s in read_index(root).shards}
        prints.append(old_fingerprint(table, sums))
        tables.append(table.append_column("corpus", pa.array([i] * table.num_rows, pa.int32())))
    table = pa.concat_tables(tables).sort_by([("key", "ascending"), ("corpus", "ascending")])
    rows = table.to_pylist()
    for r in rows:
        r["root"] = roots[r["corpus"]]
    return rows, hashlib.sha256("\n".join(prints).encode()).hexdigest(), prints


# --- a metadata-only corpus (no video needed to read a catalog) -------------------------------


def write_corpus(root: Path, n: int, *, parts: int = 3, seed: int = 0, prefix: str = "k") -> None:
    """``n`` rows in ``parts`` Parquet parts, written in shuffled key order; some captions and
    sources null, 0–3 members a row, three shards."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    shards = [ShardInfo(f"shards/s{j}.tar", 1, 10, f"{j:02d}" * 32) for j in range(3)]
    write_index(str(root), shards, "test")
    order = rng.permutation(n)
    folder = root / SAMPLES_NAME
    folder.mkdir()
    member_type = SAMPLES_SCHEMA.field("members").type
    for p, rows in enumerate(np.array_split(order, parts)):
        m = len(rows)
        members = [[{"ext": ["mp4", "json", "txt"][k], "offset": int(r) * 100 + k, "size": k + 1}
                    for k in range(int(r) % 4)] for r in rows]
        table = pa.table({
            "key": [f"{prefix}{int(r):06d}" for r in rows],
            "shard": [f"shards/s{int(r) % 3}.tar" for r in rows],
            "source": [None if r % 7 == 0 else ["webvid", "ego4d"][int(r) % 2] for r in rows],
            "bucket": ["long" if r % 5 == 0 else "short" for r in rows],
            "duration": (rows % 50 + 1.5).astype(np.float64),
            "caption": [None if r % 6 == 0 else f"caption é {int(r)}" * (int(r) % 3)
                        for r in rows],
            "members": pa.array(members, member_type),
        })
        full = pa.table({f.name: table.column(f.name) if f.name in table.column_names
                         else pa.nulls(m, f.type) for f in SAMPLES_SCHEMA}).cast(SAMPLES_SCHEMA)
        pq.write_table(full, folder / f"part-{p:03d}.parquet", row_group_size=7)


def assert_same_view(roots: list[str], cache_dir: Path) -> None:
    rows, whole, prints = old_view(roots)
    cat = load_catalog(roots, cache_dir)
    assert len(cat) == len(rows)
    assert [cat.row(i) for i in range(len(cat))] == rows
    assert list(cat.keys) == [r["key"] for r in rows]
    assert list(cat.captions) == [r["caption"] for r in rows]
    assert cat.sources[np.arange(len(cat))].tolist() == [r["source"] for r in rows]
    assert cat.durations.tolist() == [r["duration"] for r in rows]
    assert cat.fingerprint == whole
    assert list(cat.corpus_fingerprints) == prints


def cache_files(cache_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under the cache dir → (inode, mtime_ns)."""
    return {str(p.relative_to(cache_dir)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(cache_dir.rglob("*")) if p.is_file()}


# --- tests ----------------------------------------------------------------------------------


def test_cache_equals_in_memory_catalog(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_corpus(a, 300, seed=1)
    write_corpus(b, 120, seed=2, parts=1)  # the same keys k000000..: ties broken by corpus
    cache = tmp_path / "cache"
    assert_same_view([str(a)], cache)
    assert_same_view([str(b), str(a)], cache)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2  # one cache per corpus set


def test_cache_equals_in_memory_catalog_on_a_real_corpus(loader_corpus, tmp_path):
    assert_same_view([loader_corpus.root], tmp_path / "cache")


def test_pages_are_mapped_not_copied(tmp_path):
    write_corpus(tmp_path / "c", 50)
    cat = load_catalog([str(tmp_path / "c")], tmp_path / "cache")
    for arr in (cat.durations, cat.corpus, cat.keys.data, cat.captions.offsets,
                cat.sources.codes, cat.member_offset):
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
    assert Path(cat.cache_path).parent == tmp_path / "cache"


OPEN = """
import json, sys
from longvid.training.data.catalog import load_catalog
cat = load_catalog([sys.argv[1]], sys.argv[2])
print(json.dumps([len(cat), cat.fingerprint, cat.keys[0]]))
"""


def _open_in_processes(root: Path, cache: Path, n: int) -> list[list]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, str(root), str(cache)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout))
    return out


def test_processes_share_one_cache_and_never_rewrite_it(tmp_path):
    root, cache = tmp_path / "c", tmp_path / "cache"
    write_corpus(root, 2000)
    # two processes start on an empty cache dir at once: one cache comes out, nothing left over
    first = _open_in_processes(root, cache, 2)
    assert first[0] == first[1]
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and not entries[0].startswith("."), entries
    before = cache_files(cache)
    # later processes (ranks, workers) open it: no file is rewritten, replaced or added
    again = _open_in_processes(root, cache, 2)
    assert again == first
    assert cache_files(cache) == before
    assert load_catalog([str(root)], cache).fingerprint == first[0][1]
    assert cache_files(cache) == before


def test_a_changed_corpus_gets_a_new_cache(tmp_path):
    root, cache = tmp_path / "c", tmp_path / "cache"
    write_corpus(root, 100)
    old = load_catalog([str(root)], cache)
    # drop one row from a part (as a rebuild would change it)
    part = root / SAMPLES_NAME / "part-000.parquet"
    t = pq.read_table(part)
    pq.write_table(t.slice(1), part)
    new = load_catalog([str(root)], cache)
    assert len(new) == len(old) - 1
    assert new.fingerprint != old.fingerprint
    assert new.cache_path != old.cache_path
    assert new.fingerprint == old_view([str(root)])[1]
    # a changed index.json (a shard rewritten) is another corpus too
    write_index(str(root), [ShardInfo(f"shards/s{j}.tar", 1, 11, "ff" * 32) for j in range(3)],
                "test")
    third = load_catalog([str(root)], cache)
    assert third.cache_path not in (old.cache_path, new.cache_path)
    assert third.fingerprint != new.fingerprint


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta"])
def test_a_damaged_cache_is_rebuilt_with_a_log_line(tmp_path, caplog, damage):
    root, cache = tmp_path / "c", tmp_path / "cache"
    write_corpus(root, 500)
    good = load_catalog([str(root)], cache)
    path = Path(good.cache_path)
    want = [good.row(i) for i in range(len(good))]
    if damage == "truncate":
        f = path / "caption.data.npy"
        f.write_bytes(f.read_bytes()[:-7])
    elif damage == "delete":
        (path / "member.offset.npy").unlink()
    else:
        (path / "meta.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="longvid.training.data.catalog_cache"):
        again = load_catalog([str(root)], cache)
    assert any("is damaged" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records), caplog.text
    assert again.fingerprint == good.fingerprint
    assert [again.row(i) for i in range(len(again))] == want
    assert catalog_cache.open_cache(path).meta["rows"] == 500


def test_a_dead_compilers_lock_is_taken_over(tmp_path):
    root, cache = tmp_path / "c", tmp_path / "cache"
    write_corpus(root, 30)
    cache.mkdir()
    key = catalog_cache.cache_key((str(root),))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket

    (cache / f"{key}.lock").write_text(
        json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    cat = load_catalog([str(root)], cache)
    assert len(cat) == 30
    assert not (cache / f"{key}.lock").exists()


def test_bad_corpora_are_refused_naming_them(tmp_path):
    root = tmp_path / "c"
    write_corpus(root, 20)
    part = root / SAMPLES_NAME / "part-001.parquet"
    t = pq.read_table(part)
    durations = t.column("duration").to_numpy().copy()
    durations[0] = -1.0
    pq.write_table(t.set_column(t.schema.get_field_index("duration"), "duration",
                                pa.array(durations)), part)
    key = t.column("key")[0].as_py()
    with pytest.raises(FormatError, match=rf"sample '{key}': duration -1.0"):
        load_catalog([str(root)], tmp_path / "cache")
    write_index(str(root), [ShardInfo("shards/s0.tar", 1, 10, "00" * 32)], "test")
    with pytest.raises(FormatError, match=r"names shard\(s\) not in index.json"):
        load_catalog([str(root)], tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]
