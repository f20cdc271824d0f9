"""Audit cost against the physical limit and a peer, in the same run.

    .venv/bin/python bench/bench_audit.py [--root BUILT_CORPUS] [--runs 3]

Without ``--root`` a corpus is made first: the small sample corpus, built with the demo config
and the core stages only (no annotation: every clip is hashed by the audit, the costlier case).

Rows (each side the best of ``--runs``, interleaved so that load from other jobs hits both):

1. the integrity pass over every shard (``audit_shard``, no decode: size, SHA-256, headers,
   offsets, KEY.json/KEY.txt against the row, clips hashed where another clip has the same
   size) vs the limit: one sequential read of the same shards with SHA-256 (what any
   verification must do at least);
2. the deep pass (every clip decoded frame by frame as well) vs a bare PyAV decode of the same
   clips (no scaling, no checks) plus that read-and-hash limit;
3. the whole Ray job (``run_audit``, default 10% decode, Ray already running) vs the same work
   done serially in this process: what Ray's scheduling costs or gains on this machine.

Reads come from the page cache (the files were just read), so the numbers measure CPU cost.

``--metadata 100000,1000000``: the driver at scale instead, on synthetic metadata-only corpora
(samples dataset + index, no shard read): peak RSS and wall of the streaming scan against the
previous in-memory rows (``bench/bench_audit_scale.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from longvid.audit.config import AuditConfig  # noqa: E402
from longvid.audit.corpus import load_corpus  # noqa: E402
from longvid.audit.shardcheck import audit_shard  # noqa: E402
from longvid.pipelines.audit import run_audit, shard_work  # noqa: E402
from longvid.shards import iter_shard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def best_of(runs: int, *fns: Callable[[], object]) -> list[float]:
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def make_corpus(work: Path) -> Path:
    src, out = work / "sample", work / "built"
    py = [sys.executable, "-m", "longvid.cli"]
    subprocess.run([*py, "sample-corpus", str(src), "--scale", "small"], check=True,
                   capture_output=True)
    subprocess.run([*py, "build", str(REPO / "conf" / "build" / "demo.yaml"),
                    f"sources_root={src}", f"output.root={out}", "progress=false",
                    "stages=[probe, scan, segment, cut]"], check=True, capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", help="a built corpus (default: build the small sample corpus)")
    ap.add_argument("--runs", type=int, default=3, help="repeats; the best is reported")
    ap.add_argument("--metadata", metavar="SIZES",
                    help="run the metadata-only driver benchmark at these sizes instead")
    args = ap.parse_args()
    if args.metadata:
        subprocess.run([sys.executable, str(REPO / "bench" / "bench_audit_scale.py"),
                        "--sizes", args.metadata], check=True)
        return
    tmp = tempfile.TemporaryDirectory(prefix="bench-audit-")
    root = Path(args.root) if args.root else make_corpus(Path(tmp.name))
    corpus = load_corpus(str(root.resolve()))
    work, opts = shard_work(corpus, AuditConfig())  # what each Ray task of the job gets
    paths = [root / s.url for s in corpus.index.shards]
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    clips = sum(len(rows) for _, rows in work)
    hashed = sum(1 for _, rows in work for r in rows if r["_hash_clip"] and not r["_clip_sha256"])

    def audit_all(fraction: float) -> Callable[[], None]:
        o = {**opts, "decode_fraction": fraction}

        def run() -> None:
            for info, rows in work:
                res = audit_shard(corpus.root, info, rows, o)
                assert not res["problems"], res["problems"][:2]
        return run

    def read_and_hash() -> None:
        for p in paths:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)

    def pyav_decode() -> None:
        read_and_hash()
        for p in paths:
            for _key, members in iter_shard(str(p)):
                with av.open(io.BytesIO(members["mp4"])) as c:
                    stream = c.streams.video[0]
                    stream.codec_context.thread_count = 1
                    for _ in c.decode(stream):
                        pass

    print(f"corpus: {root} — {len(paths)} shards, {total_mb:.1f} MB, {clips} clips "
          f"({hashed} share their size with another clip and are hashed)")
    print("| what | longvid | limit or peer | ratio |")
    print("|---|---|---|---|")
    ours, limit = best_of(args.runs, audit_all(0.0), read_and_hash)
    print(f"| integrity pass, no decode (audit_shard) vs read + SHA-256 of the shards | "
          f"{total_mb / ours:,.0f} MB/s | {total_mb / limit:,.0f} MB/s | {limit / ours:.2f} |")
    ours, peer = best_of(args.runs, audit_all(1.0), pyav_decode)
    print(f"| deep pass, every clip decoded vs bare PyAV decode + read + SHA-256 | "
          f"{clips / ours:,.1f} clips/s | {clips / peer:,.1f} clips/s | {peer / ours:.2f} |")

    import ray

    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    try:
        out = Path(tmp.name) / "report"
        serial = audit_all(AuditConfig().checks.decode_fraction)
        job, alone = best_of(args.runs, lambda: run_audit(str(root), str(out)), serial)
    finally:
        ray.shutdown()
    print(f"| Ray job (`run_audit`, 10% decoded, report written) vs the same shard work serially "
          f"| {job:.2f} s | {alone:.2f} s | {alone / job:.2f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
