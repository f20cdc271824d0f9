"""The partitioned duplicate search (longvid.dedup.partition on real local Ray): the same
duplicates as the in-process search on planted data spread over several parts, with only the
training sample's vectors on the driver; and the fingerprint column read beside old corpora's
``extra.fingerprint``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvid.dedup import DedupConfig, find_duplicates
from longvid.dedup.fingerprint import FRAMES, from_bytes, to_bytes, to_hex
from longvid.dedup.read import read_samples
from longvid.pipelines.dedup_partitioned import find_duplicates_partitioned, task_groups
from longvid.shards import SAMPLES_SCHEMA
from tests.test_dedup import planted

N, PARTS, DIM = 1200, 4, 64


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def fingerprints(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random 4-frame fingerprints: ``[n, F]`` uint64 hashes, ``[n, F, 3]`` colours."""
    rng = np.random.default_rng(seed)
    h = rng.integers(1, 2**63, size=(n, FRAMES), dtype=np.uint64)
    return h, rng.integers(0, 255, size=(n, FRAMES, 3), dtype=np.uint8)


def write_corpus(folder, x: np.ndarray) -> dict:
    """N samples in PARTS parts (the samples schema), each its own video: planted embedding
    twins (from tests.test_dedup.planted), 5 exact copies (equal clip hashes), 5 fingerprint
    copies (3 bits apart; half in the column, half the old way in ``extra``)."""
    n = len(x)
    h, c = fingerprints(n)
    rng = np.random.default_rng(2)
    copy_of = {int(b): int(a) for a, b in rng.choice(n, size=(5, 2), replace=False)}
    for b, a in copy_of.items():
        h[b] = h[a] ^ np.uint64(0b111)
        c[b] = c[a]
    same_hash = {int(b): int(a) for a, b in rng.choice(n, size=(5, 2), replace=False)}
    per = n // PARTS
    for p in range(PARTS):
        rows = []
        for r in range(p * per, (p + 1) * per):
            extra = {"scores": {"clip_sha256": f"sha{same_hash.get(r, r)}"}}
            fp_col = None
            if r % 2:
                extra["fingerprint"] = to_hex((h[r], c[r]))  # an older corpus's place
            else:
                fp_col = to_bytes((h[r], c[r]))
            rows.append({"key": f"k{r:06d}", "shard": "s.tar", "record_id": f"v{r}",
                         "bucket": "short", "members": [], "extra": json.dumps(extra),
                         "embedding": x[r].tolist(), "fingerprint": fp_col})
        pq.write_table(pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA),
                       folder / f"unit-{p:03d}.parquet")
    return {"copies": copy_of, "exact": same_hash}


def as_pairs(table: pa.Table) -> list[tuple[str, str, str]]:
    return sorted(zip(table.column("key").to_pylist(), table.column("kept_key").to_pylist(),
                      table.column("signal").to_pylist(), strict=True))


def test_partitioned_equals_in_process(tmp_path, ray_local):
    x, twins = planted(N, DIM, groups=30, seed=0)
    folder = tmp_path / "samples.parquet"
    folder.mkdir()
    planted_extra = write_corpus(folder, x)
    # several clusters, buckets, tasks; a training sample a quarter of the rows
    cfg = DedupConfig(cluster_size=100, bucket_rows=300, task_rows=300, max_train_points=300,
                      fingerprint_max_bits=32)
    whole = find_duplicates(read_samples(str(folder)), cfg, exact=True, near_cosine=0.9)
    uris = sorted(str(p) for p in folder.iterdir())
    got = find_duplicates_partitioned(uris, cfg, str(tmp_path / "work"), exact=True,
                                      near_cosine=0.9)
    table = got.table()
    assert as_pairs(table) == as_pairs(whole.table)
    # every planted duplicate is there, named by its signal
    dup = dict(zip(table.column("key").to_pylist(), table.column("signal").to_pylist(),
                   strict=True))
    for a, b in twins:
        assert "embedding" in dup[f"k{max(a, b):06d}"]
    for b, a in planted_extra["copies"].items():
        assert "fingerprint" in dup[f"k{max(a, b):06d}"]
    for b, a in planted_extra["exact"].items():
        assert "exact" in dup[f"k{max(a, b):06d}"]
    assert table.num_rows == len(twins) + 10
    # spread: 4 tasks wrote several cluster buckets; the driver got only the training pick
    st = got.stats
    assert st["tasks"] == PARTS and st["embedding_buckets"] >= 2
    assert st["embedding_clusters"] == 12
    assert st["driver_sample_rows"] == 300 + 300  # embedding and fingerprint picks, not N
    assert st["embedding_rows"] == N and st["fingerprint_rows"] == N
    got.remove_work()
    assert not list((tmp_path / "work" / "embedding").rglob("*.parquet"))


def test_fingerprint_column_round_trip():
    h, c = fingerprints(3)
    data = to_bytes((h[0], c[0]))
    assert len(data) == 44
    back = from_bytes(data)
    assert np.array_equal(back[0], h[0]) and np.array_equal(back[1], c[0])
    assert from_bytes(b"short") is None and from_bytes(None) is None


def test_task_groups_keep_parts_whole():
    assert task_groups([5, 5, 5, 20, 1], 10) == [[0, 1], [2], [3], [4]]
