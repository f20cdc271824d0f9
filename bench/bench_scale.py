"""The build's driver at cluster scale, on synthetic metadata-only inputs (no video exists):

1. ``longvid build --dry-run`` (stream the manifest, plan units) on WebVid-like manifests of 100k
   and 1M rows and a HowTo100M-like one of 100k rows (~80 ASR segments a row): peak RSS and
   wall, each in its own process. Peer, same run: the planner this replaced (the whole manifest
   as Python dicts, a JSON dump per row for the fingerprint), on the 100k WebVid manifest.
2. The resume scan (one LIST of the commit markers) over 100k committed units, on local disk
   and on a loopback S3 server (``rclone serve s3``), requests counted by a botocore event hook.
   Peer: the per-unit GET of each marker that a resume used to do, on a 2k-unit slice.
3. The end of a build (read the markers, sweep the files with one LIST per folder, finalize)
   over 1M sample rows in 1,000 per-unit parts: peak RSS and wall.
4. The loader's catalog over metadata-only corpora of 1M–10M sample rows (``--sections catalog``):
   compiling the memory-mapped cache (once per node), then two rank processes at once opening it,
   planning an epoch and resolving their first batch: time to first batch and the resident bytes
   each adds per sample (RSS, USS and PSS from ``/proc/self/smaps_rollup``). Peer, same run: the
   in-memory catalog it replaced (object arrays + the table), up to ``--old-catalog-max`` rows.

    .venv/bin/python bench/bench_scale.py [--big 1000000] [--small 100000] [--units 100000]
        [--s3-units 100000] [--finalize-units 1000] [--rows-per-unit 1000]
        [--sections plan,resume,finalize,catalog] [--catalog-rows 1000000,10000000]

Goals (issue 12): 1M-row plan ≤ 1.5 GB and ≤ 1.3x the 100k RSS, in ≤ 60 s on 2 cores; HowTo100M
100k ≤ 1.5 GB; resume ≤ 2 requests per 1,000 units and ≤ 30 s; finalize over 1M rows ≤ 1 GB;
the catalog ≤ 64 B per sample per process at 10M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

HERE = Path(__file__).resolve()


def _rss_mb() -> float:
    """This process's peak resident set (VmHWM: of its own address space since exec; getrusage's
    ru_maxrss would carry over the parent's peak across fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# --- children: each measurement in its own process, so its peak RSS is its own ---------------


def child_dry_run(manifest: str, out: str) -> dict:
    from longvid.pipelines.build import dry_run
    from longvid.pipelines.config import BuildConfig

    t = time.perf_counter()
    plan = dry_run(BuildConfig(manifest=manifest, output={"root": out}, progress=False))
    return {"wall": time.perf_counter() - t, "rss_mb": _rss_mb(), "units": plan["units"],
            "ray": "ray" in sys.modules}


def child_old_plan(manifest: str, out: str) -> dict:
    """The planner before issue 12: every row as a dict, a JSON dump of each for the
    fingerprint, records sorted and packed in Python."""
    import hashlib

    from longvid.shards import read_table

    t = time.perf_counter()
    records = read_table(manifest).to_pylist()
    h = hashlib.sha256()
    for rec in sorted(records, key=lambda r: r["record_id"]):
        h.update(json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str).encode())
    groups: list[list[dict]] = [[]]
    for rec in sorted(records, key=lambda r: r["record_id"]):
        if len(groups[-1]) >= 4:
            groups.append([])
        groups[-1].append(rec)
    return {"wall": time.perf_counter() - t, "rss_mb": _rss_mb(), "units": len(groups)}


def _count_requests() -> list[int]:
    from longvid import storage

    count = [0]

    def hook(**_kw) -> None:
        count[0] += 1

    storage.s3_client().meta.events.register("before-send.s3", hook)
    return count


def _configure(endpoint: str | None) -> None:
    from longvid import storage
    from longvid.config import S3Config

    if endpoint:
        storage.configure(S3Config(endpoint_url=endpoint, region="us-east-1"))


def child_resume(root: str, endpoint: str) -> dict:
    from longvid.shards import ledger

    _configure(endpoint)
    count = _count_requests() if root.startswith("s3://") else [0]
    t = time.perf_counter()
    ids = ledger.committed_ids(root)
    return {"wall": time.perf_counter() - t, "requests": count[0], "units": len(ids),
            "rss_mb": _rss_mb()}


def child_old_resume(root: str, endpoint: str) -> dict:
    """The resume before issue 12: a GET of every marker (and a HEAD per shard, left out), on
    the first 2,000 markers (named as ``write_markers`` names them: no LIST here)."""
    from longvid import storage

    _configure(endpoint)
    count = _count_requests() if root.startswith("s3://") else [0]
    t = time.perf_counter()
    files = [storage.join(root, "ledger", f"{marker_id(i)}.json") for i in range(2000)]
    for f in files:
        json.loads(storage.read_bytes(f))
    return {"wall": time.perf_counter() - t, "requests": count[0], "units": len(files)}


def child_list_page(root: str, endpoint: str) -> dict:
    """The server's cost of one LIST request on the markers' folder: the first page of 1,000
    keys and a page of 1 key (median of 3 each). A server that walks the whole folder for every
    request costs about the same for both, and more per page the bigger the folder."""
    import statistics

    from longvid import storage
    from longvid.storage.s3 import split_uri

    _configure(endpoint)
    bucket, prefix = split_uri(storage.join(root, "ledger") + "/", need_key=False)
    client = storage.s3_client()
    out = {}
    for keys in (1000, 1):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=keys)
            times.append(time.perf_counter() - t)
        out[f"page_{keys}_s"] = statistics.median(times)
    return out


def child_finalize(root: str, units: str) -> dict:
    from longvid.pipelines.finalize import finalize
    from longvid.pipelines.plan import Unit
    from longvid.shards import ledger

    t = time.perf_counter()
    ids = sorted(ledger.committed_ids(root))
    plan = [Unit(uid, 0, [], 1000, 3600.0) for uid in ids]
    markers = ledger.read_markers(root, ids)
    removed, damaged = ledger.sweep(root, markers, set(ids))
    assert not removed and not damaged, (removed[:3], damaged[:3])
    summary = finalize(root, plan, markers, None, {"wall_seconds": 1.0})
    assert summary["samples"] == int(units), summary["samples"]
    return {"wall": time.perf_counter() - t, "rss_mb": _rss_mb(), "samples": summary["samples"]}


def _rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _smaps() -> dict:
    """This process's Rss / Pss / USS (private clean + dirty) in bytes, from smaps_rollup."""
    got = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                got[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return {"rss": got["Rss"], "pss": got["Pss"],
            "uss": got["Private_Clean"] + got["Private_Dirty"]}


def _delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before}


def child_catalog(root: str, cache: str) -> dict:
    """Compile the catalog cache of a corpus (cold): wall and peak RSS of the compiling process."""
    from longvid.training.data.catalog import load_catalog

    t = time.perf_counter()
    cat = load_catalog([root], cache)
    return {"samples": len(cat), "wall": time.perf_counter() - t, "peak_mb": _rss_mb(),
            "load": os.getloadavg()[0]}


def _old_load_catalog(root: str):
    """The in-memory catalog this cache replaced (object arrays + the selected table), kept
    here as the peer."""
    import hashlib

    import pyarrow.compute as pc

    from longvid.shards.index import read_index
    from longvid.shards.manifest import SAMPLES_NAME, read_table

    cols = ["key", "shard", "source", "bucket", "duration", "caption", "members"]
    table = read_table(f"{root}/{SAMPLES_NAME}").select(cols)
    sums = {s.url: s.sha256 for s in read_index(root).shards}
    t = table.sort_by("key")
    h = hashlib.sha256()
    h.update("\n".join(t.column("key").to_pylist()).encode())
    h.update("\n".join(f"{s}:{sums.get(s, '')}" for s in t.column("shard").to_pylist()).encode())
    h.update(t.column("duration").to_numpy(zero_copy_only=False).astype("<f8").tobytes())
    members = pc.list_flatten(t.column("members"))
    h.update("\n".join(pc.struct_field(members, "ext").to_pylist()).encode())
    for name in ("offset", "size"):
        h.update(pc.struct_field(members, name).to_numpy(zero_copy_only=False).tobytes())
    del t, members
    table = table.append_column("corpus", pa.array(np.zeros(table.num_rows, np.int32)))
    table = table.sort_by([("key", "ascending"), ("corpus", "ascending")]).combine_chunks()
    return {"keys": np.array(table.column("key").to_pylist(), dtype=object),
            "sources": np.array(table.column("source").to_pylist(), dtype=object),
            "buckets": np.array(table.column("bucket").to_pylist(), dtype=object),
            "durations": table.column("duration").to_numpy(zero_copy_only=False),
            "table": table, "fingerprint": h.hexdigest()}


def child_catalog_old(root: str) -> dict:
    import gc

    gc.collect()
    before = _smaps()
    t = time.perf_counter()
    cat = _old_load_catalog(root)
    wall = time.perf_counter() - t
    gc.collect()
    return {"samples": len(cat["keys"]), "wall": wall, **_delta(before, _smaps()),
            "peak_mb": _rss_mb()}


def child_catalog_rank(root: str, cache: str, rank: str, world: str) -> dict:
    """One rank: open the (compiled) cache, plan the epoch with a 3-component mixture, resolve
    its first batch's rows; then wait for the parent (so the other ranks hold their maps too)
    and report its memory."""
    import gc

    from longvid.training.data.catalog import load_catalog
    from longvid.training.data.config import StageData
    from longvid.training.data.plan import component_pools, plan_epoch

    cfg = StageData(corpora=[root], batch_size=8, mixture=[
        {"name": "long", "weight": 1.0, "buckets": ["long"]},
        {"name": "webvid", "weight": 2.0, "sources": ["webvid"], "max_duration": 25.0},
        {"name": "rest", "weight": 1.0}])
    gc.collect()
    before = _smaps()
    t = time.perf_counter()
    cat = load_catalog([root], cache)
    t_open = time.perf_counter() - t
    pools = component_pools(cat, cfg)
    t_pools = time.perf_counter() - t
    plan = plan_epoch(cat, cfg, 0, int(world), pools)
    t_plan = time.perf_counter() - t
    rows = [cat.row(int(plan.rows[p])) for p in plan.positions(int(rank), 0)]
    t_first = time.perf_counter() - t
    gc.collect()
    opened = _smaps()
    print("ready", flush=True)
    sys.stdin.readline()  # every rank holds its catalog now
    return {"samples": len(cat), "open_s": t_open, "pools_s": t_pools - t_open,
            "plan_s": t_plan - t_pools, "first_batch_s": t_first,
            "first_key": rows[0]["key"], **_delta(before, opened),
            **{f"{k}_shared": v for k, v in _delta(before, _smaps()).items()}}


CHILDREN = {"catalog": child_catalog, "catalog_old": child_catalog_old,
            "catalog_rank": child_catalog_rank, "dry_run": child_dry_run,
            "old_plan": child_old_plan, "resume": child_resume, "old_resume": child_old_resume,
            "list_page": child_list_page, "finalize": child_finalize}


def run_child(name: str, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, str(HERE), "--child", name, *args],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- synthetic commit logs --------------------------------------------------------------------


def marker_id(i: int) -> str:
    return f"u{i:015x}"


def write_markers(root: Path, n: int) -> None:
    """``n`` commit markers of the size a real one has (~0.8 KB)."""
    d = root / "ledger"
    d.mkdir(parents=True)
    for i in range(n):
        uid = marker_id(i)
        m = {"unit_id": uid, "generation": 0, "counts": {"records": 240, "samples": 500,
                                                         "rejects": 3},
             "parts": {"samples.parquet": f"samples.parquet/{uid}.parquet"},
             "shards": [{"url": f"shards/{uid}-0000{k}.tar", "nsamples": 250,
                         "filesize": 268_000_000, "sha256": "ab" * 32} for k in range(2)],
             "stats": {"by_source": {"webvid": {"records": 240, "accepted": 237, "rejected": 3,
                                                "samples": 500, "source_seconds": 3600.0}},
                       "stage_seconds": {"probe": 10.0, "scan": 700.0, "cut": 300.0},
                       "reject_reasons": {"probe:unreadable": 3}, "wall_seconds": 1000.0,
                       "node_id": "f" * 56, "gpu_ids": []}}
        (d / f"{uid}.json").write_text(json.dumps(m))


def write_finalize_input(root: Path, units: int, rows_per_unit: int) -> None:
    """Per-unit sample parts, tiny shard files and markers, as workers would leave them."""
    from longvid.shards import SAMPLES_SCHEMA, ledger

    (root / "samples.parquet").mkdir(parents=True)
    (root / "shards").mkdir()
    (root / "ledger").mkdir()
    n = rows_per_unit
    for u in range(units):
        uid = f"u{u:015x}"
        keys = [f"webvid-{u:06d}-{i:05d}" for i in range(n)]
        members = pa.array([[{"ext": "mp4", "offset": 512 + i * 4096, "size": 3000},
                             {"ext": "json", "offset": 3584 + i * 4096, "size": 300}]
                            for i in range(n)], SAMPLES_SCHEMA.field("members").type)
        table = pa.table({
            "key": keys, "shard": [f"shards/{uid}-00000.tar"] * n,
            "source": ["webvid"] * n, "video_id": [f"v{u}-{i}" for i in range(n)],
            "record_id": [f"webvid:v{u}-{i}" for i in range(n)], "bucket": ["short"] * n,
            "span_start": np.zeros(n), "span_end": np.full(n, 10.0), "duration": np.full(n, 10.0),
            "fps": np.full(n, 25.0), "width": np.full(n, 640, np.int32),
            "height": np.full(n, 360, np.int32), "num_frames": np.full(n, 250),
            "caption": [f"a clip {i}" for i in range(n)], "members": members,
            "extra": ["{}"] * n, "embedding": pa.nulls(n, pa.list_(pa.float16())),
        }).cast(SAMPLES_SCHEMA)
        pq.write_table(table, root / "samples.parquet" / f"{uid}.parquet", compression="zstd")
        (root / "shards" / f"{uid}-00000.tar").write_bytes(b"\0" * 10)
        marker = ledger.CommitMarker(
            uid, [{"url": f"shards/{uid}-00000.tar", "nsamples": n, "filesize": 10,
                   "sha256": "ab" * 32}],
            {"samples.parquet": f"samples.parquet/{uid}.parquet"},
            {"records": n, "samples": n, "rejects": 0},
            {"by_source": {"webvid": {"records": n, "accepted": n, "samples": n,
                                      "source_seconds": 10.0 * n}}, "wall_seconds": 1.0})
        ledger.commit(str(root), marker)
    (root / "build.json").write_text(json.dumps({"format": ledger.BUILD_FORMAT}))


# --- the parent -------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--small", type=int, default=100_000, help="rows of the small manifests")
    ap.add_argument("--big", type=int, default=1_000_000, help="rows of the big manifest")
    ap.add_argument("--units", type=int, default=100_000, help="committed units to scan locally")
    ap.add_argument("--s3-units", type=int, default=100_000,
                    help="committed units to scan on the loopback S3 server (rclone walks the "
                    "whole folder for every LIST page: its time grows with the square of this)")
    ap.add_argument("--sections", default="plan,resume,finalize,catalog",
                    help="which parts to run (comma-separated)")
    ap.add_argument("--catalog-rows", default="1000000,10000000",
                    help="sample rows of the catalog corpora (comma-separated)")
    ap.add_argument("--old-catalog-max", type=int, default=1_000_000,
                    help="largest corpus the in-memory peer catalog is measured on")
    ap.add_argument("--finalize-units", type=int, default=1000)
    ap.add_argument("--rows-per-unit", type=int, default=1000)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*args.child[1:])))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    print("machine: 2-core shared CPU box; each row is one process (peak RSS is its own)\n")
    sections = set(args.sections.split(","))
    if "plan" in sections:
        bench_plan(args, work)
    if "resume" in sections:
        bench_resume(args, work)
    if "finalize" in sections:
        bench_finalize(args, work)
    if "catalog" in sections:
        bench_catalog(args, work)


def bench_plan(args: argparse.Namespace, work: Path) -> None:
    from tests.fixtures.manifests import write_synthetic_manifest

    print("### Planning (`longvid build --dry-run`)\n")
    print("| manifest | rows | units | peak RSS | wall |\n|---|---|---|---|---|")
    res = {}
    for name, rows, kind in (("webvid", args.small, "webvid"), ("webvid", args.big, "webvid"),
                             ("howto100m", args.small, "howto100m")):
        path = write_synthetic_manifest(work / f"{name}-{rows}.parquet", rows, kind)
        r = run_child("dry_run", str(path), str(work / "none"))
        assert not r["ray"] and not (work / "none").exists()
        res[(name, rows)] = r
        print(f"| {name}-like | {rows:,} | {r['units']:,} | {r['rss_mb']:,.0f} MB | "
              f"{r['wall']:.1f} s |")
    peer = run_child("old_plan", str(work / f"webvid-{args.small}.parquet"), "")
    print(f"| peer: rows as dicts (the old planner), webvid-like | {args.small:,} | "
          f"{peer['units']:,} | {peer['rss_mb']:,.0f} MB | {peer['wall']:.1f} s |")
    small, big = res[("webvid", args.small)], res[("webvid", args.big)]
    howto = res[("howto100m", args.small)]
    print(f"\n- {args.big:,} rows: RSS {big['rss_mb']:,.0f} MB vs goal 1,536 MB "
          f"(ratio {big['rss_mb'] / 1536:.2f}); {big['rss_mb'] / small['rss_mb']:.2f}x the "
          f"{args.small:,}-row RSS (goal ≤ 1.3x); wall {big['wall']:.1f} s vs goal 60 s "
          f"(ratio {big['wall'] / 60:.2f})")
    print(f"- HowTo100M-like {args.small:,}: RSS {howto['rss_mb']:,.0f} MB vs goal 1,536 MB "
          f"(ratio {howto['rss_mb'] / 1536:.2f})")
    print(f"- vs the old planner at {args.small:,} rows: RSS {small['rss_mb'] / peer['rss_mb']:.2f}x, "
          f"wall {small['wall'] / peer['wall']:.2f}x")



def bench_resume(args: argparse.Namespace, work: Path) -> None:
    from tests.fixtures.s3 import ACCESS_KEY, BUCKET, SECRET_KEY, start_rclone_s3

    print(f"\n### Resume scan over committed units ({args.units:,} local, {args.s3_units:,} "
          "on S3)\n")
    s3root = work / "s3"
    (s3root / BUCKET).mkdir(parents=True)
    local_build = work / "local-build"
    write_markers(local_build, args.units)
    write_markers(s3root / BUCKET / "build", args.s3_units)
    small = min(10_000, args.s3_units)
    write_markers(s3root / BUCKET / "build-small", small)  # the server's page cost vs folder size
    proc, endpoint = start_rclone_s3(s3root, work / "rclone.log")
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_REGION": "us-east-1"}
    try:
        print("| where | what | units | requests | per 1,000 units | wall |\n|---|---|---|---|---|---|")
        for where, root, n in (("local", str(local_build), args.units),
                               ("S3 loopback", f"s3://{BUCKET}/build", args.s3_units)):
            r = run_child("resume", root, endpoint, env=env)
            assert r["units"] == n, r
            per = 1000 * r["requests"] / n
            print(f"| {where} | LIST markers | {r['units']:,} | {r['requests']:,} | {per:.2f} | "
                  f"{r['wall']:.2f} s |")
            o = run_child("old_resume", root, endpoint, env=env)
            oper = 1000 * o["requests"] / o["units"]
            est = o["wall"] * n / o["units"]
            print(f"| {where} | peer: GET each marker | {o['units']:,} | {o['requests']:,} | "
                  f"{oper:.0f} | {o['wall']:.2f} s ({est:.0f} s for {n:,}) |")
            if where != "local":
                print(f"\n- S3: {per:.2f} requests per 1,000 units vs goal 2 (ratio {per / 2:.2f});"
                      f" {r['wall']:.1f} s vs goal 30 s (ratio {r['wall'] / 30:.2f}); the "
                      f"per-unit GET needs {oper / max(per, 1e-9):.0f}x the requests")
        print("\n| server's cost of one LIST request (median of 3) | folder of "
              f"{small:,} markers | folder of {args.s3_units:,} |\n|---|---|---|")
        pages = [run_child("list_page", f"s3://{BUCKET}/{d}", endpoint, env=env)
                 for d in ("build-small", "build")]
        for keys in (1000, 1):
            print(f"| page of {keys:,} key(s) | {pages[0][f'page_{keys}_s']:.3f} s | "
                  f"{pages[1][f'page_{keys}_s']:.3f} s |")
    finally:
        proc.terminate()
        proc.wait()



def bench_finalize(args: argparse.Namespace, work: Path) -> None:
    rows = args.finalize_units * args.rows_per_unit
    print(f"\n### End of build over {rows:,} sample rows in {args.finalize_units:,} parts\n")
    froot = work / "final"
    t = time.perf_counter()
    write_finalize_input(froot, args.finalize_units, args.rows_per_unit)
    print(f"(synthetic parts written in {time.perf_counter() - t:.0f} s)\n")
    r = run_child("finalize", str(froot), str(rows))
    print("| what | peak RSS | wall |\n|---|---|---|")
    print(f"| read markers + sweep + finalize | {r['rss_mb']:,.0f} MB | {r['wall']:.1f} s |")
    print(f"\n- RSS {r['rss_mb']:,.0f} MB vs goal 1,024 MB (ratio {r['rss_mb'] / 1024:.2f})")


# --- the loader's catalog ---------------------------------------------------------------------


def write_catalog_corpus(root: Path, rows: int, part_rows: int = 100_000,
                         shard_rows: int = 1000) -> None:
    """A metadata-only corpus of ``rows`` samples in ``SAMPLES_SCHEMA`` (parts of ``part_rows``,
    written in chunks with pyarrow compute, no per-row Python objects) and its ``index.json``;
    keys are written in a scrambled order so the catalog has to sort them."""
    import pyarrow.compute as pc

    from longvid.shards import SAMPLES_SCHEMA
    from longvid.shards.index import write_index
    from longvid.shards.tarwriter import ShardInfo

    (root / "samples.parquet").mkdir(parents=True)
    n_shards = -(-rows // shard_rows)
    write_index(str(root), [ShardInfo(f"shards/{j:06d}.tar", shard_rows, 1 << 30, f"{j:064x}")
                            for j in range(n_shards)], "bench")
    member_type = SAMPLES_SCHEMA.field("members").type
    sources = pa.array(["webvid", "howto100m", "ego4d"])
    for p, a in enumerate(range(0, rows, part_rows)):
        i = np.arange(a, min(a + part_rows, rows), dtype=np.int64)
        n = len(i)
        scrambled = (i * 2_654_435_761) % (1 << 40)  # distinct, out of order
        ids = pc.cast(pa.array(scrambled), pa.string())
        dur = 5.0 + (i % 113) * 0.5
        flat = pa.StructArray.from_arrays(
            [pa.array(np.tile(["mp4", "json"], n)),
             pa.array(np.stack([512 + (i % shard_rows) * 4096, 3584 + (i % shard_rows) * 4096],
                               1).ravel()),
             pa.array(np.tile([3000, 300], n).astype(np.int64))], fields=list(member_type.value_type))
        members = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
                                           flat, type=member_type)
        table = pa.table({
            "key": pc.binary_join_element_wise("webvid-", ids, ""),
            "shard": pc.binary_join_element_wise(
                "shards/", pc.utf8_lpad(pc.cast(pa.array(i // shard_rows), pa.string()), 6, "0"),
                ".tar", ""),
            "source": sources.take(pa.array(i % 3)),
            "video_id": ids, "record_id": pc.binary_join_element_wise("webvid:", ids, ""),
            "bucket": pa.array(np.where(dur >= 60, "long", "short")),
            "span_start": np.zeros(n), "span_end": dur, "duration": dur,
            "fps": np.full(n, 25.0), "width": np.full(n, 640, np.int32),
            "height": np.full(n, 360, np.int32), "num_frames": (dur * 25).astype(np.int64),
            "caption": pc.binary_join_element_wise("A person walks a dog in the park, clip ", ids,
                                                   ""),
            "members": members, "extra": pa.nulls(n, pa.string()),
            "embedding": pa.nulls(n, pa.list_(pa.float16())),
        }).cast(SAMPLES_SCHEMA)
        pq.write_table(table, root / "samples.parquet" / f"part-{p:05d}.parquet",
                       compression="zstd")


def run_ranks(root: Path, cache: Path, world: int) -> list[dict]:
    """``world`` rank processes at once on the same cache; each reports once all are open."""
    procs = [subprocess.Popen([sys.executable, str(HERE), "--child", "catalog_rank", str(root),
                               str(cache), str(r), str(world)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"rank failed: {line}{p.stderr.read()[-3000:]}")
    out = []
    for p in procs:
        stdout, stderr = p.communicate("go\n", timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"rank failed:\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def bench_catalog(args: argparse.Namespace, work: Path) -> None:
    print("\n### Loader catalog: memory-mapped cache vs the in-memory catalog\n")
    print("| samples | what | wall | RSS / sample | USS / sample | PSS / sample (2 ranks "
          "holding it) | goal | ratio to goal |\n|---|---|---|---|---|---|---|---|")
    for rows in [int(x) for x in args.catalog_rows.split(",")]:
        root, cache = work / f"catalog-{rows}", work / f"catalog-cache-{rows}"
        t = time.perf_counter()
        write_catalog_corpus(root, rows)
        print(f"| {rows:,} | (synthetic corpus written in {time.perf_counter() - t:.0f} s) "
              "| | | | | | |")
        if rows <= args.old_catalog_max:
            o = run_child("catalog_old", str(root))
            print(f"| {rows:,} | peer: in-memory catalog (object arrays + table) | "
                  f"{o['wall']:.1f} s | {o['rss'] / rows:.0f} B | {o['uss'] / rows:.0f} B | "
                  f"– | 64 B | {o['rss'] / rows / 64:.1f} |")
        c = run_child("catalog", str(root), str(cache))
        size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        print(f"| {rows:,} | compile the cache (once per node; peak RSS {c['peak_mb']:,.0f} MB, "
              f"{size / rows:.0f} B/sample on disk; load avg {c['load']:.0f}) | {c['wall']:.1f} s | – | – | – | – | – |")
        ranks = run_ranks(root, cache, 2)
        assert ranks[0]["samples"] == rows
        for r in ranks[:1]:
            rss, uss, pss = (r[k] / rows for k in ("rss", "uss", "pss_shared"))
            print(f"| {rows:,} | open cache + plan epoch (3-component mixture) + first batch, "
                  f"rank 0 of 2 (open {r['open_s']:.2f} s, pools {r['pools_s']:.2f} s, plan "
                  f"{r['plan_s']:.2f} s) | {r['first_batch_s']:.2f} s | "
                  f"{rss:.0f} B | {uss:.0f} B | {pss:.0f} B | 64 B | {max(rss, uss) / 64:.2f} |")
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
