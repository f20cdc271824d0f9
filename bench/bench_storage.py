"""Storage layer cost against its peers, in the same run: ``longvid.storage`` on S3 (a real
``rclone serve s3`` on loopback) against plain boto3 calls with the same client settings, and on
local disk against raw ``os.pread`` / ``write`` + ``fsync``.

    .venv/bin/python bench/bench_storage.py [--mb 64] [--reads 300] [--read-kb 1024]

Loopback S3 has no network limit, so the S3 rows measure the client stack and the server's CPU
cost; the ratio (longvid / peer) is the cost of the wrapper (error translation, atomic publish,
length checks). Local reads come from the page cache.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures.s3

from longvid import storage  # noqa: E402
from longvid.config import S3Config  # noqa: E402
from tests.fixtures.s3 import (  # noqa: E402
    ACCESS_KEY,
    BUCKET,
    SECRET_KEY,
    start_rclone_s3,
)


def best_of(
    runs: int, ours: Callable[[], object], peer: Callable[[], object]
) -> tuple[float, float]:
    """Fastest wall times of ``runs`` calls of each, interleaved so that load from other jobs on
    the shared machine hits both sides alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, out in ((ours, times[0]), (peer, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(times[0]), min(times[1])


def row(what: str, ours: float, peer: float, unit: str) -> None:
    print(f"| {what} | {ours:,.1f} {unit} | {peer:,.1f} {unit} | {ours / peer:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=64, help="object size for uploads/downloads")
    ap.add_argument("--reads", type=int, default=300, help="random ranged reads per measurement")
    ap.add_argument("--read-kb", type=int, default=1024, help="size of each ranged read")
    ap.add_argument("--runs", type=int, default=5, help="repeats; the best is reported")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    root = work / "s3"
    (root / BUCKET).mkdir(parents=True)
    proc, endpoint = start_rclone_s3(root, work / "rclone.log")
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    storage.configure(S3Config(endpoint_url=endpoint, region="us-east-1"))
    try:
        run(args, work)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    from boto3.s3.transfer import TransferConfig

    client = storage.s3_client()  # the same botocore client settings on both sides
    tcfg = TransferConfig(
        multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4
    )
    size = args.mb << 20
    data = random.Random(0).randbytes(size)
    src = work / "src.bin"
    src.write_bytes(data)
    mb = size / 1e6
    uri, key = f"s3://{BUCKET}/bench/obj.bin", "bench/obj.bin"
    runs = args.runs
    print(f"object {args.mb} MiB, {args.reads} random reads of {args.read_kb} KiB, best of {runs}")
    print("| what | longvid | peer | ratio |\n|---|---|---|---|")

    t_ours, t_peer = best_of(
        runs,
        lambda: storage.upload_file(src, uri),
        lambda: client.upload_file(str(src), BUCKET, "bench/peer.bin", Config=tcfg),
    )
    row(
        "S3 multipart upload: `upload_file` vs boto3 `upload_file`",
        mb / t_ours,
        mb / t_peer,
        "MB/s",
    )

    dest, peer_dest = work / "dl.bin", str(work / "peer.bin")
    t_ours, t_peer = best_of(
        runs,
        lambda: storage.download_file(uri, dest),
        lambda: client.download_file(BUCKET, key, peer_dest, Config=tcfg),
    )
    assert dest.read_bytes() == data
    row(
        "S3 download: `download_file` (HEAD, atomic, fsync) vs boto3 `download_file`",
        mb / t_ours,
        mb / t_peer,
        "MB/s",
    )

    def copy_once() -> None:
        with storage.local_copy(uri):
            pass

    t_ours, t_peer = best_of(
        runs, copy_once, lambda: client.download_file(BUCKET, key, peer_dest, Config=tcfg)
    )
    row(
        "S3 `local_copy` (temp download) vs boto3 `download_file`", mb / t_ours, mb / t_peer, "MB/s"
    )

    n = args.read_kb << 10
    rng = random.Random(1)
    offsets = [rng.randrange(0, size - n) for _ in range(args.reads)]
    assert storage.read_bytes(uri, offsets[0], n) == data[offsets[0] : offsets[0] + n]

    def ours_reads() -> None:
        for off in offsets:
            storage.read_bytes(uri, off, n)

    def peer_reads() -> None:
        for off in offsets:
            rng_header = f"bytes={off}-{off + n - 1}"
            client.get_object(Bucket=BUCKET, Key=key, Range=rng_header)["Body"].read()

    t_ours, t_peer = best_of(runs, ours_reads, peer_reads)
    reads = args.reads
    row(
        "S3 ranged read: `read_bytes` vs boto3 `get_object(Range=)`",
        reads / t_ours,
        reads / t_peer,
        "reads/s",
    )

    local = str(work / "local.bin")
    storage.write_bytes(local, data)
    fd = os.open(local, os.O_RDONLY)
    try:
        t_ours, t_peer = best_of(
            runs,
            lambda: [storage.read_bytes(local, o, n) for o in offsets],
            lambda: [os.pread(fd, n, o) for o in offsets],
        )
    finally:
        os.close(fd)
    row(
        "local ranged read: `read_bytes` (open per call) vs `os.pread` on an open fd",
        reads / t_ours,
        reads / t_peer,
        "reads/s",
    )

    def raw_write() -> None:
        with open(work / "raw.bin", "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    t_ours, t_peer = best_of(runs, lambda: storage.write_bytes(local, data), raw_write)
    row(
        "local write: `write_bytes` (temp + fsync + rename + dir fsync) vs `write` + `fsync`",
        mb / t_ours,
        mb / t_peer,
        "MB/s",
    )


if __name__ == "__main__":
    main()
