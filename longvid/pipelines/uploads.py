"""Stale multipart uploads under a build's output root.

A unit task killed while it uploads a shard (worker or node death, a SIGKILLed driver taking
its local Ray down) leaves an open multipart upload on S3: its parts are stored and billed,
and no object listing shows them. The build sweeps them at the start of every run (no unit of
this run is running yet, so every open upload belongs to a dead writer) and again at finalize
(every unit has ended). The counts go to ``summary.json`` as ``run.stale_uploads_aborted``.
A local root has no such uploads (its temp files are removed with the orphans).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

from longvid import storage

log = logging.getLogger(__name__)

# shards/<unit_id>-NNNNN.tar and ledger/<unit_id>.json name their unit
_UNIT_OF = re.compile(r"^(?P<unit>.+?)(?:-\d{5})?\.(?:tar|json)$")


def unit_of(uri: str) -> str | None:
    """The unit id an output object belongs to, from its name (None for other files)."""
    m = _UNIT_OF.match(uri.rsplit("/", 1)[-1])
    return m.group("unit") if m else None


def sweep_stale_uploads(root: str, live_units: Collection[str] = ()) -> int:
    """Abort the open multipart uploads under ``root`` that no unit in ``live_units`` owns;
    returns how many were aborted."""
    live = set(live_units)
    aborted = storage.abort_incomplete_uploads(
        root, keep=(lambda up: unit_of(up.uri) in live) if live else None
    )
    for up in aborted:
        log.info("aborted a stale multipart upload of %s (started %s)", up.uri, up.initiated)
    return len(aborted)
