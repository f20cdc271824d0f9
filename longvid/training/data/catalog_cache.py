"""The catalog cache: the loader's columns of one or more corpora, compiled once into numpy files
that every process of a node memory-maps.

Layout of one cache, ``CACHE_DIR/<key>/`` (``key`` hashes the corpora's roots and their cheap
identity: ``index.json``, ``parts.json`` and the sizes of the ``samples.parquet`` parts, so a
rebuilt corpus gets a new cache):

* ``meta.json``: format, rows, the dictionaries (shards, sources, buckets, member extensions),
  the manifest fingerprints, and every file's size (checked on open);
* per-row arrays in catalog order (sorted by key, then corpus): ``corpus``, ``duration``,
  ``shard`` / ``source`` / ``bucket`` codes, ``key.off`` + ``key.data``,
  ``caption.off`` + ``caption.data`` + ``caption.valid``, ``members.off``;
* per-member arrays: ``member.ext`` codes, ``member.offset``, ``member.size``.

Compiling (:mod:`~longvid.training.data.catalog_compile`) streams the samples tables batch by
batch into unsorted spill files, sorts the keys (memory-mapped; one uint64 index per row in
memory), and gathers every column into catalog order chunk by chunk. It writes into a temp folder renamed into place, so a cache is whole or absent.
One process compiles (it holds ``<key>.lock``, created exclusively and touched as it works);
the others wait for the folder to appear, and take over when the lock's process died (same
host) or the lock went stale (another host sharing the folder). A cache that fails its checks on open is removed, logged and compiled again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longvid import storage
from longvid.shards.index import INDEX_NAME
from longvid.shards.manifest import SAMPLES_NAME
from longvid.storage.local import local_path
from longvid.training.data.catalog_compile import CACHE_FORMAT, COLUMNS, compile_cache

__all__ = ["COLUMNS", "CacheDamaged", "CacheFiles", "cache_key", "default_cache_dir",
           "open_cache", "open_or_compile"]

log = logging.getLogger(__name__)

CACHE_ENV = "LONGVID_CACHE_DIR"  # overrides the default cache root (~/.cache/longvid)
PARTS_NAME = "parts.json"
STALE_LOCK_S = 300.0  # a lock not touched for this long is taken over
WAIT_POLL_S = 0.2


def default_cache_dir() -> Path:
    """``$LONGVID_CACHE_DIR/catalog``, else ``~/.cache/longvid/catalog``."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "longvid") / "catalog"


# --- identity: which cache belongs to these corpora ------------------------------------------


def _samples_listing(root: str) -> list[list[Any]]:
    """(name, size[, mtime_ns]) of the corpus's sample-table file(s): cheap, no row read."""
    uri = storage.join(root, SAMPLES_NAME)
    if storage.is_remote(uri):
        if storage.exists(uri):
            return [[SAMPLES_NAME, storage.size(uri)]]
        return sorted([k[len(uri):], v] for k, v in storage.list_sizes(uri).items())
    path = Path(local_path(uri))
    if path.is_file():
        st = path.stat()
        return [[SAMPLES_NAME, st.st_size, st.st_mtime_ns]]
    out = []
    for f in sorted(path.rglob("*.parquet")) if path.is_dir() else []:
        if not f.name.startswith("."):
            st = f.stat()
            out.append([str(f.relative_to(path)), st.st_size, st.st_mtime_ns])
    return out


def corpus_identity(root: str) -> str:
    """sha256 of what identifies a built corpus without reading its rows: ``index.json`` and
    ``parts.json`` (bytes) and the sizes (and local mtimes) of its sample-table parts."""
    h = hashlib.sha256()
    h.update(storage.read_bytes(storage.join(root, INDEX_NAME)))
    parts = storage.join(root, PARTS_NAME)
    if storage.exists(parts):
        h.update(storage.read_bytes(parts))
    h.update(json.dumps(_samples_listing(root)).encode())
    return h.hexdigest()


def cache_key(roots: tuple[str, ...]) -> str:
    blob = json.dumps([CACHE_FORMAT, [[r, corpus_identity(r)] for r in roots]]).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


# --- the opened cache --------------------------------------------------------------------------


@dataclass
class CacheFiles:
    """An opened cache: its folder, ``meta.json`` and the memory-mapped arrays by name."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]


class CacheDamaged(Exception):
    """A cache folder that cannot be used as it is (missing or truncated file, bad meta)."""


def open_cache(path: Path) -> CacheFiles:
    """Map every array of the cache at ``path`` (read-only). CacheDamaged when a check fails."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise CacheDamaged(f"meta.json unreadable: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise CacheDamaged(f"meta.json is not a {CACHE_FORMAT} file")
    arrays = {}
    for name, (size, length) in meta["files"].items():
        f = path / f"{name}.npy"
        try:
            got = f.stat().st_size
        except OSError:
            raise CacheDamaged(f"{f.name} is missing") from None
        if got != size:
            raise CacheDamaged(f"{f.name} has {got} bytes, meta.json says {size}")
        try:
            arr = np.load(f, mmap_mode="r" if length else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CacheDamaged(f"{f.name} does not load: {exc}") from None
        if arr.ndim != 1 or len(arr) != length:
            raise CacheDamaged(f"{f.name} has shape {arr.shape}, meta.json says ({length},)")
        arrays[name] = arr
    return CacheFiles(path, meta, arrays)


def open_or_compile(roots: tuple[str, ...], cache_dir: str | Path | None = None) -> CacheFiles:
    """The cache of ``roots`` under ``cache_dir`` (default :func:`default_cache_dir`): opened
    when present and whole, else compiled by this process or by the one that holds the lock."""
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    final = base / cache_key(roots)
    lock = base / f"{final.name}.lock"
    while True:
        if final.exists():
            try:
                return open_cache(final)
            except CacheDamaged as exc:
                log.warning("catalog cache %s is damaged (%s): removing it and compiling it "
                            "again from %s", final, exc, ", ".join(roots))
                _remove(final)
                continue
        if _take_lock(lock):
            try:
                if not final.exists():  # another process may have finished in between
                    _publish(compile_cache(roots, base, lock), final)
            finally:
                lock.unlink(missing_ok=True)
            continue
        time.sleep(WAIT_POLL_S)


def _remove(path: Path) -> None:
    aside = path.with_name(f".bad-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        path.rename(aside)  # processes that mapped the old files keep them until they exit
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the compiled folder into place; the first writer wins, a later one discards."""
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` exclusively (True), or False while another live process holds it. A
    lock whose holder died (same host) or that was not touched for STALE_LOCK_S is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _lock_is_dead(lock):
                return False
            log.warning("catalog cache lock %s is stale (holder gone): taking it over", lock)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
        return True
    return False


def _lock_is_dead(lock: Path) -> bool:
    """Whether the process holding ``lock`` is gone: on this host, its pid is checked; a lock
    from another host (a shared cache folder) is dead when not touched for STALE_LOCK_S."""
    try:
        age = time.time() - lock.stat().st_mtime
        holder = json.loads(lock.read_text() or "{}")
    except FileNotFoundError:
        return False  # released meanwhile: the next loop opens the cache
    except (OSError, ValueError):
        holder = {}
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        else:
            return False
    return age > STALE_LOCK_S
