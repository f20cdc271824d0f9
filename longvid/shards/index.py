"""The shard index: a wids dataset description at ``ROOT/index.json``.

The file is what ``wids.ShardListDataset(ROOT/index.json)`` expects, unchanged::

    {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "longvid",
     "shardlist": [{"url": "shards/shard-00000.tar", "nsamples": 812,
                    "filesize": 268369920, "sha256": "9f2c..."}, ...]}

Urls are relative to the directory of the index (wids resolves them against it), so a corpus can
be moved or copied to S3 as a whole. An index read back is checked: every url must stay inside
the root (no absolute paths, no ``..``), since an index may come from anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from longvid import storage
from longvid.errors import FormatError
from longvid.shards.tarwriter import ShardInfo

INDEX_KIND = "wids-shard-index-v1"
INDEX_NAME = "index.json"


def _is_absolute(url: str) -> bool:
    return url.startswith("/") or "://" in url


def relative_url(root_uri: str, url: str) -> str:
    """``url`` relative to ``root_uri``; relative urls pass through after a safety check."""
    if _is_absolute(url):
        root = root_uri.rstrip("/") + "/"
        if not url.startswith(root):
            raise ValueError(f"shard {url!r} is not under the corpus root {root_uri!r}")
        url = url[len(root) :]
    check_relative_url(url, where=root_uri)
    return url


def check_relative_url(url: str, *, where: str) -> str:
    """Raise ValueError unless ``url`` is a plain relative path that stays inside its root."""
    parts = url.split("/")
    if (
        not url
        or _is_absolute(url)
        or "\\" in url
        or "\0" in url
        or any(p in ("", ".", "..") for p in parts)
        or parts[0].startswith("-")
    ):
        raise ValueError(f"{where}: shard url {url!r} must be a relative path inside the root")
    return url


@dataclass(frozen=True)
class ShardIndex:
    """A shard index as read back: its name, location, and shards (urls relative to ``root``)."""

    uri: str
    root_uri: str
    name: str
    shards: tuple[ShardInfo, ...]

    @property
    def nsamples(self) -> int:
        return sum(s.nsamples for s in self.shards)

    def shard_uri(self, shard: ShardInfo | str) -> str:
        """Full URI of a shard (given as :class:`ShardInfo` or relative url)."""
        url = shard.url if isinstance(shard, ShardInfo) else shard
        return storage.join(self.root_uri, url)


def index_document(root_uri: str, shards: Iterable[ShardInfo], name: str) -> dict[str, Any]:
    """The JSON document :func:`write_index` writes (shards in the order given)."""
    entries = []
    seen: set[str] = set()
    for info in shards:
        entry = info.index_entry()
        entry["url"] = relative_url(root_uri, info.url)
        if entry["url"] in seen:
            raise ValueError(f"{root_uri}: shard {entry['url']!r} listed twice in the index")
        seen.add(entry["url"])
        entries.append(entry)
    return {"__kind__": INDEX_KIND, "wids_version": 1, "name": name, "shardlist": entries}


def write_index(
    root_uri: str, shards: Iterable[ShardInfo], name: str, *, filename: str = INDEX_NAME
) -> str:
    """Write ``ROOT/index.json`` (atomically) and return its URI.

    The order of ``shards`` is the order of the dataset (wids numbers samples through it).
    """
    if "/" in filename:
        # wids resolves shard urls against the index's own directory: it must sit at the root.
        raise ValueError(f"index filename {filename!r} must not contain '/'")
    doc = index_document(root_uri, shards, name)
    uri = storage.join(root_uri, filename)
    data = (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    with storage.open_write(uri) as f:
        f.write(data)
    return uri


def _entry(uri: str, i: int, entry: Any) -> ShardInfo:
    if not isinstance(entry, Mapping):
        raise FormatError(f"{uri}: shardlist[{i}] is not an object")
    try:
        url = entry["url"]
        nsamples = entry["nsamples"]
    except KeyError as exc:
        raise FormatError(f"{uri}: shardlist[{i}] has no {exc.args[0]!r}") from None
    if not isinstance(url, str):
        raise FormatError(f"{uri}: shardlist[{i}].url is not a string")
    try:
        check_relative_url(url, where=uri)
    except ValueError as exc:
        raise FormatError(str(exc)) from None
    for field, value in (("nsamples", nsamples), ("filesize", entry.get("filesize", 0))):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FormatError(f"{uri}: shardlist[{i}].{field} is not a count: {value!r}")
    sha = entry.get("sha256", "")
    if not isinstance(sha, str):
        raise FormatError(f"{uri}: shardlist[{i}].sha256 is not a string")
    return ShardInfo(url=url, nsamples=nsamples, filesize=entry.get("filesize", 0), sha256=sha)


def read_index(root_uri: str, *, filename: str = INDEX_NAME) -> ShardIndex:
    """Read and check ``ROOT/index.json``. Raises NotFoundError when it is missing and
    FormatError (naming the file and the entry) when it is not a valid shard index."""
    uri = storage.join(root_uri, filename)
    raw = storage.read_bytes(uri)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{uri}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{uri}: a shard index is a JSON object")
    if doc.get("wids_version") != 1:
        raise FormatError(f"{uri}: wids_version must be 1, got {doc.get('wids_version')!r}")
    kind = doc.get("__kind__", INDEX_KIND)
    if kind != INDEX_KIND:
        raise FormatError(f"{uri}: __kind__ is {kind!r}, expected {INDEX_KIND!r}")
    shardlist = doc.get("shardlist")
    if not isinstance(shardlist, list):
        raise FormatError(f"{uri}: no shardlist")
    shards = tuple(_entry(uri, i, e) for i, e in enumerate(shardlist))
    urls = [s.url for s in shards]
    if len(set(urls)) != len(urls):
        dup = next(u for u in urls if urls.count(u) > 1)
        raise FormatError(f"{uri}: shard {dup!r} is listed twice")
    return ShardIndex(uri=uri, root_uri=root_uri, name=str(doc.get("name", "")), shards=shards)
