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

    .venv/bin/python bench/bench_scale.py [--big 1000000] [--small 100000] [--units 100000]
        [--s3-units 100000] [--finalize-units 1000] [--rows-per-unit 1000]

Goals (issue 12): 1M-row plan ≤ 1.5 GB and ≤ 1.3x the 100k RSS, in ≤ 60 s on 2 cores; HowTo100M
100k ≤ 1.5 GB; resume ≤ 2 requests per 1,000 units and ≤ 30 s; finalize over 1M rows ≤ 1 GB.
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


def child_catalog(root: str) -> dict:
    """The loader's catalog of a built corpus: resident bytes it adds per sample."""
    import gc

    from longvid.training.data.catalog import load_catalog

    gc.collect()
    before = _rss_now_mb()
    t = time.perf_counter()
    cat = load_catalog([root])
    wall = time.perf_counter() - t
    gc.collect()
    return {"samples": len(cat), "wall": wall, "added_mb": _rss_now_mb() - before,
            "peak_mb": _rss_mb()}


CHILDREN = {"catalog": child_catalog, "dry_run": child_dry_run, "old_plan": child_old_plan,
            "resume": child_resume, "old_resume": child_old_resume, "list_page": child_list_page,
            "finalize": child_finalize}


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
    ap.add_argument("--sections", default="plan,resume,finalize",
                    help="which parts to run (comma-separated)")
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
    c = run_child("catalog", str(froot))
    per = c["added_mb"] * 2**20 / c["samples"]
    print(f"\n### Loader catalog over the same corpus\n\n| samples | resident bytes added | per "
          f"sample | load wall | goal per sample | ratio |\n|---|---|---|---|---|---|\n"
          f"| {c['samples']:,} | {c['added_mb']:,.0f} MB | {per:.0f} B | {c['wall']:.1f} s | "
          f"64 B | {per / 64:.1f} |")


if __name__ == "__main__":
    main()
