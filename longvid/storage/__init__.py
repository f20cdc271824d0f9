"""One URI layer for every read and write: local paths, ``s3://bucket/key`` and ``http(s)://``.

- Local paths (plain or ``file://``): writes go to a dot-prefixed temp file in the target's
  folder, are fsynced and then ``os.replace``d into place, so a reader sees the old file or the
  whole new one, never a part. Parent folders are created. ``list_files`` skips dot-prefixed
  names, and so temp files.
- ``s3://``: boto3 with adaptive retries and timeouts; uploads above ``multipart_threshold_mb``
  are multipart. An S3 object appears only when its upload completes, so a failed or aborted
  upload publishes nothing. Settings come from :func:`configure` (an ``S3Config``) and the
  environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_PROFILE``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``); credentials only ever come from the
  environment or a profile.
- ``http(s)://``: read-only (HEAD for exists/size, ``Range`` GETs), with timeouts and retries.

Errors are typed: ``NotFoundError`` ("<uri>: not found"), ``AccessDeniedError`` (credentials
refused; the message never carries a secret), anything else ``StorageError`` naming the URI and
the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from longvid.config import S3Config
from longvid.errors import NotFoundError, StorageError
from longvid.storage import http as _http
from longvid.storage import local as _local
from longvid.storage import s3 as _s3
from longvid.storage.streams import COPY_CHUNK

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def configure(
    s3: S3Config | None,
    *,
    http_timeout_s: float | None = None,
    http_attempts: int | None = None,
) -> None:
    """Set the process-wide S3 settings (None = defaults + environment).

    Cheap and idempotent, so every Ray task can call it with the job's config. S3 clients are
    cached per (process, settings, credentials in the environment) and shared by threads.
    ``http_timeout_s`` (socket timeout, default 60) and ``http_attempts`` (tries per request,
    default 4) tune the HTTP(S) reader.
    """
    _s3.set_config(s3)
    _http.set_options(http_timeout_s, http_attempts)


def current_s3_config() -> S3Config:
    """The S3Config in effect in this process (to hand on to Ray tasks)."""
    return _s3.get_config()


def s3_client() -> Any:
    """The shared boto3 S3 client for the current settings (for code that needs raw S3)."""
    return _s3.client()


# --- URIs ---------------------------------------------------------------------------------------


def _scheme(uri: str) -> str:
    """``s3``, ``http``, ``https`` or ``file`` (plain paths are ``file``)."""
    m = _SCHEME_RE.match(uri)
    if not m:
        return "file"
    scheme = m.group(1).lower()
    if scheme not in ("s3", "http", "https", "file"):
        raise StorageError(
            f"{uri}: unsupported URI scheme {scheme!r} (use a path, s3:// or http(s)://)"
        )
    return scheme


def is_remote(uri: str) -> bool:
    """True for ``s3://`` and ``http(s)://`` URIs, False for local paths and ``file://``."""
    return _scheme(uri) in ("s3", "http", "https")


def _is_http(scheme: str) -> bool:
    return scheme in ("http", "https")


def join(base: str, *parts: str) -> str:
    """Join relative ``parts`` onto a local path, ``s3://bucket/prefix`` or ``http(s)://`` URL.

    Parts may contain ``/``; empty parts are skipped. A part that is absolute, is a URI, or has a
    ``..`` segment raises StorageError, so an id taken from metadata can never point outside
    ``base``.
    """
    for part in parts:
        segments = part.replace("\\", "/").split("/")
        if part.startswith(("/", "\\")) or ".." in segments or _SCHEME_RE.match(part):
            raise StorageError(f"join({base!r}, {part!r}): the part would leave the base")
    parts = tuple(p for p in parts if p)
    if not parts:
        return base
    if not _SCHEME_RE.match(base):
        return os.path.join(base, *parts)
    return base.rstrip("/") + "/" + "/".join(parts)


# --- reads --------------------------------------------------------------------------------------


def exists(uri: str) -> bool:
    """Whether the local file or folder / S3 object / HTTP resource exists."""
    scheme = _scheme(uri)
    if scheme == "s3":
        return _s3.exists(uri)
    if _is_http(scheme):
        return _http.exists(uri)
    with _local.local_errors(uri):
        return _local.local_path(uri).exists()


def size(uri: str) -> int:
    """Size in bytes; NotFoundError when missing."""
    scheme = _scheme(uri)
    if scheme == "s3":
        return int(_s3.head(uri)["ContentLength"])
    if _is_http(scheme):
        return _http.size(uri)
    path = _local.local_path(uri)
    with _local.local_errors(uri):
        if path.is_dir():
            raise IsADirectoryError(path)
        return path.stat().st_size


def open_read(uri: str) -> BinaryIO:
    """A streaming binary reader; close it (``with``). Remote readers do not seek: use
    :func:`open_seekable` or :func:`local_copy` for containers that need seeking. A cut
    connection or truncated body raises StorageError instead of ending early."""
    scheme = _scheme(uri)
    if scheme == "s3":
        return io.BufferedReader(_s3.get_body(uri), COPY_CHUNK)  # type: ignore[return-value]
    if _is_http(scheme):
        return io.BufferedReader(_http.open_body(uri), COPY_CHUNK)  # type: ignore[return-value]
    with _local.local_errors(uri):
        return open(_local.local_path(uri), "rb")  # returned to the caller, who closes it


def read_bytes(uri: str, start: int | None = None, length: int | None = None) -> bytes:
    """Bytes ``[start, start + length)`` (the whole object by default), by one ranged read.

    As with ``file.read``, the result is shorter than ``length`` only when the object ends first
    (empty when ``start`` is at or past the end); a caller that needs exactly ``length`` bytes
    compares ``len()``.
    """
    if start is not None and start < 0:
        raise StorageError(f"{uri}: read_bytes start must be >= 0 (got {start})")
    if length is not None and length < 0:
        raise StorageError(f"{uri}: read_bytes length must be >= 0 (got {length})")
    if length == 0:
        size(uri)  # still a typed error when missing
        return b""
    scheme = _scheme(uri)
    if scheme == "s3":
        return _s3.read_range(uri, start, length)
    if _is_http(scheme):
        return _http.read_range(uri, start, length)
    with _local.local_errors(uri), open(_local.local_path(uri), "rb") as fh:
        if start:
            fh.seek(start)
        return fh.read() if length is None else fh.read(length)


def read_text(uri: str, encoding: str = "utf-8") -> str:
    """The whole object decoded as text; a decode error is a StorageError naming the URI."""
    data = read_bytes(uri)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise StorageError(
            f"{uri}: not valid {encoding} text ({exc.reason} at byte {exc.start})"
        ) from None


class _RangedReader(io.RawIOBase):
    """A seekable reader of a remote object: each ``readinto`` is one ranged GET."""

    def __init__(self, uri: str, total: int):
        self._uri = uri
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self._uri}: negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        data = read_bytes(self._uri, self._pos, want)
        if len(data) != want:
            raise StorageError(
                f"{self._uri}: short read at byte {self._pos}: wanted {want}, got {len(data)} "
                "(the object changed or was truncated)"
            )
        view[:want] = data
        self._pos += want
        return want


def open_seekable(uri: str, block_size: int = 1 << 20) -> BinaryIO:
    """A seekable binary reader for any URI, for containers that seek (an MP4 whose index is at
    the end, read by PyAV). Remote reads are ranged GETs of ``block_size`` bytes or more."""
    if not is_remote(uri):
        return open_read(uri)
    reader = _RangedReader(uri, size(uri))
    return io.BufferedReader(reader, buffer_size=block_size)  # type: ignore[return-value]


# --- writes -------------------------------------------------------------------------------------


def _read_only(uri: str) -> StorageError:
    return StorageError(f"{uri}: HTTP(S) URIs are read-only; cannot write or delete")


@contextlib.contextmanager
def open_write(uri: str) -> Iterator[BinaryIO]:
    """Write a new object atomically: it becomes visible (replacing any old one) only when the
    ``with`` block exits cleanly; on an exception nothing is published and an old object is
    untouched. S3 writes are spooled to a local temp file and uploaded on exit."""
    scheme = _scheme(uri)
    if _is_http(scheme):
        raise _read_only(uri)
    if scheme == "file":
        with _local.atomic_writer(_local.local_path(uri)) as fh:
            yield fh
        return
    _s3.split_uri(uri)  # a bad URI fails before the caller writes anything
    with tempfile.TemporaryFile(prefix="longvid-s3-") as spool:
        yield spool  # type: ignore[misc]
        spool.flush()
        spool.seek(0)
        _s3.upload_fileobj(spool, uri)  # type: ignore[arg-type]


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` atomically (see :func:`open_write`)."""
    if _scheme(uri) == "s3":
        _s3.upload_fileobj(io.BytesIO(data), uri)
        return
    with open_write(uri) as fh:
        fh.write(data)


def upload_file(local_path: str | Path, uri: str) -> None:
    """Copy a local file to ``uri`` atomically (to S3: multipart above the threshold)."""
    scheme = _scheme(uri)
    if _is_http(scheme):
        raise _read_only(uri)
    src = Path(local_path)
    with _local.local_errors(src):
        fh = open(src, "rb")  # closed by the ``with`` below
    with fh:
        if scheme == "s3":
            _s3.upload_fileobj(fh, uri)
            return
        with open_write(uri) as out, _local.local_errors(src):
            shutil.copyfileobj(fh, out, COPY_CHUNK)


def download_file(uri: str, local_path: str | Path) -> None:
    """Copy any URI to a local file, atomically (a failed download leaves no partial file)."""
    _download(uri, Path(local_path), durable=True)


def _download(uri: str, dest: Path, durable: bool) -> None:
    scheme = _scheme(uri)
    if scheme == "s3":
        _s3.head(uri)  # typed error before a destination file is created
    with _local.atomic_writer(dest, durable=durable) as out:
        if scheme == "s3":
            _s3.download_fileobj(uri, out)
            return
        with open_read(uri) as src:
            shutil.copyfileobj(src, out, COPY_CHUNK)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path holding ``uri``'s bytes: the file itself when local (no copy), otherwise a
    temporary download that keeps the file name (tools that look at the extension still work)
    and is removed when the block exits."""
    if not is_remote(uri):
        size(uri)  # typed error when missing or a folder
        yield _local.local_path(uri)
        return
    name = urllib.parse.unquote(uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    name = name.lstrip(".-")[:200] or "object"  # never hidden, never read as an option
    tmpdir = tempfile.mkdtemp(prefix="longvid-copy-")
    try:
        path = Path(tmpdir) / name
        _download(uri, path, durable=False)  # a throwaway copy: no fsync
        yield path
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def list_files(prefix_uri: str, suffix: str | None = None) -> list[str]:
    """Every file below a folder (a local folder, or an S3 prefix taken as a folder),
    recursively, as sorted full URIs; only names ending with ``suffix`` when given. Dot-prefixed
    names (temp files, hidden folders) are skipped. A missing local folder or S3 bucket is
    NotFoundError; an S3 prefix with nothing under it is an empty list."""
    scheme = _scheme(prefix_uri)
    if scheme == "s3":
        return _s3.list_prefix(prefix_uri, suffix)
    if _is_http(scheme):
        raise StorageError(f"{prefix_uri}: cannot list an HTTP(S) URL")
    return _local.list_dir(_local.local_path(prefix_uri), suffix)


def list_sizes(prefix_uri: str) -> dict[str, int]:
    """``list_files`` with each file's size (from the same LIST on S3: no HEAD per file). A
    missing folder is an empty dict."""
    try:
        if _scheme(prefix_uri) == "s3":
            return _s3.list_prefix_sizes(prefix_uri)
        return {f: os.path.getsize(f) for f in list_files(prefix_uri)}
    except NotFoundError:
        return {}


def delete(uri: str, missing_ok: bool = True) -> None:
    """Delete one file or object; a missing one is fine unless ``missing_ok`` is False."""
    scheme = _scheme(uri)
    if _is_http(scheme):
        raise _read_only(uri)
    if scheme == "s3":
        if not missing_ok and not _s3.exists(uri):
            raise NotFoundError(f"{uri}: not found")
        _s3.delete(uri)
        return
    path = _local.local_path(uri)
    try:
        with _local.local_errors(uri):
            if path.is_dir() and not path.is_symlink():
                raise IsADirectoryError(path)
            path.unlink()
    except NotFoundError:
        if not missing_ok:
            raise


@dataclass(frozen=True)
class IncompleteUpload:
    """An S3 multipart upload that was started and never completed nor aborted."""

    uri: str  # the object it would have created
    upload_id: str
    initiated: datetime | None  # the server's clock


def incomplete_uploads(prefix_uri: str) -> list[IncompleteUpload]:
    """Open multipart uploads below a folder (S3 prefix), sorted by URI. Local folders have
    none (their temp files are ordinary dot-files); HTTP(S) cannot be listed."""
    scheme = _scheme(prefix_uri)
    if scheme != "s3":
        if _is_http(scheme):
            raise StorageError(f"{prefix_uri}: cannot list an HTTP(S) URL")
        return []
    return [IncompleteUpload(*u) for u in _s3.list_uploads(prefix_uri)]


def abort_incomplete_uploads(
    prefix_uri: str,
    *,
    keep: Callable[[IncompleteUpload], bool] | None = None,
) -> list[IncompleteUpload]:
    """Abort the open multipart uploads below a folder, except those ``keep`` claims (e.g.
    uploads of writers still running); returns the aborted ones.

    A writer killed mid-upload leaves such an upload behind: its parts cost storage but no
    object listing shows them. Only call this when no writer you do not ``keep`` is running
    under the prefix: aborting a live upload makes that writer fail.
    """
    aborted = []
    for up in incomplete_uploads(prefix_uri):
        if keep is not None and keep(up):
            continue
        _s3.abort_upload(up.uri, up.upload_id)
        aborted.append(up)
    return aborted
