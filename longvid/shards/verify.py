"""Verification: does a shard hold exactly what the index and ``samples.parquet`` say?

One streaming pass over each shard checks its size and SHA-256, parses every tar header, and
compares the position of every member with the offsets recorded for it. Problems come back as
data (shard, key, reason, message) rather than exceptions, so an audit can list them all.

Reasons:
    missing_shard       the shard object does not exist
    size_mismatch       its size differs from the index
    checksum_mismatch   its SHA-256 differs from the index
    truncated           the tar ends inside a member or without the end-of-archive blocks
    bad_header          a tar header does not parse (checksum or number fields)
    missing_member      a member recorded in samples.parquet is not in the shard
    offset_mismatch     a member is there, but not at its recorded offset/size
    duplicate_key       a key appears in two places, or a member name twice
    nsamples_mismatch   the number of samples differs from the index
    unexpected_key      the shard holds a sample that samples.parquet does not list
    not_in_index        samples.parquet names a shard that the index does not list
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from longvid import storage
from longvid.shards.index import INDEX_NAME, read_index
from longvid.shards.manifest import SAMPLES_NAME, read_table, rows_by_shard
from longvid.shards.reader import member_locations
from longvid.shards.tarformat import ShardError, TarEntry, padded, scan_tar, split_name
from longvid.shards.tarwriter import ShardInfo


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a shard. ``key`` is None for problems of the whole shard."""

    shard: str
    key: str | None
    reason: str
    message: str


class _HashingReader:
    """Passes reads through while hashing and counting every byte."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.nbytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.nbytes += len(data)
        return data

    def drain(self, chunk: int = 1 << 20) -> None:
        while self.read(chunk):
            pass


def _as_info(info: ShardInfo | Mapping[str, Any]) -> ShardInfo:
    return info if isinstance(info, ShardInfo) else ShardInfo.from_dict(info)


def _scan(uri: str) -> tuple[list[TarEntry], ShardError | None, int, str]:
    """Entries of a shard, the parse error that stopped the scan (if any), byte count, SHA-256."""
    entries: list[TarEntry] = []
    error: ShardError | None = None
    with storage.open_read(uri) as raw:
        stream = _HashingReader(raw)
        try:
            for entry, _ in scan_tar(stream, uri, with_data=False):
                entries.append(entry)
        except ShardError as exc:
            error = exc
        stream.drain()  # bytes after the end-of-archive blocks still count for size and hash
    return entries, error, stream.nbytes, stream.sha.hexdigest()


def _duplicates(url: str, entries: list[TarEntry]) -> tuple[list[Problem], list[str]]:
    """Duplicate names / keys, and the keys of the shard in order (grouped as readers do)."""
    problems = []
    names: set[str] = set()
    keys: list[str] = []
    for e in entries:
        parts = split_name(e.name)
        if parts is None:
            continue
        key = parts[0]
        if e.name in names:
            problems.append(
                Problem(url, key, "duplicate_key", f"{url}: member {e.name!r} appears twice")
            )
        names.add(e.name)
        if not keys or keys[-1] != key:
            if key in keys:
                problems.append(
                    Problem(
                        url,
                        key,
                        "duplicate_key",
                        f"{url}: key {key!r} appears again at byte {e.header_offset}, "
                        "after other samples",
                    )
                )
            keys.append(key)
    return problems, keys


def verify_shard(
    root_uri: str,
    info: ShardInfo | Mapping[str, Any],
    expected_rows: Iterable[Mapping[str, Any]] | None = None,
) -> list[Problem]:
    """Check one shard (``info.url`` relative to ``root_uri``) against its index entry and,
    when given, its rows of ``samples.parquet`` (each with ``key`` and ``members``).

    An empty list means the shard is exactly what the records say.
    """
    info = _as_info(info)
    url = info.url
    uri = storage.join(root_uri, url)
    if not storage.exists(uri):
        return [Problem(url, None, "missing_shard", f"{uri}: shard does not exist")]
    entries, error, nbytes, sha = _scan(uri)
    problems: list[Problem] = []
    if info.filesize and nbytes != info.filesize:
        problems.append(
            Problem(
                url, None, "size_mismatch", f"{uri}: {nbytes} bytes, index says {info.filesize}"
            )
        )
    if info.sha256 and sha != info.sha256:
        problems.append(
            Problem(
                url, None, "checksum_mismatch", f"{uri}: sha256 {sha}, index says {info.sha256}"
            )
        )
    if error is not None:
        problems.append(Problem(url, None, error.reason, str(error)))
    dup_problems, keys = _duplicates(url, entries)
    problems.extend(dup_problems)
    if error is None and len(set(keys)) != info.nsamples:
        problems.append(
            Problem(
                url,
                None,
                "nsamples_mismatch",
                f"{uri}: {len(set(keys))} samples, index says {info.nsamples}",
            )
        )
    if expected_rows is not None:
        problems.extend(_compare_rows(uri, url, entries, error, keys, expected_rows))
    return problems


def _compare_rows(
    uri: str,
    url: str,
    entries: list[TarEntry],
    error: ShardError | None,
    keys: list[str],
    rows: Iterable[Mapping[str, Any]],
) -> list[Problem]:
    problems = []
    by_name = {e.name: e for e in entries}
    # With a truncated shard, members past the last complete one are covered by "truncated".
    parsed_to = max((e.offset + padded(e.size) for e in entries), default=0)
    listed: set[str] = set()
    for row in rows:
        key = str(row["key"])
        listed.add(key)
        for m in member_locations(row):
            name = f"{key}.{m.ext}"
            e = by_name.get(name)
            if e is None:
                if error is None or m.offset < parsed_to:
                    problems.append(
                        Problem(url, key, "missing_member", f"{uri}: {name!r} is not in the shard")
                    )
            elif (e.offset, e.size) != (m.offset, m.size):
                problems.append(
                    Problem(
                        url,
                        key,
                        "offset_mismatch",
                        f"{uri}: {name!r} is at byte {e.offset} ({e.size} bytes), "
                        f"recorded at {m.offset} ({m.size} bytes)",
                    )
                )
    if error is None:
        for key in dict.fromkeys(keys):
            if key not in listed:
                problems.append(
                    Problem(url, key, "unexpected_key", f"{uri}: sample {key!r} is not listed")
                )
    return problems


def verify_corpus(
    root_uri: str, *, index_name: str = INDEX_NAME, samples_name: str = SAMPLES_NAME
) -> list[Problem]:
    """Verify every shard of a built corpus against ``index.json`` and ``samples.parquet``."""
    index = read_index(root_uri, filename=index_name)
    table = read_table(storage.join(root_uri, samples_name), columns=["key", "shard", "members"])
    rows = rows_by_shard(table)
    problems: list[Problem] = []
    for info in index.shards:
        problems.extend(verify_shard(root_uri, info, rows.pop(info.url, [])))
    for shard, orphans in rows.items():
        for row in orphans:
            problems.append(
                Problem(
                    shard,
                    row["key"],
                    "not_in_index",
                    f"{index.uri}: samples.parquet places {row['key']!r} in {shard!r}, "
                    "which the index does not list",
                )
            )
    return problems
