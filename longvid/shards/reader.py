"""Reading shards: one member or one sample by ranged read, or a whole shard as a stream.

Ranged reads use the offsets in ``samples.parquet``. Each read also fetches the 512-byte tar
header in front of the member (the same request, one extra block) and checks that it names
``KEY.EXT`` with the recorded size, so a samples table that does not match its shards fails
with a clear error instead of handing back someone else's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from longvid import storage
from longvid.shards.tarformat import BLOCK, ShardError, parse_header, scan_tar, split_name
from longvid.shards.tarwriter import MemberLocation


def member_locations(row: Any) -> list[MemberLocation]:
    """Member locations of a samples row (dicts from pyarrow, a pandas row, or objects)."""
    out = []
    for m in row["members"]:
        if isinstance(m, MemberLocation):
            out.append(m)
        else:
            out.append(MemberLocation(str(m["ext"]), int(m["offset"]), int(m["size"])))
    return out


def _read_checked(uri: str, key: str, locs: list[MemberLocation]) -> dict[str, bytes]:
    """One ranged read covering ``locs`` (and their headers); check each header; slice."""
    start = min(m.offset for m in locs) - BLOCK
    end = max(m.offset + m.size for m in locs)
    if start < 0:
        raise ShardError(uri, "offset_mismatch", f"member of {key!r} recorded before byte 512")
    data = storage.read_bytes(uri, start, end - start)
    if len(data) < end - start:
        raise ShardError(
            uri,
            "truncated",
            f"sample {key!r} needs bytes [{start}, {end}) but the shard ends at "
            f"{start + len(data)}",
        )
    out = {}
    for m in locs:
        rel = m.offset - start
        header = data[rel - BLOCK : rel]
        try:
            name, size = parse_header(header, uri, m.offset - BLOCK)
        except ShardError:
            raise ShardError(
                uri,
                "offset_mismatch",
                f"no valid tar header in front of {key}.{m.ext} at byte {m.offset}",
            ) from None
        want = f"{key}.{m.ext}"
        if name != want or size != m.size:
            raise ShardError(
                uri,
                "offset_mismatch",
                f"expected {want!r} ({m.size} bytes) at byte {m.offset}, "
                f"the header there says {name!r} ({size} bytes)",
            )
        out[m.ext] = data[rel : rel + m.size]
    return out


def read_member(
    root_uri: str,
    row_or_shard: Mapping[str, Any] | Any | str,
    ext: str,
    *,
    key: str | None = None,
    location: MemberLocation | None = None,
) -> bytes:
    """Bytes of one member, read by range.

    ``row_or_shard`` is a samples row (a dict from ``samples.parquet``, or a pandas row) — the
    shard, key and offsets come from it — or a shard url relative to ``root_uri``, in which case
    ``key`` and ``location`` say what to read.
    """
    if isinstance(row_or_shard, str):
        if key is None or location is None:
            raise ValueError("read_member with a shard url needs key= and location=")
        if location.ext != ext:
            raise ValueError(f"location is for member {location.ext!r}, not {ext!r}")
        shard, locs = row_or_shard, [location]
    else:
        shard, key = row_or_shard["shard"], row_or_shard["key"]
        locs = [m for m in member_locations(row_or_shard) if m.ext == ext]
        if not locs:
            raise KeyError(f"sample {key!r} has no member {ext!r}")
    return _read_checked(storage.join(root_uri, shard), str(key), locs)[locs[0].ext]


def read_sample(root_uri: str, samples_row: Mapping[str, Any] | Any) -> dict[str, bytes]:
    """All members of one sample (``{ext: bytes}``) with a single ranged read."""
    locs = member_locations(samples_row)
    if not locs:
        raise ValueError(f"sample {samples_row['key']!r} has no members")
    uri = storage.join(root_uri, samples_row["shard"])
    return _read_checked(uri, str(samples_row["key"]), locs)


def iter_shard(uri: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream a shard: ``(key, {ext: bytes})`` per sample, in shard order.

    Members are grouped as webdataset does (consecutive names with the same key). A truncated
    shard raises :class:`ShardError` (reason ``truncated``) instead of ending early; a member
    name that repeats inside a sample raises with reason ``duplicate_key``.
    """
    with storage.open_read(uri) as stream:
        key: str | None = None
        members: dict[str, bytes] = {}
        for entry, data in scan_tar(stream, uri):
            parts = split_name(entry.name)
            if parts is None:
                continue  # not a sample member (webdataset skips these too)
            k, ext = parts
            if k != key:
                if key is not None:
                    yield key, members
                key, members = k, {}
            if ext in members:
                raise ShardError(uri, "duplicate_key", f"member {entry.name!r} appears twice")
            assert data is not None
            members[ext] = data
        if key is not None:
            yield key, members
