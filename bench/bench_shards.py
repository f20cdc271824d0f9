"""Shard layer throughput against its peer (webdataset's own TarWriter / streaming reader) and the
physical limits (raw file write + fsync, raw pread, hashlib over the file), in the same run.

    .venv/bin/python bench/bench_shards.py [--mb 256] [--sample-kb 1024] [--dir /tmp]

Everything runs on local disk and reads come from the page cache (the files were just written),
so the read numbers measure CPU cost, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable

from longvid.shards import ShardSequenceWriter, iter_shard, read_member, verify_shard


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_samples(total_mb: int, sample_kb: int, seed: int = 0):
    rng = random.Random(seed)
    n = max(1, total_mb * 1024 // sample_kb)
    blob = rng.randbytes(sample_kb * 1024 + 4096)
    out = []
    for i in range(n):
        size = sample_kb * 1024 - rng.randint(0, 4096)
        start = rng.randint(0, 4096)
        out.append(
            (
                f"bench_v{i:06d}_000000000_000010000",
                {
                    "json": b'{"source": "bench", "i": %d}' % i,
                    "mp4": blob[start : start + size],
                    "txt": b"a caption of moderate length for the benchmark",
                },
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256, help="total payload to write")
    ap.add_argument("--sample-kb", type=int, default=1024, help="size of each sample's mp4")
    ap.add_argument("--shard-mb", type=int, default=64, help="shard target size")
    ap.add_argument("--reads", type=int, default=2000, help="random ranged member reads")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()

    import webdataset as wds

    samples = make_samples(args.mb, args.sample_kb)
    payload = sum(len(v) for _, m in samples for v in m.values())
    work = tempfile.mkdtemp(prefix="bench-shards-", dir=args.dir)
    ours, peer, raw = (os.path.join(work, d) for d in ("ours", "wds", "raw"))
    for d in (ours, peer, raw):
        os.makedirs(d)
    results: list[tuple[str, float, str]] = []
    try:
        # ---- write: ours vs webdataset.ShardWriter vs raw write+fsync of the same bytes
        infos = []

        def write_ours() -> None:
            with ShardSequenceWriter(ours, target_bytes=args.shard_mb << 20) as w:
                for key, members in samples:
                    w.add(key, members)
            infos.extend(w.shards)

        def write_peer() -> None:
            pattern = os.path.join(peer, "shard-%05d.tar")
            with wds.ShardWriter(pattern, maxsize=args.shard_mb << 20, verbose=0) as w:
                for key, members in samples:
                    w.write({"__key__": key, **members})

        def write_raw() -> None:
            per = max(1, len(samples) // max(1, len(infos)))
            for n in range(0, len(samples), per):
                with open(os.path.join(raw, f"{n}.bin"), "wb") as f:
                    for _, members in samples[n : n + per]:
                        for v in members.values():
                            f.write(v)
                    f.flush()
                    os.fsync(f.fileno())

        def write_raw_hashed() -> None:
            # The writer's real floor: it must also hash every byte for the index's sha256.
            h = hashlib.sha256()
            for _, members in samples:
                for v in members.values():
                    h.update(v)
            write_raw()

        t_ours = timed(write_ours)
        t_peer = timed(write_peer)
        t_raw = timed(write_raw)
        t_raw_h = timed(write_raw_hashed)
        mb = payload / 1e6
        results += [
            ("write: longvid ShardSequenceWriter (fsync + rename)", mb / t_ours, "MB/s"),
            ("write: webdataset ShardWriter (no fsync)", mb / t_peer, "MB/s"),
            ("write: raw file write + fsync, same bytes", mb / t_raw, "MB/s"),
            ("write: raw write + fsync + sha256, same bytes", mb / t_raw_h, "MB/s"),
        ]
        ratios = [
            ("write ours / webdataset", t_peer / t_ours),
            ("write ours / raw limit", t_raw / t_ours),
            ("write ours / raw+sha256 limit", t_raw_h / t_ours),
        ]

        # ---- ranged member reads: read_member vs os.pread of the same range
        root_rows = []
        for info in infos:
            path = os.path.join(ours, info.url)
            with open(path, "rb") as f:
                blob = f.read()
            pos = 0
            for key in info.keys:
                # Recover offsets the way a samples table would hold them: scan once.
                pos = blob.index(f"{key}.mp4".encode(), pos)
                off = pos + 512
                size = int(blob[pos + 124 : pos + 135], 8)
                root_rows.append(
                    {
                        "key": key,
                        "shard": info.url,
                        "members": [{"ext": "mp4", "offset": off, "size": size}],
                    }
                )
        rng = random.Random(1)
        picks = [rng.choice(root_rows) for _ in range(args.reads)]

        def read_ours() -> None:
            for row in picks:
                read_member(ours, row, "mp4")

        fds = {i.url: os.open(os.path.join(ours, i.url), os.O_RDONLY) for i in infos}

        def read_raw() -> None:
            for row in picks:
                m = row["members"][0]
                os.pread(fds[row["shard"]], m["size"], m["offset"])

        t_rm, t_rr = timed(read_ours), timed(read_raw)
        for fd in fds.values():
            os.close(fd)
        results += [
            ("ranged read: read_member (header check)", args.reads / t_rm, "reads/s"),
            ("ranged read: os.pread of the same range", args.reads / t_rr, "reads/s"),
        ]
        ratios.append(("ranged read ours / pread", t_rr / t_rm))

        # ---- streaming: iter_shard vs webdataset's tar iterator; verify vs sha256 of the file
        shard_paths = [os.path.join(ours, i.url) for i in infos]
        total_bytes = sum(i.filesize for i in infos)

        def stream_ours() -> None:
            for p in shard_paths:
                for _ in iter_shard(p):
                    pass

        def stream_peer() -> None:
            for _ in wds.WebDataset(shard_paths, shardshuffle=False):
                pass

        def verify_all() -> None:
            for info in infos:
                assert verify_shard(ours, info) == []

        def sha_limit() -> None:
            for p in shard_paths:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)

        t_so, t_sp, t_v, t_h = (timed(f) for f in (stream_ours, stream_peer, verify_all, sha_limit))
        gb = total_bytes / 1e6
        results += [
            ("stream: iter_shard", gb / t_so, "MB/s"),
            ("stream: webdataset.WebDataset", gb / t_sp, "MB/s"),
            ("verify_shard (size, sha256, headers)", gb / t_v, "MB/s"),
            ("sha256 of the files alone", gb / t_h, "MB/s"),
        ]
        ratios += [
            ("stream ours / webdataset", t_sp / t_so),
            ("verify / sha256 limit", t_h / t_v),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = io.StringIO()
    print(
        f"{len(samples)} samples, {payload / 1e6:.0f} MB payload, {len(infos)} shards of "
        f"<= {args.shard_mb} MB",
        file=out,
    )
    for name, value, unit in results:
        print(f"  {name:<52} {value:10.1f} {unit}", file=out)
    for name, ratio in ratios:
        print(f"  ratio {name:<46} {ratio:10.2f}", file=out)
    print(out.getvalue(), end="")


if __name__ == "__main__":
    main()
