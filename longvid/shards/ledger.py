"""The build's commit records, and what a rerun does with them.

Layout under the output root::

    build.json               what this build is (content hash of the config, manifest fingerprint)
    ledger/<unit_id>.json    one per committed unit: its shards, sample rows and rejects
    shards/<unit_id>-NNNNN.tar

A unit's shards are published first (atomically), its ledger entry last (atomically): the entry is
the commit. A shard that no entry lists is an orphan of an interrupted run and is removed before
the rerun processes the units that have no entry.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longvid import storage
from longvid.errors import ConfigError, NotFoundError

log = logging.getLogger(__name__)

BUILD_FILE = "build.json"
LEDGER_DIR = "ledger"
SHARDS_DIR = "shards"
BUILD_FORMAT = "longvid-build-v1"
# what a finished build writes from the ledger; removed (with the rest) by --restart
FINAL_FILES = ("index.json", "samples.parquet", "rejects.parquet", "summary.json")


@dataclass
class LedgerEntry:
    unit_id: str
    record_ids: list[str]
    shards: list[dict[str, Any]]  # ShardInfo.as_dict() of each shard, in order
    samples: list[dict[str, Any]]  # samples.parquet rows
    rejects: list[dict[str, Any]]  # rejects.parquet rows
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return (json.dumps(self.__dict__, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> LedgerEntry:
        try:
            d = json.loads(data)
            return cls(
                **{k: d[k] for k in ("unit_id", "record_ids", "shards", "samples", "rejects")},
                stats=d.get("stats", {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a ledger entry ({exc})") from None


def ledger_uri(root: str, unit_id: str) -> str:
    return storage.join(root, LEDGER_DIR, f"{unit_id}.json")


def commit(root: str, entry: LedgerEntry) -> None:
    """Write the unit's ledger entry (atomically). Call only after its shards are published."""
    storage.write_bytes(ledger_uri(root, entry.unit_id), entry.to_json())


def read_entry(root: str, unit_id: str) -> LedgerEntry | None:
    try:
        data = storage.read_bytes(ledger_uri(root, unit_id))
    except NotFoundError:
        return None
    return LedgerEntry.from_json(data, ledger_uri(root, unit_id))


def _list(root: str, sub: str, suffix: str | None = None) -> list[str]:
    try:
        return storage.list_files(storage.join(root, sub), suffix)
    except NotFoundError:
        return []


def committed_units(root: str) -> dict[str, LedgerEntry]:
    """Every ledger entry under ``root``, by unit id. An unreadable entry (cannot happen with
    atomic writes, but a disk can lie) is logged and left out, so its unit is redone."""
    out: dict[str, LedgerEntry] = {}
    for uri in _list(root, LEDGER_DIR, ".json"):
        unit_id = uri.rsplit("/", 1)[-1][: -len(".json")]
        try:
            out[unit_id] = LedgerEntry.from_json(storage.read_bytes(uri), uri)
        except ValueError as exc:
            log.warning("ignoring %s", exc)
    return out


def entry_intact(root: str, entry: LedgerEntry) -> bool:
    """Whether every shard the entry lists is there with the recorded size."""
    for shard in entry.shards:
        uri = storage.join(root, shard["url"])
        try:
            if storage.size(uri) != int(shard["filesize"]):
                return False
        except NotFoundError:
            return False
    return True


def _hidden_local_files(root: str, sub: str) -> list[str]:
    """Dot-prefixed files (temp files of interrupted atomic writes) under a local folder."""
    if storage.is_remote(root):
        return []
    base = Path(root) / sub
    found: list[str] = []
    if base.is_dir():
        for dirpath, _dirs, files in os.walk(base):
            found += [os.path.join(dirpath, f) for f in files if f.startswith(".")]
    return sorted(found)


def remove_orphans(root: str, entries: Iterable[LedgerEntry], unit_ids: set[str]) -> list[str]:
    """Delete shards no entry lists, ledger entries of units not in this build, and temp files.
    Returns what was removed (URIs)."""
    entries = list(entries)
    listed = {storage.join(root, s["url"]) for e in entries for s in e.shards}
    removed: list[str] = []
    for uri in _list(root, SHARDS_DIR):
        if uri not in listed:
            removed.append(uri)
    for e in entries:
        if e.unit_id not in unit_ids:
            removed.append(ledger_uri(root, e.unit_id))
    removed += _hidden_local_files(root, SHARDS_DIR) + _hidden_local_files(root, LEDGER_DIR)
    for uri in removed:
        storage.delete(uri)
    return removed


def read_build_file(root: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(storage.join(root, BUILD_FILE)))
    except NotFoundError:
        return None


def check_or_start(root: str, identity: dict[str, Any], restart: bool) -> bool:
    """Compare this build's identity with the one recorded at ``root``.

    Returns True when the build resumes an earlier one. A different config or manifest is refused
    (ConfigError naming what changed) unless ``restart``, which wipes the earlier build first.
    """
    if restart:
        wipe(root)
    old = read_build_file(root)
    if old is not None:
        changed = [k for k in identity if old.get(k) != identity[k]]
        if changed:
            raise ConfigError(
                f"{root}: holds a build with a different {', '.join(changed)} "
                f"({', '.join(f'{k}: {old.get(k)!r} → {identity[k]!r}' for k in changed)}); "
                "use a new output root, or --restart to delete it and build again"
            )
        return True
    if _list(root, LEDGER_DIR, ".json"):
        raise ConfigError(f"{root}: has ledger entries but no {BUILD_FILE}; use --restart")
    data = json.dumps({"format": BUILD_FORMAT, **identity}, indent=1, sort_keys=True) + "\n"
    storage.write_bytes(storage.join(root, BUILD_FILE), data.encode())
    return False


def wipe(root: str) -> None:
    """Remove everything a build writes under ``root`` (not the ingest output)."""
    for sub in (LEDGER_DIR, SHARDS_DIR):
        for uri in _list(root, sub) + _hidden_local_files(root, sub):
            storage.delete(uri)
    for name in (*FINAL_FILES, BUILD_FILE):
        storage.delete(storage.join(root, name))
