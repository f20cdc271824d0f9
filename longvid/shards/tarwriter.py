"""Deterministic WebDataset shard writing.

A shard is a POSIX ustar archive. Each sample is a run of consecutive members ``KEY.EXT`` in a
fixed order (``json`` first, then the other extensions sorted; see
:func:`~longvid.shards.tarformat.member_order`). Every header has the same mtime, mode, owner and
group, so the same samples in the same order give byte-identical shards. The archive ends with
the two zero blocks POSIX asks for and nothing else.

Shards are published atomically through :func:`longvid.storage.open_write`: nothing appears
under the final name until :meth:`ShardWriter.close` succeeds, and an exception while writing
leaves no file there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from longvid import storage
from longvid.shards.tarformat import (
    BLOCK,
    END_OF_ARCHIVE,
    encode_header,
    member_name,
    member_order,
    padded,
    validate_key,
)

Members = Mapping[str, bytes | bytearray | memoryview]


@dataclass(frozen=True)
class MemberLocation:
    """Where one member's data lies in its shard (the offset of the data, not of the header)."""

    ext: str
    offset: int
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"ext": self.ext, "offset": self.offset, "size": self.size}


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard. ``url`` is how the index names it: relative to the corpus root when the
    shard was written by :class:`ShardSequenceWriter`, else whatever the caller gave."""

    url: str
    nsamples: int
    filesize: int
    sha256: str
    keys: tuple[str, ...] = field(default=(), repr=False)

    def index_entry(self) -> dict[str, Any]:
        """The entry of this shard in a wids shard index."""
        return {
            "url": self.url,
            "nsamples": self.nsamples,
            "filesize": self.filesize,
            "sha256": self.sha256,
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and Ray-friendly); :meth:`from_dict` reverses it."""
        return {**self.index_entry(), "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardInfo:
        return cls(
            url=str(d["url"]),
            nsamples=int(d["nsamples"]),
            filesize=int(d["filesize"]),
            sha256=str(d["sha256"]),
            keys=tuple(d.get("keys", ())),
        )


def sample_tar_size(key: str, members: Members) -> int:
    """Bytes that :meth:`ShardWriter.add` will write for this sample (headers + padded data)."""
    return sum(BLOCK + padded(len(data)) for data in members.values())


def _check_sample(key: str, members: Members) -> list[tuple[str, str, bytes]]:
    """Validate a sample and return ``(ext, name, data)`` in shard order."""
    validate_key(key)
    if not members:
        raise ValueError(f"sample {key!r} has no members")
    ordered = []
    for ext in member_order(members):
        data = members[ext]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"member {key}.{ext} must be bytes, got {type(data).__name__}")
        # bytes pass through uncopied; other buffers are copied once so the sample cannot change
        # between writing and hashing.
        ordered.append(
            (ext, member_name(key, ext), data if isinstance(data, bytes) else bytes(data))
        )
    return ordered


class ShardWriter:
    """Writes one ``.tar`` shard at ``uri``; see the module docstring for the format.

    Use as a context manager (an exception aborts the shard) or call :meth:`close` /
    :meth:`abort` yourself::

        with ShardWriter("/out/shards/a-00000.tar", url="shards/a-00000.tar") as w:
            w.add("webvid_123_000000000_000010000", {"mp4": clip, "json": meta, "txt": caption})
        info = w.info
    """

    def __init__(self, uri: str, *, url: str | None = None):
        self.uri = uri
        self.url = url if url is not None else uri
        self.info: ShardInfo | None = None
        self._keys: list[str] = []
        self._seen: set[str] = set()
        self._pos = 0
        self._sha = hashlib.sha256()
        self._stack = ExitStack()
        self._file = self._stack.enter_context(storage.open_write(uri))

    @property
    def nbytes(self) -> int:
        """Bytes written so far (the end-of-archive blocks come on close)."""
        return self._pos

    @property
    def nsamples(self) -> int:
        return len(self._keys)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._sha.update(data)
        self._pos += len(data)

    def add(self, key: str, members: Members) -> list[MemberLocation]:
        """Append one sample: ``members`` maps extension (``"mp4"``, ``"emb.npy"``) to bytes.

        Returns the location of each member's data in shard order. Raises ValueError for a key
        with dots/slashes, a duplicate key, a bad extension or a name over 100 bytes — before
        anything of the sample is written.
        """
        if self.info is not None or self._file is None:
            raise ValueError(f"{self.uri}: shard already closed; cannot add {key!r}")
        ordered = _check_sample(key, members)
        if key in self._seen:
            raise ValueError(f"{self.uri}: duplicate sample key {key!r}")
        locations = []
        try:
            for ext, name, data in ordered:
                self._write(encode_header(name, len(data)))
                locations.append(MemberLocation(ext, self._pos, len(data)))
                self._write(data)
                self._write(bytes(padded(len(data)) - len(data)))
        except BaseException as exc:
            self.abort(exc)  # half a sample is in the file: it must never be published
            raise
        self._keys.append(key)
        self._seen.add(key)
        return locations

    def close(self) -> ShardInfo:
        """Finish the archive and publish it under its final name."""
        if self.info is not None:
            return self.info
        if self._file is None:
            raise ValueError(f"{self.uri}: shard was aborted")
        self._write(END_OF_ARCHIVE)
        self._file = None
        self._stack.close()  # completes the atomic write (rename / finished upload)
        self.info = ShardInfo(
            url=self.url,
            nsamples=len(self._keys),
            filesize=self._pos,
            sha256=self._sha.hexdigest(),
            keys=tuple(self._keys),
        )
        return self.info

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the shard: nothing is published under its name."""
        if self._file is None:
            return
        self._file = None
        err = exc or RuntimeError(f"{self.uri}: shard aborted")
        # Passing the exception to the atomic writer makes it discard the temporary object.
        self._stack.__exit__(type(err), err, err.__traceback__)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.abort(exc)
        else:
            self.close()


@dataclass(frozen=True)
class Placement:
    """Where :meth:`ShardSequenceWriter.add` put a sample."""

    key: str
    shard: str  # the shard's url, relative to the root
    members: list[MemberLocation]


class ShardSequenceWriter:
    """Writes a sequence of shards ``ROOT/SUBDIR/PREFIX-NNNNN.tar``, starting a new shard when
    the next sample would push the current one past ``target_bytes`` (or past ``max_samples``).

    A shard is never larger than ``target_bytes`` unless it holds a single sample that is larger
    on its own. Keys must be unique across the whole sequence. :meth:`close` returns the
    :class:`ShardInfo` of every shard, with urls relative to ``root_uri``.
    """

    def __init__(
        self,
        root_uri: str,
        *,
        prefix: str = "shard",
        subdir: str = "shards",
        target_bytes: int = 256 * 1024 * 1024,
        max_samples: int | None = None,
        start_index: int = 0,
    ):
        validate_key(prefix)  # same rules: it becomes part of a file name
        for part in subdir.split("/") if subdir else []:
            validate_key(part)
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        if max_samples is not None and max_samples <= 0:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.root_uri = root_uri
        self.prefix = prefix
        self.subdir = subdir
        self.target_bytes = target_bytes
        self.max_samples = max_samples
        self.shards: list[ShardInfo] = []
        self._next_index = start_index
        self._writer: ShardWriter | None = None
        self._keys: set[str] = set()

    def _shard_url(self, n: int) -> str:
        name = f"{self.prefix}-{n:05d}.tar"
        return f"{self.subdir}/{name}" if self.subdir else name

    def _needs_new_shard(self, sample_bytes: int) -> bool:
        w = self._writer
        if w is None:
            return True
        if w.nsamples == 0:
            return False
        if self.max_samples is not None and w.nsamples >= self.max_samples:
            return True
        return w.nbytes + sample_bytes + len(END_OF_ARCHIVE) > self.target_bytes

    def add(self, key: str, members: Members) -> Placement:
        """Append a sample to the current shard (or a new one) and say where it went."""
        _check_sample(key, members)  # fail before rolling over on a bad sample
        if key in self._keys:
            raise ValueError(f"{self.root_uri}: duplicate sample key {key!r}")
        if self._needs_new_shard(sample_tar_size(key, members)):
            self._finish_current()
            url = self._shard_url(self._next_index)
            self._next_index += 1
            self._writer = ShardWriter(storage.join(self.root_uri, url), url=url)
        assert self._writer is not None
        locations = self._writer.add(key, members)
        self._keys.add(key)
        return Placement(key, self._writer.url, locations)

    def _finish_current(self) -> None:
        if self._writer is not None:
            self.shards.append(self._writer.close())
            self._writer = None

    def close(self) -> list[ShardInfo]:
        """Publish the last shard and return every shard written, in order."""
        self._finish_current()
        return list(self.shards)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the shard in progress (shards already closed stay published)."""
        if self._writer is not None:
            self._writer.abort(exc)
            self._writer = None

    def __enter__(self) -> ShardSequenceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.abort(exc)
        else:
            self.close()
