"""Near-duplicate search (longvid.dedup) at 100k, 300k and 1M samples against all-pairs.

    .venv/bin/python bench/bench_dedup.py [--sizes 100000 300000 1000000] [--brute 100000]
    .venv/bin/python bench/bench_dedup.py --partitioned [--sizes ...] [--brute 100000]

``--partitioned``: the same embeddings written as a samples-like Parquet dataset (parts of
``--part-rows`` rows: key, record_id, bucket, embedding list<float16>), searched by
:func:`~longvid.pipelines.dedup_partitioned.find_duplicates_partitioned` on a local Ray with
2 CPUs. The dataset is written by one process and the search runs in another, whose peak RSS
is the driver's (``getrusage`` of itself: centroids, training sample, pairs); the Ray workers'
summed RSS (this driver's node's ``ray::`` processes) is sampled every 0.5 s (psutil) for
the workers' peak. Recall/precision at
``--brute`` compare the pairs the buckets found with the all-pairs range search.

Synthetic embeddings as a corpus's would be: dim 512, float16, unit length, grouped around
topics (a sample of a topic has cosine ~0.67 with another of it, ~0 with other topics), and
planted near-duplicate pairs (cosine ~0.99, one sample in 50 has a twin). Each size runs in
its own process (peak RSS is per process): ``find_duplicates`` at cosine 0.9, default config
(k-means with one cluster per 1000 samples, pairs only inside clusters). Printed per size:
wall, peak RSS, pairs found; then the scaling exponent of the wall time from the smallest to
the largest size (all-pairs is 2), and at ``--brute`` samples the pairs of an all-pairs search
(faiss inner-product range search, the same cosine) with its wall time: recall and precision
of the clustered search against it, and the ratio of the two wall times.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 512
THRESHOLD = 0.9


def embeddings(n: int, seed: int = 0, chunk: int = 50_000) -> np.ndarray:
    """``[n, DIM]`` float16 unit rows: topic + noise, with n/50 planted twins (cos ~0.99)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(1, n // 500), DIM)).astype(np.float32)
    x = np.empty((n, DIM), np.float16)
    for s in range(0, n, chunk):  # no [n, DIM] float32 temporary
        m = min(chunk, n - s)
        part = topics[rng.integers(0, len(topics), m)] + 0.7 * rng.standard_normal(
            (m, DIM), dtype=np.float32)
        x[s : s + m] = part / np.linalg.norm(part, axis=1, keepdims=True)
    pairs = rng.choice(n, size=(n // 50, 2), replace=False)
    base = x[pairs[:, 0]].astype(np.float32)
    twin = base + 0.1 * rng.standard_normal(base.shape, dtype=np.float32) / math.sqrt(DIM)
    x[pairs[:, 1]] = twin / np.linalg.norm(twin, axis=1, keepdims=True)
    return x


def run_one(n: int, brute: bool) -> dict:
    from longvid.dedup import DedupConfig, Samples, find_duplicates
    from longvid.dedup.semantic import near_pairs

    x = embeddings(n)
    keys = np.asarray([f"k{i:08d}" for i in range(n)], dtype=object)
    s = Samples(keys, keys, np.full(n, "short", dtype=object), embeddings=x)
    cfg = DedupConfig(fingerprint_max_bits=None)
    t = time.perf_counter()
    result = find_duplicates(s, cfg, exact=False, near_cosine=THRESHOLD)
    wall = time.perf_counter() - t
    out = {"n": n, "wall_s": round(wall, 2), "duplicates": result.table.num_rows,
           "clusters": result.stats["clusters"]}
    if brute:
        codes = np.arange(n)
        i, j, _, _ = near_pairs(x, np.zeros(n, np.int64), codes, THRESHOLD, cfg)
        found = set(zip(i.tolist(), j.tolist(), strict=True))
        t = time.perf_counter()
        truth = brute_pairs(x)
        out["brute_wall_s"] = round(time.perf_counter() - t, 2)
        # the clustered search on the same data, pairs only (the brute force gives pairs)
        hit = len(found & truth)
        out.update(brute_pairs=len(truth), found_pairs=len(found),
                   recall=round(hit / max(1, len(truth)), 5),
                   precision=round(hit / max(1, len(found)), 5))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def write_dataset(n: int, folder: str, part_rows: int) -> None:
    """The embeddings of :func:`embeddings` as samples parts (every sample its own video)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = embeddings(n)
    os.makedirs(folder, exist_ok=True)
    for p, s in enumerate(range(0, n, part_rows)):
        part = x[s : s + part_rows]
        keys = pa.array([f"k{i:08d}" for i in range(s, s + len(part))], pa.string())
        emb = pa.ListArray.from_arrays(pa.array(np.arange(0, part.size + 1, DIM, dtype=np.int32)),
                                       pa.array(part.reshape(-1)))
        table = pa.table({"key": keys, "record_id": keys,
                          "bucket": pa.array(["short"] * len(part), pa.string()),
                          "extra": pa.array(["{}"] * len(part), pa.string()), "embedding": emb})
        pq.write_table(table, os.path.join(folder, f"unit-{p:05d}.parquet"))


def brute_truth(n: int) -> set[tuple[int, int]]:
    """The planted corpus of ``n`` rows' pairs by :func:`brute_pairs`."""
    return brute_pairs(embeddings(n))


def brute_pairs(x: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, at cosine >= THRESHOLD by a faiss range search."""
    import faiss

    n = len(x)
    index = faiss.IndexFlatIP(DIM)
    index.add(x.astype(np.float32))
    truth = set()
    for s0 in range(0, n, 20_000):
        q = x[s0 : s0 + 20_000].astype(np.float32)
        lims, _, ids = index.range_search(q, THRESHOLD)
        for r in range(len(q)):
            for c in ids[lims[r]:lims[r + 1]].tolist():
                if c > s0 + r:
                    truth.add((s0 + r, c))
    return truth


class WorkerPeak:
    """Samples the summed RSS of this driver's Ray worker processes (``ray::`` titles)."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self) -> None:
        import psutil

        while not self.stop.wait(0.5):
            total = 0
            # this driver's own Ray node only (others may run on a shared machine)
            for p in psutil.Process().children(recursive=True):
                try:
                    if " ".join(p.cmdline()).startswith("ray::"):
                        total += p.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    continue
            self.peak = max(self.peak, total)

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        return round(self.peak / 2**20, 1)


def run_partitioned(n: int, folder: str, with_truth: str | None, task_rows: int,
                    bucket_rows: int) -> dict:
    import ray

    from longvid.dedup import DedupConfig
    from longvid.dedup.partition import read_part
    from longvid.pipelines.dedup_partitioned import find_duplicates_partitioned

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
             object_store_memory=256 * 2**20)
    uris = sorted(str(p) for p in Path(folder).iterdir())
    cfg = DedupConfig(fingerprint_max_bits=None, task_rows=task_rows, bucket_rows=bucket_rows)
    peak = WorkerPeak()
    t = time.perf_counter()
    result = find_duplicates_partitioned(uris, cfg, folder + ".work", exact=False,
                                         near_cosine=THRESHOLD)
    wall = time.perf_counter() - t
    out = {"n": n, "wall_s": round(wall, 2), "duplicates": result.stats["duplicates"],
           "clusters": result.stats.get("embedding_clusters"),
           "buckets": result.stats.get("embedding_buckets"), "tasks": result.stats["tasks"],
           "driver_sample_rows": result.stats.get("driver_sample_rows"),
           "steps_s": {k: result.stats[k] for k in ("train_seconds", "assign_seconds",
                                                     "pair_seconds")},
           "driver_peak_rss_mb": round(
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "workers_peak_rss_mb": peak.done()}
    if with_truth:
        truth = {tuple(p) for p in np.load(with_truth).tolist()}
        found = set()
        for uri in result.work_files:
            if "/pairs/" in uri:
                t2 = read_part(uri, ["key_i", "key_j"])
                a = [int(k[1:]) for k in t2.column("key_i").to_pylist()]
                b = [int(k[1:]) for k in t2.column("key_j").to_pylist()]
                found |= {(min(i, j), max(i, j)) for i, j in zip(a, b, strict=True)}
        hit = len(found & truth)
        out.update(brute_pairs=len(truth), found_pairs=len(found),
                   recall=round(hit / max(1, len(truth)), 5),
                   precision=round(hit / max(1, len(found)), 5))
    result.remove_work(parts_too=True)
    ray.shutdown()
    return out


def main_partitioned(a: argparse.Namespace) -> None:
    import shutil
    import tempfile

    rows = []
    base = tempfile.mkdtemp(prefix="bench-dedup-")
    try:
        for n in a.sizes:
            folder = f"{base}/samples-{n}.parquet"
            step = [sys.executable, __file__, "--write", str(n), "--folder", folder,
                    "--part-rows", str(a.part_rows)]
            subprocess.run(step, check=True)
            truth = None
            if n == a.brute:
                truth = f"{base}/truth-{n}.npy"
                subprocess.run([sys.executable, __file__, "--truth", str(n), "--folder", truth],
                               check=True)
            cmd = [sys.executable, __file__, "--run-partitioned", str(n), "--folder", folder,
                   "--task-rows", str(a.task_rows), "--bucket-rows", str(a.bucket_rows)]
            cmd += ["--truth-file", truth] if truth else []
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lo, hi = rows[0], rows[-1]
    if hi["n"] > lo["n"]:
        exp = math.log(hi["wall_s"] / lo["wall_s"]) / math.log(hi["n"] / lo["n"])
        print(f"scaling exponent {lo['n']} -> {hi['n']}: {exp:.2f} (goal <= 1.2; all-pairs 2)")
        print(f"driver peak RSS {lo['driver_peak_rss_mb']} -> {hi['driver_peak_rss_mb']} MB "
              f"for {hi['n'] / lo['n']:.0f}x the rows; the embeddings alone are "
              f"{hi['n'] * DIM * 2 / 2**20:.0f} MB at {hi['n']}")
    for r in rows:
        if "recall" in r:
            print(f"at {r['n']}: recall {r['recall']}, precision {r['precision']} vs all-pairs "
                  f"({r['brute_pairs']} pairs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--brute", type=int, default=100_000, help="size checked against all-pairs")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--with-brute", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--partitioned", action="store_true",
                    help="the partitioned search over a samples-like Parquet dataset")
    ap.add_argument("--part-rows", type=int, default=50_000, help="rows per dataset part")
    ap.add_argument("--task-rows", type=int, default=200_000,
                    help="DedupConfig.task_rows (small enough that 2 CPUs share the work)")
    ap.add_argument("--bucket-rows", type=int, default=250_000, help="DedupConfig.bucket_rows")
    ap.add_argument("--write", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--truth", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run-partitioned", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--truth-file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write:
        write_dataset(a.write, a.folder, a.part_rows)
        return
    if a.truth:
        np.save(a.folder, np.asarray(sorted(brute_truth(a.truth)), np.int64).reshape(-1, 2))
        return
    if a.run_partitioned:
        print(json.dumps(run_partitioned(a.run_partitioned, a.folder, a.truth_file, a.task_rows,
                                         a.bucket_rows)))
        return
    if a.partitioned:
        main_partitioned(a)
        return
    if a.one:
        print(json.dumps(run_one(a.one, a.with_brute)))
        return
    rows = []
    for n in a.sizes:
        cmd = [sys.executable, __file__, "--one", str(n)] + (["--with-brute"] if n == a.brute
                                                             else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    lo, hi = rows[0], rows[-1]
    exp = math.log(hi["wall_s"] / lo["wall_s"]) / math.log(hi["n"] / lo["n"])
    print(f"scaling exponent {lo['n']} -> {hi['n']}: {exp:.2f} (goal <= 1.2; all-pairs 2)")
    for r in rows:
        if "recall" in r:
            print(f"at {r['n']}: recall {r['recall']}, precision {r['precision']} vs all-pairs "
                  f"({r['brute_pairs']} pairs); wall {r['wall_s']} s vs all-pairs "
                  f"{r['brute_wall_s']} s: {r['brute_wall_s'] / r['wall_s']:.1f}x faster")


if __name__ == "__main__":
    main()
