"""Training checkpoints: written atomically, the newest complete one found on resume.

A checkpoint of global step ``N`` is a folder ``ckpt-<N:09d>/`` (under a local dir or an
``s3://`` prefix) holding::

    model.pt          the full model state dict (every part, trained or frozen)
    optimizer.pt      {"optimizer": AdamW state, "scheduler": LambdaLR state} of the stage
    rank-<r:05d>.pt   per rank: RNG states (python, numpy, torch CPU/CUDA) and the loader cursor
    state.json        TrainState, the configs a resume must match, world size
    manifest.json     written LAST: the file list with sizes — its presence means "complete"

Locally everything is written into ``ckpt-<N>.tmp/`` and the folder is renamed into place after
the manifest (a rename is atomic); on S3 each file is a completed upload and the manifest is
uploaded after all others. A process killed mid-write leaves a ``.tmp`` folder or a prefix
without a manifest: neither is ever picked by :func:`latest`, and the next save removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longvid import storage
from longvid.errors import FormatError, NotFoundError, StorageError

FORMAT = "longvid-train-ckpt/1"
MANIFEST = "manifest.json"
MODEL = "model.pt"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"
_NAME = re.compile(r"^ckpt-(\d{9})$")


def ckpt_name(step: int) -> str:
    return f"ckpt-{step:09d}"


def rank_file(rank: int) -> str:
    return f"rank-{rank:05d}.pt"


@dataclass(frozen=True)
class CheckpointRef:
    """A complete checkpoint: its folder URI, global step and manifest."""

    uri: str
    step: int
    manifest: dict[str, Any]

    @property
    def world_size(self) -> int:
        return int(self.manifest["world_size"])


# ------------------------------------------------------------------------------------ RNG
def rng_state() -> dict[str, Any]:
    """Every RNG the training process uses, in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    if "seed" in state:  # a rank the checkpoint did not have: its own stream from a seed
        random.seed(state["seed"])
        np.random.seed(state["seed"] % 2**32)
        torch.manual_seed(state["seed"])  # CPU and every CUDA device
        return
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------------- listing
def _children(dir_uri: str) -> dict[str, list[str]]:
    """Checkpoint folder name → its file names (only ``ckpt-<9 digits>`` folders)."""
    out: dict[str, list[str]] = {}
    if storage.is_remote(dir_uri):
        try:
            files = storage.list_files(dir_uri)
        except NotFoundError:
            return {}
        prefix = dir_uri.rstrip("/") + "/"
        for uri in files:
            rel = uri[len(prefix) :] if uri.startswith(prefix) else uri
            parts = rel.split("/")
            if len(parts) == 2 and _NAME.match(parts[0]):
                out.setdefault(parts[0], []).append(parts[1])
        return out
    root = Path(dir_uri)
    if not root.is_dir():
        return {}
    for child in root.iterdir():
        if child.is_dir() and _NAME.match(child.name):
            out[child.name] = [f.name for f in child.iterdir() if f.is_file()]
    return out


def _read_manifest(folder: str) -> dict[str, Any] | None:
    try:
        manifest = json.loads(storage.read_text(storage.join(folder, MANIFEST)))
    except (NotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest


def _is_complete(folder: str, manifest: dict[str, Any], names: list[str]) -> bool:
    files = manifest.get("files", {})
    if not all(name in names for name in files):
        return False
    if storage.is_remote(folder):
        return True  # each object is a completed upload; the manifest came after them
    return all(
        (Path(folder) / name).stat().st_size == size for name, size in files.items()
    )


def list_checkpoints(dir_uri: str) -> list[CheckpointRef]:
    """Complete checkpoints under ``dir_uri``, oldest first."""
    refs = []
    for name, files in _children(dir_uri).items():
        if MANIFEST not in files:
            continue
        folder = storage.join(dir_uri, name)
        manifest = _read_manifest(folder)
        if manifest is None or not _is_complete(folder, manifest, files):
            continue
        refs.append(CheckpointRef(folder, int(manifest["step"]), manifest))
    return sorted(refs, key=lambda r: r.step)


def latest(dir_uri: str) -> CheckpointRef | None:
    """The newest complete checkpoint, or None."""
    refs = list_checkpoints(dir_uri)
    return refs[-1] if refs else None


def _files_in(folder: str) -> list[str]:
    if storage.is_remote(folder):
        prefix = folder.rstrip("/") + "/"
        try:
            return [u[len(prefix) :] for u in storage.list_files(folder) if u.startswith(prefix)]
        except NotFoundError:
            return []
    p = Path(folder)
    return [f.name for f in p.iterdir() if f.is_file()] if p.is_dir() else []


def open_checkpoint(uri: str) -> CheckpointRef:
    """A checkpoint named by its folder (``--resume PATH``); NotFoundError when incomplete."""
    uri = uri.rstrip("/") if storage.is_remote(uri) else str(Path(uri))
    manifest = _read_manifest(uri)
    if manifest is None or not _is_complete(uri, manifest, _files_in(uri)):
        raise NotFoundError(f"{uri}: not a complete checkpoint (no valid {MANIFEST})")
    return CheckpointRef(uri, int(manifest["step"]), manifest)


# ----------------------------------------------------------------------------------- saving
def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointWriter:
    """Saves checkpoints of one run. Every rank calls :meth:`save` with the same step; rank 0
    writes the shared files and commits. ``barrier`` synchronises the ranks (no-op alone)."""

    def __init__(self, dir_uri: str, rank: int, world_size: int, keep_last: int,
                 barrier: Callable[[], None]):
        self.dir = dir_uri.rstrip("/") if storage.is_remote(dir_uri) else str(Path(dir_uri))
        self.remote = storage.is_remote(dir_uri)
        self.rank = rank
        self.world_size = world_size
        self.keep_last = keep_last
        self.barrier = barrier
        if not self.remote and rank == 0:
            Path(self.dir).mkdir(parents=True, exist_ok=True)

    def _put(self, folder: str, name: str, write: Callable[[Path], None]) -> None:
        """Write one file of the checkpoint (into the local temp folder, or upload to S3)."""
        if not self.remote:
            target = Path(folder) / name
            try:
                write(target)
            except Exception as exc:  # OSError, or torch's RuntimeError on a short write
                free = shutil.disk_usage(folder).free  # before the partial file goes
                target.unlink(missing_ok=True)
                raise StorageError(
                    f"{target}: could not write this checkpoint file ({exc}); {free} bytes were "
                    "free on its filesystem; the checkpoint was not committed"
                ) from None
            return
        with tempfile.TemporaryDirectory(prefix="longvid-ckpt-") as tmp:
            local = Path(tmp) / name
            write(local)
            storage.upload_file(local, storage.join(folder, name))

    def save(
        self,
        step: int,
        state: dict[str, Any],
        rank_payload: dict[str, Any],
        model_state: Callable[[], dict[str, Any]],
        optimizer_state: Callable[[], dict[str, Any]],
    ) -> str:
        """Write checkpoint ``step``; returns its URI. ``model_state`` / ``optimizer_state`` are
        called on rank 0 only."""
        name = ckpt_name(step)
        final = storage.join(self.dir, name) if self.remote else str(Path(self.dir) / name)
        work = final if self.remote else final + ".tmp"
        if self.rank == 0:
            if self.remote:
                storage.delete(storage.join(final, MANIFEST))  # uncommit an older copy first
            else:
                shutil.rmtree(work, ignore_errors=True)
                Path(work).mkdir(parents=True)
        self.barrier()
        self._put(work, rank_file(self.rank), lambda p: _torch_save(rank_payload, p))
        self.barrier()
        if self.rank == 0:
            try:
                self._put(work, MODEL, lambda p: _torch_save(model_state(), p))
                self._put(work, OPTIMIZER, lambda p: _torch_save(optimizer_state(), p))
                self._put(work, STATE, lambda p: p.write_text(json.dumps(state, indent=1)))
                self._commit(work, final, step)
            except BaseException:
                if not self.remote:  # a failed save leaves nothing behind (its space is freed)
                    shutil.rmtree(work, ignore_errors=True)
                raise
            self.prune()
        self.barrier()
        return final

    def _sizes(self, folder: str) -> dict[str, int]:
        names = [MODEL, OPTIMIZER, STATE] + [rank_file(r) for r in range(self.world_size)]
        sizes = {}
        for n in names:
            try:
                sizes[n] = storage.size(storage.join(folder, n))
            except NotFoundError:
                raise StorageError(
                    f"{folder}: {n} is missing after every rank saved; the checkpoint dir must "
                    "be shared by all nodes (a shared filesystem or s3://)"
                ) from None
        return sizes

    def _commit(self, work: str, final: str, step: int) -> None:
        manifest = {
            "format": FORMAT,
            "step": step,
            "world_size": self.world_size,
            "time": time.time(),
            "files": self._sizes(work),
        }
        self._put(work, MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1)))
        if self.remote:
            return
        w, f = Path(work), Path(final)
        _fsync_dir(w)
        old = None
        if f.exists():  # a rerun from an older checkpoint writes this step again
            old = f.with_name(f".{f.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(f, old)
        os.replace(w, f)
        _fsync_dir(f.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def prune(self) -> None:
        """Keep the newest ``keep_last`` complete checkpoints; drop the rest and stale temps."""
        refs = list_checkpoints(self.dir)
        for ref in refs[: max(0, len(refs) - self.keep_last)]:
            delete_checkpoint(ref.uri)
        if not self.remote:
            for stale in Path(self.dir).glob("ckpt-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)


def delete_checkpoint(uri: str) -> None:
    """Remove a checkpoint, uncommitting it first (manifest removed before the rest)."""
    if storage.is_remote(uri):
        storage.delete(storage.join(uri, MANIFEST))
        for f in storage.list_files(uri):
            storage.delete(f)
        return
    p = Path(uri)
    gone = p.with_name(f".{p.name}.deleting")
    os.replace(p, gone)
    shutil.rmtree(gone, ignore_errors=True)


# ---------------------------------------------------------------------------------- loading
@dataclass
class LoadedCheckpoint:
    ref: CheckpointRef
    state: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    rank: dict[str, Any]


def _torch_load(uri: str) -> Any:
    with storage.local_copy(uri) as path:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle / zip errors come in many types
            raise FormatError(f"{uri}: unreadable checkpoint file ({exc})") from None


def load_checkpoint(ref: CheckpointRef, rank: int) -> LoadedCheckpoint:
    """Read a checkpoint for ``rank``. With another world size than the checkpoint's, rank ``r``
    takes rank ``r mod old_world``'s loader cursor (the cursor counts global batches, so the data
    position is the same for every rank); a rank the checkpoint did not have gets its own RNG
    stream, seeded from (run seed, step, rank), never a copy of another rank's."""
    try:
        state = json.loads(storage.read_text(storage.join(ref.uri, STATE)))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{ref.uri}/{STATE}: not JSON ({exc})") from None
    per_rank = _torch_load(storage.join(ref.uri, rank_file(rank % ref.world_size)))
    if rank >= ref.world_size:
        blob = f"{state.get('seed')}\x1f{ref.step}\x1frank-rng\x1f{rank}".encode()
        per_rank["rng"] = {"seed": int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")}
    return LoadedCheckpoint(
        ref=ref,
        state=state,
        model=_torch_load(storage.join(ref.uri, MODEL)),
        optimizer=_torch_load(storage.join(ref.uri, OPTIMIZER)),
        rank=per_rank,
    )
