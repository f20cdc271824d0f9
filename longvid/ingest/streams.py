"""Streaming readers for release files of any size: a top-level JSON dict, JSONL, CSV.

Memory stays flat in the file size: JSON dicts are read entry by entry with ijson (C backend
when available), JSONL and CSV line by line. Every reader works on any URI that
:func:`longvid.storage.open_read` opens (local path, ``s3://``, ``http(s)://``).
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from longvid import storage
from longvid.errors import FormatError

# Dense MiraData captions are long; the csv module's default 128 KiB field limit is too small.
csv.field_size_limit(2**31 - 1)

_CHUNK = 1 << 20


def _tokens(piece: bytes) -> list[tuple[int, int]]:
    """(start, end) of every ``NaN``, ``Infinity`` and ``-Infinity`` in ``piece``, in order.
    ``bytes.find`` runs at memchr speed, several times faster than a regex scan here."""
    hits: list[tuple[int, int]] = []
    for token in (b"NaN", b"Infinity"):
        i = piece.find(token)
        while i != -1:
            start = i - 1 if token == b"Infinity" and i and piece[i - 1] == 45 else i  # '-'
            hits.append((start, i + len(token)))
            i = piece.find(token, i + len(token))
    hits.sort()
    return hits


class NanToNull:
    """A binary reader that rewrites the bare ``NaN``/``Infinity``/``-Infinity`` tokens that
    Python's ``json.dump`` writes (and real HowTo100M caption files contain) into ``null``, so a
    strict JSON parser accepts the stream. Text inside strings is never touched.

    Chunks are cut just after a ``,`` (which can end neither an escape sequence nor a token), so
    string state carries over exactly. Whether a token is inside a string is decided by the
    parity of the unescaped quotes before it, counted with ``bytes.count`` (C speed), so the
    filter runs close to raw read speed. ``replaced`` counts the rewritten tokens.
    """

    def __init__(self, raw: BinaryIO, chunk_size: int = _CHUNK):
        self._raw = raw
        self._chunk = chunk_size
        self._pending = b""  # bytes read but not yet cut at a safe point
        self._out = bytearray()  # filtered bytes not yet returned
        self._in_string = False
        self._eof = False
        self.replaced = 0

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._out) < size):
            self._fill()
        if size < 0 or size >= len(self._out):
            data, self._out = bytes(self._out), bytearray()
        else:
            data = bytes(self._out[:size])
            del self._out[:size]
        return data

    def _fill(self) -> None:
        data = self._raw.read(self._chunk)
        if not data:
            self._eof = True
            piece, self._pending = self._pending, b""
        else:
            buf = self._pending + data
            cut = buf.rfind(b",") + 1
            if cut == 0:  # no safe cut yet: keep reading
                self._pending = buf
                return
            piece, self._pending = buf[:cut], buf[cut:]
        if piece:
            self._out += self._filter(piece)

    def _filter(self, piece: bytes) -> bytes:
        out = bytearray()
        last = 0
        for start, end in _tokens(piece):
            segment = piece[last:start]
            self._track(segment)
            out += segment
            if self._in_string:
                out += piece[start:end]  # e.g. the word "NaN" inside a caption
            else:
                out += b"null"
                self.replaced += 1
            last = end
        tail = piece[last:]
        self._track(tail)
        out += tail
        return bytes(out)

    def _track(self, segment: bytes) -> None:
        """Update the in-string state over ``segment`` by the parity of its unescaped quotes.

        Segments never split an escape sequence: they end at a ``,`` or at a NaN/Infinity
        token and neither can follow a backslash in valid JSON.
        """
        if b"\\" in segment:
            segment = segment.replace(b"\\\\", b"")
        quotes = segment.count(b'"') - segment.count(b'\\"')
        if quotes % 2:
            self._in_string = not self._in_string


def _first_byte(raw: BinaryIO) -> tuple[bytes, bytes]:
    """Read until the first non-whitespace byte; returns (that byte, everything read)."""
    seen = b""
    while True:
        chunk = raw.read(4096)
        if not chunk:
            return b"", seen
        seen += chunk
        stripped = seen.lstrip(b" \t\r\n\xef\xbb\xbf")
        if stripped:
            return stripped[:1], seen


class _Prefixed:
    """A reader that first returns ``head`` and then continues with ``raw``."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)


@contextlib.contextmanager
def json_dict_items(uri: str, what: str) -> Iterator[tuple[Iterator[tuple[str, Any]], NanToNull]]:
    """Stream the entries of a file whose top level is one JSON object: yields ``(iterator of
    (key, value), filter)``; ``filter.replaced`` counts NaN tokens read so far.

    A file whose top level is not an object is a :class:`FormatError` naming the file. Numbers
    come back as float (not Decimal).
    """
    with storage.open_read(uri) as raw:
        first, head = _first_byte(raw)
        if first != b"{":
            found = "an empty file" if not first else f"a file starting with {first!r}"
            raise FormatError(
                f"{uri}: expected {what} (one JSON object keyed by id), found {found}"
            )
        filt = NanToNull(_Prefixed(head, raw))  # type: ignore[arg-type]
        items = ijson.kvitems(filt, "", use_float=True)
        yield _translate_json_errors(items, uri), filt


def _translate_json_errors(items: Iterator[Any], uri: str) -> Iterator[Any]:
    try:
        yield from items
    except ijson.JSONError as exc:
        raise FormatError(f"{uri}: not valid JSON: {exc}") from None


@contextlib.contextmanager
def json_array_items(uri: str, prefix: str) -> Iterator[Iterator[Any]]:
    """Stream the items of the array at ``prefix`` (ijson prefix, e.g. ``videos.item``)."""
    with storage.open_read(uri) as raw:
        first, head = _first_byte(raw)
        if first != b"{":
            found = "an empty file" if not first else f"a file starting with {first!r}"
            raise FormatError(f"{uri}: expected one JSON object, found {found}")
        filt = NanToNull(_Prefixed(head, raw))  # type: ignore[arg-type]
        yield _translate_json_errors(ijson.items(filt, prefix, use_float=True), uri)


def json_top_keys(uri: str) -> list[str]:
    """The keys of a top-level JSON object (scans the file; used to explain format errors)."""
    keys: list[str] = []
    with storage.open_read(uri) as raw:
        try:
            for prefix, event, value in ijson.parse(NanToNull(raw)):
                if prefix == "" and event == "map_key":
                    keys.append(value)
        except ijson.JSONError:
            pass
    return keys


class BadLine:
    """A JSONL line that could not be read as JSON (kept so the caller can reject it)."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail


def jsonl_lines(uri: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value | BadLine)`` for each non-blank line of a JSONL file."""
    with storage.open_read(uri) as raw:
        for number, line in enumerate(raw, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, BadLine("bad_encoding", f"not UTF-8 at byte {exc.start}")
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield (
                    number,
                    BadLine("bad_json", f"not valid JSON: {exc.msg} at column {exc.colno}"),
                )


@contextlib.contextmanager
def csv_rows(uri: str) -> Iterator[tuple[list[str], Iterator[tuple[int, dict[str, str]]]]]:
    """Open a CSV with a header row: yields ``(header, iterator of (line, row dict))``.

    ``line`` is the physical line the record starts on (the header is line 1), so multi-line
    quoted fields keep locators exact. A short row gets ``""`` for missing columns; an empty
    file has an empty header. Undecodable bytes become U+FFFD rather than stopping the job.
    """
    with storage.open_read(uri) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text)
        header = [h.strip() for h in next(reader, [])]

        def rows() -> Iterator[tuple[int, dict[str, str]]]:
            start = reader.line_num + 1
            for values in reader:
                if values:
                    row = dict(zip(header, values, strict=False))
                    for name in header[len(values) :]:
                        row[name] = ""
                    yield start, row
                start = reader.line_num + 1

        try:
            yield header, rows()
        finally:
            text.detach()


def sniff_table(sample: str) -> tuple[str, bool]:
    """Guess the delimiter (``,``, tab, ``;``, ``|``) and whether there is a header row."""
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",\t;|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = "\t" if "\t" in sample else ","
    first = sample.splitlines()[0] if sample else ""
    first_field = first.split(delimiter, 1)[0].strip().strip('"')
    return delimiter, not first_field.isdigit()


def match_files(root: str, patterns: list[str]) -> list[str]:
    """URIs of the files under ``root`` named by ``patterns`` (names or globs relative to root),
    in pattern order, each file once. A pattern without glob characters names one file (which
    must exist); a glob that matches nothing is allowed as long as something matches overall.
    """
    out: list[str] = []
    listing: list[str] | None = None
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?["):
            out.append(storage.join(root, pattern))
            continue
        if not storage.is_remote(root):
            base = Path(root)
            found = sorted(str(p) for p in base.glob(pattern) if p.is_file())
        else:
            if listing is None:
                listing = storage.list_files(root)
            prefix = root.rstrip("/") + "/"
            found = [u for u in listing if fnmatch.fnmatchcase(u[len(prefix) :], pattern)]
        out.extend(found)
    unique = list(dict.fromkeys(out))
    if not unique:
        raise FormatError(f"{root}: no file matches {', '.join(patterns)}")
    return unique


def relative_name(root: str, uri: str) -> str:
    """``uri`` relative to ``root`` (POSIX separators)."""
    if storage.is_remote(root):
        return uri[len(root.rstrip("/")) + 1 :]
    return posixpath.join(*Path(uri).relative_to(root).parts)
