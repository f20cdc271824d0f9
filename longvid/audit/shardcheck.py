"""The audit's work on one shard: verification against the index and ``samples.parquet`` (one
sequential pass: size, SHA-256, every tar header, every member offset), then the samples' small
members read at their recorded offsets (KEY.json parsed and compared with the row, KEY.txt,
arrays) and, for a picked fraction, the clip decoded frame by frame. Clips are read only when
decoded or when their hash is not in the row yet. Plain Python, no Ray: the Ray job maps this
over the shard list.

A remote shard is downloaded once to a temporary file, so its bytes cross the network once;
both passes then read the local copy. Problems come back as dicts (``shard``, ``key``,
``reason``, ``message``) that name the shard URI, never the temp path.

Content reasons (the verification reasons are in :mod:`longvid.shards.verify`):
    missing_member  a required member (``checks.required_members``) is not listed or not there
    bad_json        KEY.json does not parse or is not an object
    bad_text        KEY.txt is not UTF-8
    bad_array       a ``.npy`` member does not load, or holds NaN/inf
    undecodable     the clip does not decode, or yields another number of frames than recorded
    row_mismatch    KEY.json / KEY.txt disagree with the sample's row in samples.parquet
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from longvid import storage
from longvid.errors import LongvidError
from longvid.shards.tarformat import BLOCK, ShardError, parse_header
from longvid.shards.verify import verify_shard

# (row column, path in KEY.json, tolerance: None = equal)
ROW_FIELDS: tuple[tuple[str, tuple[str, ...], float | None], ...] = (
    ("source", ("source",), None),
    ("video_id", ("video_id",), None),
    ("record_id", ("record_id",), None),
    ("bucket", ("bucket",), None),
    ("caption", ("caption",), None),
    ("span_start", ("span", "start"), 1e-3),
    ("span_end", ("span", "end"), 1e-3),
    ("duration", ("clip", "duration"), 1e-3),
    ("fps", ("clip", "fps"), 1e-3),
    ("width", ("clip", "width"), None),
    ("height", ("clip", "height"), None),
    ("num_frames", ("clip", "num_frames"), None),
)


def picked_for_decode(key: str, fraction: float, seed: int) -> bool:
    """Whether ``key``'s clip is decoded: a hash of (seed, key) below ``fraction``, so the pick
    is the same on every run and does not depend on how shards are split among workers."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def problem(shard: str, key: str | None, reason: str, message: str) -> dict[str, Any]:
    return {"shard": shard, "key": key, "reason": reason, "message": message}


def _get(meta: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = meta
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return _MISSING
        node = node[p]
    return node


_MISSING = object()


def _differs(a: Any, b: Any, tol: float | None) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None) and not (a in ("", None) and b in ("", None))
    if tol is not None:
        try:
            return abs(float(a) - float(b)) > tol
        except (TypeError, ValueError):
            return True
    return a != b


def compare_row(uri: str, url: str, key: str, row: dict[str, Any],
                meta: dict[str, Any]) -> list[dict[str, Any]]:
    """KEY.json against the sample's samples.parquet row: one problem per differing field."""
    out = []
    if meta.get("key", key) != key:
        out.append(problem(url, key, "row_mismatch",
                           f"{uri}: {key}.json says key {meta.get('key')!r}"))
    for column, path, tol in ROW_FIELDS:
        if column not in row:
            continue
        value = _get(meta, path)
        if value is _MISSING:
            continue
        if _differs(row[column], value, tol):
            out.append(problem(url, key, "row_mismatch",
                               f"{uri}: {key}: samples.parquet {column} = {row[column]!r}, "
                               f"KEY.json {'.'.join(path)} = {value!r}"))
    return out


def decode_problem(data: bytes, want_frames: int | None, tolerance: int,
                   max_side: int) -> str | None:
    """None when every frame of the clip decodes (and their count is the recorded one), else
    what went wrong."""
    from longvid.media.decode import iter_frames

    try:
        it = iter_frames(data, max_side=max_side, threads=1)
        with it:
            n = sum(1 for _ in it)
            errors = it.decode_errors
    except LongvidError as exc:
        return str(exc)
    except Exception as exc:  # whatever the decoder throws, the clip is bad
        return f"{type(exc).__name__}: {exc}"
    if errors:
        return f"{errors} packet(s) failed to decode ({n} frames decoded)"
    if want_frames is not None and abs(n - int(want_frames)) > tolerance:
        return f"decoded {n} frames, the sample records {want_frames}"
    return None


def _array_problem(data: bytes) -> tuple[str | None, np.ndarray | None]:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        return f"does not load as .npy: {exc}", None
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        return f"holds NaN or inf (shape {list(arr.shape)})", None
    return None, arr


def read_members(f: Any, uri: str, key: str, locs: list[dict[str, Any]],
                 exts: set[str]) -> dict[str, bytes]:
    """The members ``exts`` of one sample, read at their recorded offsets from the open shard
    file ``f``. Each read checks that the tar header in front names ``KEY.EXT`` with the
    recorded size; a member that fails is left out (verification says why)."""
    out: dict[str, bytes] = {}
    for m in locs:
        ext, off, size = str(m["ext"]), int(m["offset"]), int(m["size"])
        if ext not in exts or off < BLOCK:
            continue
        f.seek(off - BLOCK)
        try:
            name, n = parse_header(f.read(BLOCK), uri, off - BLOCK)
        except ShardError:
            continue
        if name != f"{key}.{ext}" or n != size:
            continue
        data = f.read(size)
        if len(data) == size:
            out[ext] = data
    return out


def _scores(meta: dict[str, Any]) -> dict[str, Any]:
    s = meta.get("scores")
    return s if isinstance(s, dict) else {}


def sample_facts(key: str, row: dict[str, Any], meta: dict[str, Any] | None,
                 members: set[str], clip_sha: str | None,
                 embedding: list[float] | None) -> dict[str, Any]:
    """What the report needs from one sample's bytes (small: a few numbers and names)."""
    meta = meta or {}
    scores = _scores(meta)
    emb_info = meta.get("embedding") if isinstance(meta.get("embedding"), dict) else {}
    vt = scores.get("video_text_cosine", emb_info.get("video_text_cosine"))
    # the build writes empty "events"/"qa" lists; the events stage adds "scenes" and the qa
    # stage "conversations", so only then do the lists say something
    qa = meta.get("qa") if "conversations" in meta and isinstance(meta.get("qa"), list) else None
    events = (meta.get("events") if "scenes" in meta and isinstance(meta.get("events"), list)
              else None)
    src = meta.get("source_video") if isinstance(meta.get("source_video"), dict) else None
    return {
        "key": key,
        "json": bool(meta),
        "licence": meta.get("licence"),
        "codec": (meta.get("clip") or {}).get("codec"),
        "has_audio": (meta.get("clip") or {}).get("has_audio"),
        "motion": scores.get("motion_mean"),
        "video_text": vt,
        "events": None if events is None else len(events),
        "qa_tasks": None if qa is None else [str(q.get("task")) for q in qa
                                               if isinstance(q, dict)],
        "captions": len(meta["captions"]) if isinstance(meta.get("captions"), list) else None,
        "clip_sha256": clip_sha,
        "source_video": src,
        "embedding": embedding,
        "members": sorted(members),
    }


def _embedding_lineage(info: dict[str, Any]) -> dict[str, Any]:
    keep = ("model", "pretrained", "init_seed", "custom_config", "image_size", "dim", "dtype")
    return {k: info.get(k) for k in keep}


def content_pass(path: Path, uri: str, url: str, rows: dict[str, dict[str, Any]],
                 opts: dict[str, Any]) -> dict[str, Any]:
    """Every sample of the local shard file ``path``: ``{"problems", "facts", "decoded",
    "embedding_model"}`` (the lineage of the first embedding met, None without embeddings)."""
    problems: list[dict[str, Any]] = []
    facts: list[dict[str, Any]] = []
    decoded = 0
    lineage = None
    required = list(opts.get("required_members", ["json", "mp4"]))
    fraction, seed = float(opts.get("decode_fraction", 0.0)), int(opts.get("seed", 0))
    # samples in shard order, so the reads move forward through the file
    ordered = sorted(rows.values(), key=lambda r: min((int(m["offset"]) for m in
                                                       r.get("members") or []), default=0))
    with open(path, "rb") as f:
        for row in ordered:
            key = row["key"]
            locs = list(row.get("members") or [])
            listed = {str(m["ext"]) for m in locs}
            for ext in required:
                if ext not in listed:
                    problems.append(problem(url, key, "missing_member",
                                            f"{uri}: sample {key} has no {key}.{ext} (required)"))
            pick = picked_for_decode(key, fraction, seed)
            # the clip's bytes only when they are decoded or hashed: not when the row carries
            # the build's clip_sha256 (the shard checksum vouches that the bytes are unchanged)
            # nor when no other clip has its size (``_hash_clip`` false: it cannot be equal)
            hash_clip = (bool(opts.get("hash_clips", True)) and row.get("_hash_clip", True)
                         and not row.get("_clip_sha256"))
            want = {e for e in listed if e != "mp4"} | ({"mp4"} if pick or hash_clip else set())
            members = read_members(f, uri, key, locs, want)
            meta = None
            if "json" in members:
                try:
                    meta = json.loads(members["json"])
                    if not isinstance(meta, dict):
                        raise ValueError("not a JSON object")
                except (UnicodeDecodeError, ValueError) as exc:
                    meta = None
                    problems.append(problem(url, key, "bad_json",
                                            f"{uri}: {key}.json does not parse: {exc}"))
            if meta is not None:
                problems.extend(compare_row(uri, url, key, row, meta))
            if "txt" in members:
                try:
                    text = members["txt"].decode("utf-8")
                except UnicodeDecodeError as exc:
                    problems.append(problem(url, key, "bad_text",
                                            f"{uri}: {key}.txt is not UTF-8: {exc}"))
                else:
                    if row.get("caption") is not None and text != row["caption"]:
                        problems.append(problem(
                            url, key, "row_mismatch",
                            f"{uri}: {key}.txt differs from the caption in samples.parquet "
                            f"({len(text)} vs {len(row['caption'])} characters)"))
            embedding = None
            for ext in sorted(members):
                if not ext.endswith("npy"):
                    continue
                why, arr = _array_problem(members[ext])
                if why:
                    problems.append(problem(url, key, "bad_array", f"{uri}: {key}.{ext} {why}"))
                elif ext == "emb.npy" and opts.get("want_embeddings") and arr is not None:
                    embedding = [float(x) for x in np.asarray(arr, dtype=np.float32).ravel()]
            clip = members.get("mp4")
            sha = row.get("_clip_sha256")
            if clip is not None:
                if hash_clip:
                    sha = hashlib.sha256(clip).hexdigest()
                if pick:
                    decoded += 1
                    why = decode_problem(clip, row.get("num_frames"),
                                         int(opts.get("frame_tolerance", 0)),
                                         int(opts.get("decode_max_side", 64)))
                    if why:
                        problems.append(problem(url, key, "undecodable",
                                                f"{uri}: {key}.mp4 {why}"))
            facts.append(sample_facts(key, row, meta, listed, sha, embedding))
            if lineage is None and meta is not None and isinstance(meta.get("embedding"), dict):
                lineage = _embedding_lineage(meta["embedding"])
    return {"problems": problems, "facts": facts, "decoded": decoded, "embedding_model": lineage}


def audit_shard(root: str, info: dict[str, Any], rows: list[dict[str, Any]],
                opts: dict[str, Any]) -> dict[str, Any]:
    """Verify one shard and read its samples.

    ``info`` is its index entry (url, nsamples, filesize, sha256), ``rows`` its rows of
    samples.parquet, ``opts`` the ``checks`` settings plus ``hash_clips`` / ``want_embeddings``.
    Returns ``{"url", "problems", "facts", "decoded", "embedding_model", "bytes", "seconds"}``.
    """
    started = time.monotonic()
    url = info["url"]
    uri = storage.join(root, url)
    by_key = {r["key"]: r for r in rows}
    out: dict[str, Any] = {"url": url, "problems": [], "facts": [], "decoded": 0, "bytes": 0,
                           "embedding_model": None}
    if not storage.exists(uri):
        out["problems"] = [problem(url, None, "missing_shard", f"{uri}: shard does not exist")]
        out["seconds"] = round(time.monotonic() - started, 4)
        return out
    tmp = None
    try:
        if storage.is_remote(root):
            tmp = tempfile.mkdtemp(prefix="longvid-audit-")
            local_root = tmp
            storage.download_file(uri, Path(tmp) / url)
        else:
            local_root = root
        local_uri = storage.join(local_root, url)
        found = verify_shard(local_root, info, rows)
        out["problems"] = [
            problem(p.shard, p.key, p.reason, p.message.replace(local_uri, uri)) for p in found
        ]
        path = Path(local_uri)
        out["bytes"] = path.stat().st_size
        content = content_pass(path, uri, url, by_key, opts)
        out["problems"] += content.pop("problems")
        out.update(content)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out["seconds"] = round(time.monotonic() - started, 4)
    return out

