"""The audit's driver at scale: a 1M-sample metadata-only corpus (samples dataset + index, no
shard is read), its aggregates computed by the streaming scan against the previous in-memory way,
and the whole ``longvid audit`` out of core against the audit before it was.

    .venv/bin/python bench/bench_audit_scale.py [--sizes 100000,1000000] [--old-max 1000000]
    .venv/bin/python bench/bench_audit_scale.py --whole [--sizes 200000,1000000]
        [--old-rev 55606a9 --old-max 200000]

``--whole`` runs ``run_audit`` end to end in a subprocess (local Ray, 2 CPUs) on a corpus that
also has an ingest manifest (one row per source video, with a YouTube URL in ``raw``), the
build's probed-videos parts and a rejects table: the streaming scan and table pass, one shard
task per shard of the index (each reads its own rows from the parts; the shards are absent, so
each reports ``missing_shard`` — capped — and reads no shard bytes), accounting, licences,
annotations, leakage against an id list, ``--compare`` against the corpus itself and the
gallery's picks. Duplicates (longvid.dedup, benchmarked on its own in bench_dedup.py) are off by
default; ``--dedup exact`` adds the exact-hash pass (the synthetic rows carry no hash, so it
measures the dedup columns the audit streams into longvid.dedup), ``--dedup all`` the embedding
search too. The peer is the
same command run by the audit as it was at ``--old-rev`` (extracted with ``git archive``), up to
``--old-max`` samples.

The corpus is synthetic and written by the bench in the build's layout: ``index.json`` and a
``samples.parquet/`` dataset folder of per-unit parts (10,000 rows each, with a float16
``embedding`` column the scan does not read). Each measurement runs in a fresh subprocess and
reports its peak RSS (``VmHWM`` of /proc/self/status) and wall:

- ``scan``: what ``longvid audit`` now does on the driver for the table's aggregates —
  ``load_corpus`` (rows left unread) + ``totals`` + ``distributions`` + the duplicate-key check
  + the ``--compare`` key difference against itself, all from :mod:`longvid.audit.scan`;
- ``in-memory`` (the peer): the previous way, every sample row read into a Python dict (as
  ``load_corpus`` did) and the same counts, hours, video sets and histogram inputs added up row by
  row.

Goal (issue 13): driver peak RSS <= 1.5 GB at 1M samples.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from longvid.shards import SAMPLES_SCHEMA, ShardInfo, write_index  # noqa: E402

PART_ROWS = 10_000  # rows per unit part, about what one build unit writes
SHARD_SAMPLES = 1_000  # samples per (fictitious) shard in index.json
EMB_DIM = 64  # embedding width of the synthetic rows (not read by the scan)
GOAL_BYTES = 1.5e9
SOURCES = ("kinetics", "howto100m", "ego4d", "youcook2", "msrvtt")


def _part(start: int, n: int, rng: np.random.Generator) -> pa.Table:
    i = np.arange(start, start + n)
    long = rng.random(n) < 0.3
    dur = np.where(long, rng.uniform(60, 600, n), rng.uniform(5, 60, n))
    size = (dur * 250_000).astype(np.int64)
    members = [[{"ext": "mp4", "offset": 512, "size": int(s)},
                {"ext": "json", "offset": int(s) + 1024, "size": 700}] for s in size.tolist()]
    words = rng.integers(5, 60, n)
    emb = pa.FixedSizeListArray.from_arrays(
        pa.array(rng.standard_normal(n * EMB_DIM).astype(np.float16)), EMB_DIM)
    cols = {
        "key": pa.array([f"{k:09d}" for k in i.tolist()]),
        "shard": pa.array([f"shards/shard-{k // SHARD_SAMPLES:06d}.tar" for k in i.tolist()]),
        "source": pa.array([SOURCES[k % len(SOURCES)] for k in i.tolist()]),
        "video_id": pa.array([f"v{k // 4:08d}" for k in i.tolist()]),
        "record_id": pa.array([f"{SOURCES[k % len(SOURCES)]}:v{k // 4:08d}" for k in i.tolist()]),
        "span_start": pa.array(np.zeros(n)),
        "span_end": pa.array(dur),
        "num_frames": pa.array((dur * 30).astype(np.int64)),
        "extra": pa.array(['{"licence": "cc-by-4.0"}'] * n),
        "bucket": pa.array(np.where(long, "long", "short").tolist()),
        "duration": pa.array(dur),
        "width": pa.array(np.where(rng.random(n) < 0.5, 1280, 640), pa.int32()),
        "height": pa.array(np.where(rng.random(n) < 0.5, 720, 360), pa.int32()),
        "fps": pa.array(np.where(rng.random(n) < 0.8, 30.0, 29.97)),
        "caption": pa.array(["word " * int(w) for w in words.tolist()]),
        "members": pa.array(members, SAMPLES_SCHEMA.field("members").type),
    }
    cols["embedding"] = emb  # what the embed stage writes: float16 vectors
    cols["fingerprint"] = pa.nulls(n, SAMPLES_SCHEMA.field("fingerprint").type)
    return pa.table({f.name: cols[f.name] for f in SAMPLES_SCHEMA})


def make_corpus(root: Path, samples: int, seed: int = 0) -> None:
    """index.json + samples.parquet/ (per-unit parts), as a build writes them; no shard."""
    rng = np.random.default_rng(seed)
    folder = root / "samples.parquet"
    folder.mkdir(parents=True)
    for u, start in enumerate(range(0, samples, PART_ROWS)):
        pq.write_table(_part(start, min(PART_ROWS, samples - start), rng),
                       folder / f"unit-{u:06d}.parquet", compression="zstd")
    shards = [ShardInfo(url=f"shards/shard-{s:06d}.tar", nsamples=SHARD_SAMPLES,
                        filesize=SHARD_SAMPLES * 5_000_000, sha256="0" * 64)
              for s in range((samples + SHARD_SAMPLES - 1) // SHARD_SAMPLES)]
    write_index(str(root), shards, name="bench")


def add_tables(root: Path, samples: int, seed: int = 0) -> Path:
    """An ingest manifest, the probed-videos parts and a rejects table for the corpus of
    :func:`make_corpus` (one record per 4 samples, as its rows have); returns an evaluation id
    list that names a few of its videos."""
    from longvid.schema import REJECTS_SCHEMA
    from longvid.shards import ledger

    rng = np.random.default_rng(seed)
    n_rec = (samples + 3) // 4
    k = np.arange(n_rec) * 4
    rids = [f"{SOURCES[x % len(SOURCES)]}:v{x // 4:08d}" for x in k.tolist()]
    yt = [f"yt{x:09d}" for x in range(n_rec)]  # 11 characters: a YouTube id
    (root / "ingest").mkdir()
    pq.write_table(pa.table({
        "record_id": rids, "source": [r.split(":")[0] for r in rids],
        "video_id": [r.split(":")[1] for r in rids],
        "declared_duration": rng.uniform(60, 3600, n_rec),
        "raw": [f'{{"video_url": "https://www.youtube.com/watch?v={y}"}}' for y in yt],
    }), root / "ingest" / "manifest.parquet", compression="zstd")
    folder = root / ledger.VIDEOS_PARTS
    folder.mkdir()
    for u, start in enumerate(range(0, n_rec, PART_ROWS // 4)):
        stop = min(n_rec, start + PART_ROWS // 4)
        n = stop - start
        pq.write_table(pa.table({
            "record_id": rids[start:stop], "accepted": np.ones(n, bool),
            "samples": np.full(n, 4), "duration": rng.uniform(60, 3600, n),
            "fps": np.full(n, 30.0), "num_frames": np.full(n, 1000),
            "cuts": [[] for _ in range(n)],
            "declared_mismatch": [["duration"] if i % 1000 == 0 else [] for i in range(n)],
        }, schema=ledger.VIDEOS_SCHEMA), folder / f"unit-{u:06d}.parquet")
    rej = [{"source": "kinetics", "record_id": f"kinetics:gone{i:06d}", "locator": "x",
            "stage": "probe", "reason": "unreadable", "detail": "synthetic"} for i in range(200)]
    pq.write_table(pa.Table.from_pylist(rej, REJECTS_SCHEMA), root / "rejects.parquet")
    ids = root.parent / f"{root.name}-eval.txt"
    ids.write_text("".join(f"https://youtu.be/{yt[i]}\n" for i in range(0, n_rec, n_rec // 20))
                   + "no_such_video\n")
    return ids


def _vmhwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_scan(root: str) -> dict:
    from longvid.audit.config import AuditConfig
    from longvid.audit.corpus import load_corpus
    from longvid.audit.report import distributions, table_problems, totals
    from longvid.audit.scan import key_difference

    cfg = AuditConfig()
    corpus = load_corpus(root)
    t = totals(corpus)
    d = distributions(corpus, {}, cfg)
    problems = table_problems(corpus, [], cfg.checks.max_listed, Counter())
    only, _ = key_difference(corpus.scan.keys, corpus.scan.keys, 10)
    return {"samples": t["samples"], "hours": t["hours"], "videos": t["videos"],
            "p50": d["duration"]["percentiles"]["p50"], "problems": len(problems), "only": only}


def child_in_memory(root: str) -> dict:
    names = [n for n in SAMPLES_SCHEMA.names if n not in ("embedding", "fingerprint")]
    rows = pads.dataset(str(Path(root) / "samples.parquet")).to_table(columns=names).to_pylist()
    by_source: dict[str, Counter] = defaultdict(Counter)
    videos: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        c = by_source[str(r.get("source"))]
        c["samples"] += 1
        c["seconds"] += float(r.get("duration") or 0)
        c[f"{r.get('bucket')}_seconds"] += float(r.get("duration") or 0)
        c["member_bytes"] += sum(int(m["size"]) for m in r.get("members") or [])
        videos[str(r.get("source"))].add(str(r.get("record_id")))
    dur = np.asarray([r.get("duration") for r in rows], dtype=np.float64)
    words = [len(str(r["caption"]).split()) for r in rows if r.get("caption")]
    keys = Counter(r["key"] for r in rows)
    return {"samples": len(rows), "hours": round(float(dur.sum()) / 3600, 6),
            "videos": len(set().union(*videos.values())),
            "p50": round(float(np.percentile(dur, 50)), 6), "words": len(words),
            "dups": sum(1 for n in keys.values() if n > 1)}


def child_audit(root: str) -> dict:
    """The whole audit (every section that runs without shard bytes), as ``longvid audit``
    runs it; the same call in the old and the new code."""
    from longvid.audit.config import AuditConfig
    from longvid.config import load_config
    from longvid.pipelines.audit import run_audit

    dedup = os.environ.get("BENCH_DEDUP", "off")
    cfg = load_config(None, AuditConfig, [
        "ray.num_cpus=2", "checks.decode_fraction=0.0", "gallery.per_group=2",
        f"duplicates.exact={'false' if dedup == 'off' else 'true'}",
        f"duplicates.near_cosine={0.95 if dedup == 'all' else 'null'}",
        "duplicates.search.fingerprint_max_bits=null"])
    out = tempfile.mkdtemp(prefix="bench-audit-out-")
    r = run_audit(root, out, cfg, against=f"{root}-eval.txt", compare_with=root).report
    checks = {c["name"]: c for c in r["checks"]}
    return {"samples": r["totals"]["samples"], "hours": r["totals"]["hours"],
            "videos": r["totals"]["videos"], "missing_shards": checks["shards_exist"]["count"],
            "leaked": r["leakage"]["ids"]["samples"],
            "records": r["accounting"]["build"]["totals"]["records"],
            "parts": r["run"]["audit"].get("part_seconds")}


def run_child(mode: str, root: Path, pythonpath: str | None = None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(root)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{mode} at {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,1000000", help="corpus sizes (samples)")
    ap.add_argument("--old-max", type=int, default=1_000_000,
                    help="largest size the in-memory peer is run at")
    ap.add_argument("--whole", action="store_true",
                    help="the whole audit (run_audit) instead of the table aggregates")
    ap.add_argument("--old-rev", default="55606a9",
                    help="git revision of the audit before it was out of core (--whole's peer)")
    ap.add_argument("--dedup", choices=("off", "exact", "all"), default="off",
                    help="--whole: duplicate signals on (off: none; exact: clip hashes; all: "
                    "and the embedding search)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, root = args.child
        t0 = time.perf_counter()
        res = {"scan": child_scan, "audit": child_audit}.get(mode, child_in_memory)(root)
        res.update(wall=time.perf_counter() - t0, peak_rss=_vmhwm())
        print(json.dumps(res))
        return
    if args.whole:
        whole(args)
        return
    print("| samples | path | driver peak RSS | wall | vs goal 1.5 GB | RSS ratio in-memory/scan |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-audit-scale-") as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            root = Path(tmp) / f"c{n}"
            t0 = time.perf_counter()
            make_corpus(root, n)
            print(f"(corpus of {n:,} samples written in {time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr)
            scan = run_child("scan", root)
            old = run_child("old", root) if n <= args.old_max else None
            if old is not None:
                assert old["samples"] == scan["samples"] and old["videos"] == scan["videos"], (
                    old, scan)
                assert abs(old["hours"] - scan["hours"]) < 1e-3, (old, scan)
            ratio = f"{old['peak_rss'] / scan['peak_rss']:.1f}" if old else "—"
            print(f"| {n:,} | streaming scan | {scan['peak_rss'] / 1e6:,.0f} MB | "
                  f"{scan['wall']:.1f} s | {scan['peak_rss'] / GOAL_BYTES:.2f} | {ratio} |")
            if old is not None:
                print(f"| {n:,} | in-memory rows (previous) | {old['peak_rss'] / 1e6:,.0f} MB | "
                      f"{old['wall']:.1f} s | {old['peak_rss'] / GOAL_BYTES:.2f} | |")
            sys.stdout.flush()


def whole(args: argparse.Namespace) -> None:
    """``run_audit`` end to end, new code against the code at ``--old-rev``."""
    os.environ["BENCH_DEDUP"] = args.dedup
    repo = Path(__file__).resolve().parents[1]
    print("| samples | audit | driver peak RSS | wall | vs goal 1.5 GB | RSS ratio old/new |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-audit-whole-") as tmp:
        old_src = Path(tmp) / "old"
        old_src.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.old_rev, "longvid",
                                  "conf"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive, check=True)
        for n in (int(x) for x in args.sizes.split(",")):
            root = Path(tmp) / f"c{n}"
            t0 = time.perf_counter()
            make_corpus(root, n)
            add_tables(root, n)
            print(f"(corpus of {n:,} samples written in {time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr)
            new = run_child("audit", root, str(repo))
            print(f"(new parts: {new['parts']})", file=sys.stderr)
            old = run_child("audit", root, str(old_src)) if n <= args.old_max else None
            if old is not None:
                print(f"(old parts: {old['parts']})", file=sys.stderr)
                for k in ("samples", "videos", "missing_shards", "leaked", "records"):
                    assert old[k] == new[k], (k, old, new)
            ratio = f"{old['peak_rss'] / new['peak_rss']:.1f}" if old else "—"
            print(f"| {n:,} | out of core (this tree), dedup {args.dedup} | {new['peak_rss'] / 1e6:,.0f} MB | "
                  f"{new['wall']:.1f} s | {new['peak_rss'] / GOAL_BYTES:.2f} | {ratio} |")
            if old is not None:
                print(f"| {n:,} | rows on the driver ({args.old_rev}), dedup {args.dedup} | "
                      f"{old['peak_rss'] / 1e6:,.0f} MB | {old['wall']:.1f} s | "
                      f"{old['peak_rss'] / GOAL_BYTES:.2f} | |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
