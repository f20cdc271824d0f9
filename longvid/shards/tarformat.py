"""The tar format as the shards use it: deterministic ustar headers, name rules, and a strict
streaming parser that reports where each member's data starts.

Why a parser of our own rather than :mod:`tarfile`: ``tarfile`` silently accepts an archive that
stops at a member boundary or that lacks the end-of-archive blocks, and a truncated shard must
fail loudly. The parser also gives the byte offset of every member's data, which verification
compares with the offsets recorded in ``samples.parquet``.

Names follow the WebDataset convention ``KEY.EXT``: the key has no dots and no slashes (readers
split the member name at the first dot), the extension is lower case (webdataset lower-cases
it), and the whole name fits the 100-byte ustar name field, because ``wids`` reads only that
field (it ignores pax and GNU long-name records).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from longvid.errors import LongvidError

BLOCK = 512
# Fixed header fields so that the same samples always give byte-identical shards.
TAR_MTIME = 0
TAR_MODE = 0o644
TAR_UID = 0
TAR_GID = 0
TAR_UNAME = ""
TAR_GNAME = ""
# The ustar name field; wids reads nothing else, so longer names would be cut there.
MAX_NAME_BYTES = 100
END_OF_ARCHIVE = bytes(2 * BLOCK)

# Key: starts with a letter or digit (webdataset skips "__meta__" names, and a leading "-" reads
# as an option to command-line tools), then letters, digits, "_" and "-".
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Extension: lower-case dotted words, e.g. "mp4", "json", "emb.npy".
_EXT_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")


class ShardError(LongvidError):
    """A shard (or a byte range of it) is not what its records say.

    ``reason`` is the same short tag that :mod:`longvid.shards.verify` reports (``truncated``,
    ``bad_header``, ``offset_mismatch``, ...); the message names the shard and what was wrong.
    """

    def __init__(self, uri: str, reason: str, detail: str = ""):
        self.uri = uri
        self.reason = reason
        self.detail = detail
        super().__init__(f"{uri}: {reason}" + (f": {detail}" if detail else ""))


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid sample key, else raise ValueError naming it."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(
            f"invalid sample key {key!r}: keys use letters, digits, '_' and '-' only (no dots, "
            "no slashes) and start with a letter or digit"
        )
    return key


def validate_ext(key: str, ext: str) -> str:
    """Return ``ext`` if it is a valid member extension, else raise ValueError naming it."""
    if not isinstance(ext, str) or not _EXT_RE.fullmatch(ext):
        raise ValueError(
            f"invalid member extension {ext!r} for key {key!r}: use lower-case letters, digits "
            "and '_', with dots only between words (e.g. 'mp4', 'emb.npy')"
        )
    return ext


def member_name(key: str, ext: str) -> str:
    """``KEY.EXT``, checked against the name rules and the 100-byte ustar limit."""
    name = f"{validate_key(key)}.{validate_ext(key, ext)}"
    if len(name.encode("ascii")) > MAX_NAME_BYTES:
        raise ValueError(
            f"member name {name!r} is {len(name)} bytes; the tar name field holds "
            f"{MAX_NAME_BYTES} (wids reads only that field): shorten key {key!r}"
        )
    return name


def split_name(name: str) -> tuple[str, str] | None:
    """``"dir/KEY.a.b"`` → ``("dir/KEY", "a.b")``: split at the first dot of the last path part,
    as webdataset does. None when that part has no dot."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{head}/{stem}" if head else stem), ext


def member_order(exts: Iterable[str]) -> list[str]:
    """The fixed order of a sample's members in a shard: ``json`` first (a streaming reader sees
    the metadata before the large members), then every other extension in sorted order."""
    exts = list(exts)
    return (["json"] if "json" in exts else []) + sorted(e for e in exts if e != "json")


def padded(size: int) -> int:
    """Bytes a member of ``size`` bytes occupies after its header (data rounded up to blocks)."""
    return (size + BLOCK - 1) // BLOCK * BLOCK


def encode_header(name: str, size: int) -> bytes:
    """A 512-byte POSIX ustar header for a regular file with the fixed mtime/mode/owner."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = TAR_MTIME
    info.mode = TAR_MODE
    info.uid, info.gid = TAR_UID, TAR_GID
    info.uname, info.gname = TAR_UNAME, TAR_GNAME
    info.type = tarfile.REGTYPE
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="ascii", errors="strict")
    assert len(header) == BLOCK, "a short name must give exactly one header block"
    return header


def parse_header(header: bytes, uri: str, at: int) -> tuple[str, int]:
    """``(name, size)`` of a ustar header at byte ``at`` of ``uri``; ShardError (``bad_header``)
    when its checksum is wrong."""
    if len(header) != BLOCK or not _header_checksum_ok(header):
        raise ShardError(uri, "bad_header", f"header checksum mismatch at byte {at}")
    name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            name = f"{prefix}/{name}"
    return name, _octal(header[124:136], "size", uri, at)


@dataclass(frozen=True)
class TarEntry:
    """One regular file in a tar: its name, where its header starts and where its data lies."""

    name: str
    header_offset: int
    offset: int  # first byte of the data
    size: int


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read ``n`` bytes, looping over short reads (network bodies return what they have)."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _octal(field: bytes, what: str, uri: str, at: int) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for values that overflow the octal field
        value = int.from_bytes(field[1:], "big")
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ShardError(uri, "bad_header", f"{what} field {field!r} at byte {at}") from None


def _header_checksum_ok(header: bytes) -> bool:
    stored = header[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        want = int(stored, 8)
    except ValueError:
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return want == unsigned


def _pax_path(data: bytes, uri: str, at: int) -> str | None:
    """The ``path`` record of a pax extended header, if any."""
    pos = 0
    path = None
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ShardError(uri, "bad_header", f"malformed pax record at byte {at}") from None
        if length <= 0:
            raise ShardError(uri, "bad_header", f"malformed pax record at byte {at}")
        record = data[space + 1 : pos + length - 1]
        keyword, _, value = record.partition(b"=")
        if keyword == b"path":
            path = value.decode("utf-8")
        pos += length
    return path


def scan_tar(
    stream: BinaryIO, uri: str, *, with_data: bool = True, chunk: int = 1 << 20
) -> Iterator[tuple[TarEntry, bytes | None]]:
    """Yield ``(entry, data)`` for every regular file in a tar stream, in order.

    Raises :class:`ShardError` with reason ``truncated`` when the stream ends before a header,
    inside a member, or before the end-of-archive blocks, and ``bad_header`` when a header's
    checksum or numbers do not parse. ``with_data=False`` skips the data (``data`` is None) in
    ``chunk``-sized reads, still pulling every byte through ``stream`` (so a hashing stream sees
    them all).
    """
    pos = 0
    long_name: str | None = None
    while True:
        header = read_exact(stream, BLOCK)
        if len(header) < BLOCK:
            raise ShardError(
                uri,
                "truncated",
                f"ends at byte {pos + len(header)} without the end-of-archive blocks",
            )
        if header == bytes(BLOCK):
            second = read_exact(stream, BLOCK)
            if len(second) < BLOCK:
                raise ShardError(
                    uri, "truncated", f"end-of-archive marker at byte {pos} is incomplete"
                )
            if second != bytes(BLOCK):
                raise ShardError(
                    uri, "bad_header", f"a zero block at byte {pos} is followed by data"
                )
            return
        name, size = parse_header(header, uri, pos)
        typeflag = header[156:157]
        data_offset = pos + BLOCK
        regular = typeflag in (b"0", b"\0")
        # pax / GNU long-name records carry the next member's name in their data.
        meta = typeflag in (b"x", b"L")
        if (regular and with_data) or meta:
            data = read_exact(stream, size)
            if len(data) < size:
                raise ShardError(
                    uri,
                    "truncated",
                    f"member {name!r} at byte {data_offset} wants {size} bytes, "
                    f"the shard ends after {len(data)}",
                )
            tail = read_exact(stream, padded(size) - size)
            if len(tail) < padded(size) - size:
                raise ShardError(uri, "truncated", f"padding of member {name!r} is cut short")
        else:
            data = None
            left = padded(size)
            while left > 0:
                got = len(read_exact(stream, min(chunk, left)))
                if got == 0:
                    raise ShardError(
                        uri,
                        "truncated",
                        f"member {name!r} at byte {data_offset} wants {size} bytes, "
                        f"the shard ends after {padded(size) - left}",
                    )
                left -= got
        pos = data_offset + padded(size)
        if meta:
            assert data is not None
            if typeflag == b"x":
                long_name = _pax_path(data, uri, data_offset)
            else:
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if regular:
            if long_name:
                name = long_name
            yield TarEntry(name, data_offset - BLOCK, data_offset, size), data
        long_name = None
