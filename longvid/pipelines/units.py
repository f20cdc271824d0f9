"""Work units: manifest records packed into small groups, each committed as one ledger entry.

Packing is a pure function of the records and the config, so a rerun finds the same units (and
the same unit ids) and can skip the ones already committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from longvid.pipelines.config import UnitsConfig


@dataclass
class WorkUnit:
    unit_id: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def record_ids(self) -> list[str]:
        return [r["record_id"] for r in self.records]


def unit_id_of(record_ids: Iterable[str]) -> str:
    """Short hash of the sorted record ids: names the unit's shards and ledger entry."""
    blob = "\n".join(sorted(record_ids)).encode("utf-8")
    return "u" + hashlib.sha256(blob).hexdigest()[:15]


def pack_units(records: Iterable[dict[str, Any]], cfg: UnitsConfig) -> list[WorkUnit]:
    """Sort records by ``record_id`` and pack consecutive ones into units of at most
    ``videos_per_unit`` records and ``max_unit_seconds`` declared seconds (unknown = 0 s)."""
    ordered = sorted(records, key=lambda r: r["record_id"])
    groups: list[list[dict[str, Any]]] = []
    seconds = 0.0
    for rec in ordered:
        dur = float(rec.get("declared_duration") or 0.0)
        full = bool(groups) and (
            len(groups[-1]) >= cfg.videos_per_unit
            or (cfg.max_unit_seconds is not None and seconds + dur > cfg.max_unit_seconds)
        )
        if not groups or full:
            groups.append([])
            seconds = 0.0
        groups[-1].append(rec)
        seconds += dur
    return [WorkUnit(unit_id_of(r["record_id"] for r in g), g) for g in groups]
