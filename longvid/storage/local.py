"""Local files: typed errors and atomic writes (temp file in the same folder + fsync + rename)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from longvid.errors import AccessDeniedError, NotFoundError, StorageError


def local_path(uri: str) -> Path:
    """The path of a plain path or a ``file://`` URI."""
    if uri.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(
                f"{uri}: a file:// URI must name a local path (host {parsed.netloc!r})"
            )
        return Path(urllib.parse.unquote(parsed.path))
    return Path(uri)


@contextlib.contextmanager
def local_errors(path: str | Path) -> Iterator[None]:
    """Turn OSError into the typed errors, naming the path."""
    try:
        yield
    except FileNotFoundError:
        raise NotFoundError(f"{path}: not found") from None
    except PermissionError:
        raise AccessDeniedError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise StorageError(f"{path}: is a directory, not a file") from None
    except NotADirectoryError:
        raise StorageError(f"{path}: a parent folder in this path is a file") from None
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror or exc}") from None


# errno values of a write that found no room: the disk (or the tmpfs) is full, or a quota
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def temp_sibling(path: Path) -> Path:
    """A unique dot-prefixed name next to ``path`` (listings skip it; same FS, so the final
    rename is atomic)."""
    return path.with_name(f".{path.name[:180]}.tmp-{os.getpid()}-{secrets.token_hex(6)}")


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every file system lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A file handle whose content appears at ``path`` only after the block exits cleanly.
    ``durable`` fsyncs before the rename (skip it only for throwaway files)."""
    with local_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(path)
        tmp = temp_sibling(path)
        fh = open(tmp, "xb")  # closed below on every path
    try:
        try:
            yield fh
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            # the caller's write hit a full disk or quota: say which file it was writing
            raise StorageError(f"{path}: {exc.strerror} (while writing it)") from None
        with local_errors(path):
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        # close() flushes the buffer again and fails again on a full disk: the temp file must
        # still go, and the error already raised is the one to report
        with contextlib.suppress(OSError):
            fh.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def list_dir(root: Path, suffix: str | None) -> list[str]:
    """Files below ``root`` (recursive, sorted; dot-prefixed files and folders skipped)."""
    if not root.exists():
        raise NotFoundError(f"{root}: not found")
    if not root.is_dir():
        raise StorageError(f"{root}: not a directory (list_files takes a folder)")
    out: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or (suffix and not name.endswith(suffix)):
                continue
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                out.append(full)
    return sorted(out)
