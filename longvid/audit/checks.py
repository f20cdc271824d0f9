"""The audit's checks: which problem reasons each one owns, and its pass/fail verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    what: str  # one line: what passing means
    reasons: tuple[str, ...]


CHECKS: tuple[Check, ...] = (
    Check("shards_exist", "Every shard in the index exists",
          "each url of index.json is a readable object under the corpus root",
          ("missing_shard", "unreadable_shard")),
    Check("shard_size_checksum", "Shard sizes and checksums match the index",
          "bytes and SHA-256 of every shard equal its index entry",
          ("size_mismatch", "checksum_mismatch")),
    Check("shard_structure", "Shards are complete, well-formed tars",
          "every header parses, the end-of-archive blocks are there, the sample count is the "
          "index's", ("truncated", "bad_header", "nsamples_mismatch")),
    Check("members_present", "Every sample's members are present",
          "each member recorded in samples.parquet (and each required one) is in the shard at "
          "its recorded offset", ("missing_member", "offset_mismatch")),
    Check("members_decodable", "Members decode",
          "KEY.json parses, KEY.txt is UTF-8, arrays load, the picked clips decode frame by "
          "frame with the recorded frame count", ("bad_json", "bad_text", "bad_array",
                                                  "undecodable")),
    Check("rows_match_shards", "samples.parquet matches the shard contents",
          "every row's KEY.json/KEY.txt agree with it, every sample in a shard is listed, no "
          "row points at a shard outside the index, no stray shard files",
          ("row_mismatch", "unexpected_key", "not_in_index", "orphan_shard")),
    Check("unique_keys", "No duplicate keys",
          "a key appears once in samples.parquet and once across all shards",
          ("duplicate_key",)),
    Check("accounting", "Accounting sums hold",
          "inputs = accepted + rejected per source (ingest and build), no record lost or "
          "counted twice, summary.json agrees with the tables",
          ("ingest_sum", "ingest_rejects", "ingest_rows", "lost_record", "doubled_record",
           "summary_mismatch")),
)
LEAKAGE = Check("no_leakage", "No evaluation video in the corpus",
                "no sample shares a source video id with the evaluation list, and none is a "
                "near duplicate of an evaluation clip", ("leak_video_id", "leak_embedding", "leak_fingerprint"))
REASON_TO_CHECK = {r: c.name for c in (*CHECKS, LEAKAGE) for r in c.reasons}


def verdicts(problems: list[dict[str, Any]], *, with_leakage: bool, max_listed: int
             ) -> list[dict[str, Any]]:
    """One entry per check: ``{name, title, what, passed, count, reasons, problems}``.

    ``problems`` lists at most ``max_listed`` items per check (``count`` has them all). A
    problem whose reason no check owns fails a check of its own, so nothing is dropped.
    """
    checks = list(CHECKS) + ([LEAKAGE] if with_leakage else [])
    owned: dict[str, list[dict[str, Any]]] = {c.name: [] for c in checks}
    other: list[dict[str, Any]] = []
    for p in problems:
        name = REASON_TO_CHECK.get(p["reason"])
        (owned[name] if name in owned else other).append(p)
    out = []
    for c in checks:
        found = owned[c.name]
        out.append({
            "name": c.name, "title": c.title, "what": c.what, "passed": not found,
            "count": len(found), "reasons": dict(Counter(p["reason"] for p in found)),
            "problems": found[:max_listed],
        })
    if other:
        out.append({"name": "other", "title": "Other problems", "what": "none at all",
                    "passed": False, "count": len(other),
                    "reasons": dict(Counter(p["reason"] for p in other)),
                    "problems": other[:max_listed]})
    return out
