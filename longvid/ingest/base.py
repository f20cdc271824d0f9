"""The adapter protocol and what every adapter shares: issues, path safety, dropped-item notes.

An adapter is a module with ``iter_items(cfg) -> Iterator[VideoRecord | Reject]``: it reads one
release's official files (streaming) and yields, for every *input record* of that release, either
a :class:`VideoRecord` or a :class:`Reject`. What an input record is is fixed per source and
documented in its module (a video entry, a JSONL line, a CSV row). A record that stands for
several input records (MiraData groups its clip rows by source video) says so in
``raw["input_records"]``, so the runner can check accepted + rejected = inputs.

Problems inside an otherwise good record (one NaN caption among 80, one summary with end ≤ start)
drop that item only; the record keeps a count per reason in ``raw["dropped"]`` and a few examples
in ``raw["dropped_examples"]``, and the runner sums them per source.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from longvid import storage
from longvid.schema import Reject, VideoRecord

STAGE = "ingest"

# source name → module implementing iter_items(cfg)
ADAPTERS: dict[str, str] = {
    "ego4d": "longvid.ingest.ego4d",
    "howto100m": "longvid.ingest.howto100m",
    "hdvila": "longvid.ingest.hdvila",
    "miradata": "longvid.ingest.miradata",
    "webvid": "longvid.ingest.webvid",
    "generic": "longvid.ingest.generic",
}

Item = VideoRecord | Reject


class Adapter(Protocol):
    def iter_items(self, cfg: Any) -> Iterator[Item]: ...


def get_adapter(name: str) -> Adapter:
    """The adapter module for a source name."""
    return importlib.import_module(ADAPTERS[name])  # type: ignore[return-value]


class RecordIssue(Exception):
    """One input record cannot be used; becomes a :class:`Reject` with this reason."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def reject(source: str, record_id: str | None, locator: str, reason: str, detail: str) -> Reject:
    return Reject(
        source=source,
        record_id=record_id,
        locator=locator,
        stage=STAGE,
        reason=reason,
        detail=detail,
    )


def reject_from(source: str, video_id: str | None, locator: str, issue: RecordIssue) -> Reject:
    record_id = f"{source}:{video_id}" if isinstance(video_id, str) and video_id else None
    return reject(source, record_id, locator, issue.reason, f"{locator}: {issue.detail}")


def inputs_of(record: VideoRecord) -> int:
    """How many input records a manifest row stands for (1 unless the adapter grouped rows)."""
    return int(record.raw.get("input_records", 1))


class Drops:
    """Counts items dropped from inside a record, with a few examples for the audit."""

    MAX_EXAMPLES = 5

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[dict[str, str]] = []

    def add(self, where: str, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append({"at": where, "reason": reason, "detail": detail})

    def __len__(self) -> int:
        return sum(self.counts.values())

    def into(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Store the counts in a record's raw dict (nothing when nothing was dropped)."""
        if self.counts:
            raw["dropped"] = dict(sorted(self.counts.items()))
            raw["dropped_examples"] = list(self.examples)
        return raw


# ---------------------------------------------------------------- ids and paths

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(value: Any, field: str) -> str:
    """A video id from metadata: a non-empty string that can be one path component.

    Slashes, backslashes, ``.``/``..``, control characters and surrounding whitespace are refused
    (reason ``unsafe_id``) so that an id can never name a file outside the release root. Ids that
    start with ``-`` are fine: they are only ever used inside a path that starts with the root.
    """
    if value is None or value == "":
        raise RecordIssue("missing_field", f"{field} is missing or empty")
    if not isinstance(value, str):
        raise RecordIssue(
            "bad_id", f"{field} must be a string, got {type(value).__name__} {value!r}"
        )
    if (
        "/" in value
        or "\\" in value
        or value in (".", "..")
        or _CONTROL.search(value)
        or value != value.strip()
    ):
        raise RecordIssue("unsafe_id", f"{field} {value!r} cannot be used as a file name")
    return value


def check_relpath(value: Any, field: str) -> str:
    """A relative path from metadata (e.g. MiraData ``file_path``) that stays under the root.

    Absolute paths, URIs, ``..`` components, backslashes and control characters are refused
    (reason ``unsafe_id``). Returns the normalised POSIX path.
    """
    if value is None or value == "":
        raise RecordIssue("missing_field", f"{field} is missing or empty")
    if not isinstance(value, str):
        raise RecordIssue("bad_id", f"{field} must be a string, got {type(value).__name__}")
    bad = (
        value.startswith(("/", "~"))
        or "://" in value
        or "\\" in value
        or bool(_CONTROL.search(value))
        or re.match(r"^[A-Za-z]:", value) is not None
        or any(part == ".." for part in value.split("/"))
    )
    norm = posixpath.normpath(value)
    if bad or norm in (".", "") or norm.startswith("../"):
        raise RecordIssue("unsafe_id", f"{field} {value!r} would resolve outside the root")
    return norm


def resolve_root(root: str) -> str:
    """A release root as used in manifest URIs: local roots (paths or ``file://``) become
    absolute paths (Ray workers run in other directories), remote roots lose a trailing slash."""
    if storage.is_remote(root):
        return root.rstrip("/")
    if root.startswith("file://"):
        root = urllib.parse.unquote(urllib.parse.urlparse(root).path)
    return str(Path(root).expanduser().resolve())


def under_root(root: str, *parts: str) -> str:
    """URI of ``parts`` below ``root``; every part must already have passed the checks above."""
    return storage.join(root, *[p for p in parts if p])


def locate(file_uri: str, index: int | str) -> str:
    """``<file name>:<line or record index>`` for reject rows and manifest locators."""
    name = file_uri.rstrip("/").rsplit("/", 1)[-1]
    return f"{name}:{index}"


def clean_text(value: Any) -> str | None:
    """Whitespace-collapsed text, or None when the value is not a string or is empty."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    return text or None
