"""The audit out of core: on a metadata-only corpus (samples dataset + index, the shards absent)
the driver's peak memory stays bounded, and every problem list is capped with its true total.

Corpora are synthetic, in the build's layout: ``samples.parquet/`` per-unit parts, ``index.json``,
an ingest manifest and probed-videos parts. The audits run the real ``run_audit`` on local Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvid.schema import REJECTS_SCHEMA
from longvid.shards import SAMPLES_SCHEMA, ShardInfo, ledger, write_index

pytestmark = pytest.mark.slow

RSS_BOUND = 900e6  # bytes: driver peak RSS of the audit of 100k metadata rows (measured ~0.5 GB)


def metadata_corpus(root: Path, samples: int, per_shard: int, per_part: int,
                    stray_rows: int = 0, lost_records: int = 0) -> None:
    """Rows ``key`` 0..samples-1, four per record, ``per_shard`` per shard, ``per_part`` per
    unit part; ``stray_rows`` more rows placed in a shard the index does not list;
    ``lost_records`` manifest records without a sample or a reject."""
    folder = root / "samples.parquet"
    folder.mkdir(parents=True)
    total = samples + stray_rows
    rng = np.random.default_rng(0)
    for u, start in enumerate(range(0, total, per_part)):
        i = np.arange(start, min(total, start + per_part))
        n = len(i)
        dur = rng.uniform(5, 600, n)
        shard = [f"shards/s{k // per_shard:05d}.tar" if k < samples else "shards/stray.tar"
                 for k in i.tolist()]
        cols = {
            "key": [f"{k:08d}" for k in i.tolist()], "shard": shard,
            "source": ["kinetics" if k % 2 else "howto100m" for k in i.tolist()],
            "video_id": [f"v{k // 4:07d}" for k in i.tolist()],
            "record_id": [f"{'kinetics' if k % 2 else 'howto100m'}:v{k // 4:07d}"
                          for k in i.tolist()],
            "span_start": np.zeros(n), "span_end": dur, "num_frames": (dur * 30).astype(int),
            "extra": ['{"licence": "cc-by-4.0"}'] * n,
            "bucket": np.where(dur > 60, "long", "short").tolist(), "duration": dur,
            "width": np.full(n, 640, np.int32), "height": np.full(n, 360, np.int32),
            "fps": np.full(n, 30.0), "caption": ["a clip of something"] * n,
            "members": [[{"ext": "mp4", "offset": 512, "size": 1000 + k}] for k in i.tolist()],
            "embedding": pa.nulls(n, SAMPLES_SCHEMA.field("embedding").type),
            "fingerprint": pa.nulls(n, SAMPLES_SCHEMA.field("fingerprint").type),
        }
        pq.write_table(pa.table({f.name: cols[f.name] for f in SAMPLES_SCHEMA},
                                schema=SAMPLES_SCHEMA), folder / f"unit-{u:05d}.parquet")
    shards = [ShardInfo(url=f"shards/s{s:05d}.tar", nsamples=per_shard, filesize=1000,
                        sha256="0" * 64) for s in range((samples + per_shard - 1) // per_shard)]
    write_index(str(root), shards, name="test")
    rids = sorted({f"{'kinetics' if k % 2 else 'howto100m'}:v{k // 4:07d}"
                   for k in range(samples + stray_rows)})
    rids += [f"kinetics:lost{x:04d}" for x in range(lost_records)]
    (root / "ingest").mkdir()
    pq.write_table(pa.table({"record_id": rids, "source": [r.split(":")[0] for r in rids],
                             "raw": ["{}"] * len(rids)}), root / "ingest" / "manifest.parquet")
    videos = root / ledger.VIDEOS_PARTS
    videos.mkdir()
    pq.write_table(pa.table({"record_id": rids[: len(rids) - lost_records],
                             "duration": np.full(len(rids) - lost_records, 900.0)}),
                   videos / "unit-00000.parquet")
    pq.write_table(pa.Table.from_pylist([], REJECTS_SCHEMA), root / "rejects.parquet")


def test_audit_of_a_metadata_corpus_keeps_driver_memory_bounded(tmp_path):
    """100k rows, 10 parts of 10k, 20 shards (absent): the whole audit in a fresh process."""
    root = tmp_path / "corpus"
    metadata_corpus(root, 100_000, per_shard=5_000, per_part=10_000)
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from longvid.audit.config import AuditConfig
        from longvid.config import load_config
        from longvid.pipelines.audit import run_audit
        cfg = load_config(None, AuditConfig, ["ray.num_cpus=2", "gallery.per_group=2",
                                              "duplicates.near_cosine=null"])
        r = run_audit({str(root)!r}, {str(tmp_path / 'out')!r}, cfg,
                      compare_with={str(root)!r}).report
        hwm = [int(x.split()[1]) * 1024 for x in Path("/proc/self/status").read_text()
               .splitlines() if x.startswith("VmHWM:")][0]
        print(json.dumps({{"rss": hwm, "samples": r["totals"]["samples"],
                           "shards": r["run"]["audit"]["shards_checked"],
                           "rows": r["annotations"]["with"]["caption"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["samples"] == 100_000 and got["rows"] == 100_000 and got["shards"] == 20
    assert got["rss"] < RSS_BOUND, f"driver peak RSS {got['rss'] / 1e6:.0f} MB"


def test_problem_lists_are_capped_with_their_totals(tmp_path):
    """12 missing shards, 7 rows in a shard outside the index, 9 lost records, 3 stray shard
    files; at most 5 listed per reason, every count whole."""
    root = tmp_path / "corpus"
    metadata_corpus(root, 1_200, per_shard=100, per_part=400, stray_rows=7, lost_records=9)
    (root / "shards").mkdir()
    for k in range(3):
        (root / "shards" / f"orphan{k}.tar").write_bytes(b"x")
    from longvid.audit.config import AuditConfig
    from longvid.config import load_config
    from longvid.pipelines.audit import run_audit

    cfg = load_config(None, AuditConfig, ["ray.num_cpus=2", "checks.max_listed=5",
                                          "gallery.enabled=false"])
    r = run_audit(str(root), str(tmp_path / "out"), cfg).report
    checks = {c["name"]: c for c in r["checks"]}
    ex = checks["shards_exist"]
    assert ex["count"] == 12 and ex["reasons"] == {"missing_shard": 12}
    assert [p["shard"] for p in ex["problems"]] == [f"shards/s{s:05d}.tar" for s in range(5)]
    rows = checks["rows_match_shards"]
    assert rows["reasons"] == {"not_in_index": 7, "orphan_shard": 3}
    assert rows["count"] == 10 and len(rows["problems"]) == 5
    acc = checks["accounting"]
    assert acc["reasons"] == {"lost_record": 9} and len(acc["problems"]) == 5
    assert [p["key"] for p in acc["problems"]] == [f"kinetics:lost{x:04d}" for x in range(5)]
    build = r["accounting"]["build"]
    assert build["totals"]["lost"] == 9 and build["totals"]["samples"] == 1_207
    assert r["totals"]["samples"] == 1_207
    assert r["run"]["audit"]["shards_checked"] == 12
    assert set(r["run"]["audit"]["part_seconds"]) >= {"scan", "table_pass", "shards",
                                                      "duplicates", "report"}


def test_shards_are_grouped_by_the_parts_that_hold_them_in_index_order():
    a, b, c = "p/a.parquet", "p/b.parquet", "p/c.parquet"
    parts = [[a], [a], [a, b], [b], [c], [c], [c], [], [c]]
    from longvid.audit.shardtask import group_shards

    assert group_shards(parts, 16) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert group_shards(parts, 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8]]
    assert group_shards(parts, 1) == [[i] for i in range(9)]
    assert group_shards([], 4) == []


def test_a_group_task_gives_what_one_task_per_shard_gave(tmp_path):
    """6 shards of 300 rows over parts of 700 (shards 2 and 4 span two parts), the shards
    absent: the group's summaries are the per-shard ones, in order; a part that cannot be read
    is a problem of every shard it holds."""
    from longvid.audit.scan import read_part_rows, sample_parts
    from longvid.audit.shardtask import TASK_COLUMNS, group_rows, run_group_task, run_shard_task
    from longvid.audit.tablepass import table_pass

    root = tmp_path / "corpus"
    metadata_corpus(root, 1_800, per_shard=300, per_part=700)
    uri = str(root / "samples.parquet")
    tp = table_pass(uri, {f"shards/s{s:05d}.tar" for s in range(6)}, None, 5)
    urls = [f"shards/s{s:05d}.tar" for s in range(6)]
    parts = [tp.shard_parts[u] for u in urls]
    assert [len(p) for p in parts] == [1, 1, 2, 1, 2, 1] and len(sample_parts(uri)) == 3
    rows, problems = group_rows(dict(zip(urls, parts, strict=True)))
    for u, p in zip(urls, parts, strict=True):
        want = [r for part in p for r in read_part_rows(part, TASK_COLUMNS, u)]
        assert rows[u] == want and len(want) == 300 and problems[u] == []
    infos = [{"url": u, "nsamples": 300, "filesize": 1000, "sha256": "0" * 64} for u in urls]
    opts = {"decode_fraction": 0.0, "max_listed": 3}
    sizes = tp.shared_sizes
    grouped = run_group_task(str(root), infos, parts, opts, sizes, set())
    alone = [run_shard_task(str(root), i, p, opts, sizes, set())
             for i, p in zip(infos, parts, strict=True)]
    for s in grouped + alone:
        assert s.pop("seconds") >= 0
    assert grouped == alone
    assert [s["url"] for s in grouped] == urls and [s["rows"] for s in grouped] == [300] * 6
    assert all(s["problem_counts"] == {"missing_shard": 1} for s in grouped)

    bad = str(root / "samples.parquet" / "unit-00001.parquet")
    Path(bad).write_bytes(b"not parquet")
    rows, problems = group_rows(dict(zip(urls, parts, strict=True)))
    assert [len(rows[u]) for u in urls] == [300, 300, 100, 0, 100, 300]
    for u, p in zip(urls, parts, strict=True):
        assert [(x["reason"], x["shard"]) for x in problems[u]] == \
            [("unreadable_part", u)] * (bad in p)
        assert all(bad in x["message"] for x in problems[u])
