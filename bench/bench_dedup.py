"""Near-duplicate search (longvid.dedup) at 100k, 300k and 1M samples against all-pairs.

    .venv/bin/python bench/bench_dedup.py [--sizes 100000 300000 1000000] [--brute 100000]

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
        import faiss

        codes = np.arange(n)
        i, j, _, _ = near_pairs(x, np.zeros(n, np.int64), codes, THRESHOLD, cfg)
        found = set(zip(i.tolist(), j.tolist(), strict=True))
        t = time.perf_counter()
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
        out["brute_wall_s"] = round(time.perf_counter() - t, 2)
        # the clustered search on the same data, pairs only (the brute force gives pairs)
        hit = len(found & truth)
        out.update(brute_pairs=len(truth), found_pairs=len(found),
                   recall=round(hit / max(1, len(truth)), 5),
                   precision=round(hit / max(1, len(found)), 5))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--brute", type=int, default=100_000, help="size checked against all-pairs")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--with-brute", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
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
