"""The streaming loader: built corpora (local or s3://) → batches for one rank, with an exact,
small resume cursor.

    loader = make_loader(stage_cfg, rank, world_size, tokenizer)
    loader.load_state_dict(ckpt["data"])          # optional: resume
    for batch in loader:                           # the rest of the current epoch
        ...train...
        ckpt["data"] = loader.state_dict()         # counted here, at the consumer

How the rules hold (``docs/loader.md``, "Loader rules"):

* The epoch's sample sequence is :func:`~longvid.training.data.plan.plan_epoch` — a pure
  function of (catalog fingerprint, stage config, seed, epoch). Rank ``r``'s batch ``i`` is a
  fixed slice of global batch ``i``; every rank has ``steps`` batches.
* A DataLoader with ``W`` workers asks worker ``i % W`` for its ``i``-th batch, so worker ``w``
  builds exactly the batches ``start + w, start + w + W, ...``: the batch sequence is the same
  for every ``W`` (0 = in-process).
* The cursor counts the batches the consumer took (``step``), never what workers prefetched;
  ``load_state_dict`` makes the next iteration start at the following batch, with any worker
  count, and refuses a cursor from another manifest or stage config.
* A sample that fails to decode is replaced by a deterministic substitute from the same
  mixture component (:func:`~longvid.training.data.plan.substitute_candidates`) and counted in
  ``batch["substituted"]`` and the cursor; storage failures stop the run.
* Image components (:mod:`~longvid.training.data.images`) add rows after the catalog's; the
  plan, substitutes and cursor treat them as any other row, and the cursor also records each
  image folder's fingerprint (a resume against an edited ``captions.jsonl`` is refused).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from longvid import storage
from longvid.config import config_diff
from longvid.errors import LongvidError
from longvid.training.data.catalog import Catalog, load_catalog
from longvid.training.data.config import StageData
from longvid.training.data.decode import FrameDecoder, make_decoder
from longvid.training.data.images import ImageFolder, StageImages, load_image_folders
from longvid.training.data.plan import (
    EpochPlan,
    component_pools,
    plan_epoch,
    stable_seed,
    substitute_candidates,
)
from longvid.training.data.sample import LoadedSample, SampleError, load_frames
from longvid.training.data.text import tokenize_sample

log = logging.getLogger(__name__)

CURSOR_FORMAT = "longvid-loader-cursor/1"
IGNORE_INDEX = -100


class ResumeError(LongvidError):
    """A cursor that cannot be resumed here (other manifest, stage config, or world size)."""


class LoaderError(LongvidError):
    """Loading a batch failed for a reason that a substitute cannot fix (a missing or truncated
    shard, every substitute failing). One-argument constructor: DataLoader workers re-raise it
    in the training process with its type intact."""


def stage_fingerprint(cfg: StageData) -> str:
    """Hash of the stage's sequence fields (what a resume must match)."""
    blob = json.dumps(cfg.sequence_fields(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def normalize_frames(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``[T, 3, S, S]`` → float32 ``(x / 255 - mean) / std``, on the frames' device.

    The loader applies it in its workers (``frames_dtype: float32``); with
    ``frames_dtype: uint8`` the trainer applies it after moving the frames to the GPU, which
    sends a quarter of the bytes through the DataLoader and the host-to-device copy.
    """
    std_t = torch.tensor(std, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    out = frames.to(torch.float32)
    out.mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)
    return out


class StageDataset(IterableDataset):
    """Batches ``start_step, start_step + 1, ...`` of one rank in one epoch.

    In a DataLoader worker ``w`` of ``W`` it yields only the batches ``≡ start_step + w (mod W)``
    (see the module docstring). Each item is a whole collated batch (use ``batch_size=None``).
    """

    def __init__(
        self,
        catalog: Catalog,
        cfg: StageData,
        pools: list[np.ndarray],
        plan: EpochPlan,
        rank: int,
        start_step: int,
        tokenizer: Any | None,
        images: StageImages | None = None,
    ):
        self.catalog = catalog
        self.images = images
        self.cfg = cfg
        self.pools = pools
        self.plan = plan
        self.rank = rank
        self.start_step = start_step
        self.tokenizer = tokenizer
        self._decoder: FrameDecoder | None = None
        self._bad: dict[int, str] = {}  # catalog row → why it failed (per process)

    # -- one sample ------------------------------------------------------------------------
    def decoder(self) -> FrameDecoder:
        if self._decoder is None:
            self._decoder = make_decoder(
                self.cfg.decode_backend, self.cfg.decode_device, self.cfg.decode_threads
            )
        return self._decoder

    def key_of(self, row_idx: int) -> str:
        """The sample key of a loader row (a catalog key, or an image's relative path)."""
        if row_idx < len(self.catalog):
            return str(self.catalog.keys[row_idx])
        assert self.images is not None
        return self.images.key(row_idx)

    def load(self, row_idx: int) -> LoadedSample:
        """One loader row → a sample, or SampleError."""
        if row_idx in self._bad:
            raise SampleError(self._bad[row_idx], "known_bad", "failed before in this worker")
        try:
            if row_idx >= len(self.catalog):
                return self.load_image(row_idx)
            row = self.catalog.row(row_idx)
            meta, duration, times, frames = load_frames(row, self.cfg, self.decoder())
        except SampleError as exc:
            self._bad[row_idx] = str(exc)
            raise
        sample = LoadedSample(
            key=row["key"],
            source=row["source"] or "",
            duration=duration,
            times=times,
            frames=frames,
            conversations=[],
        )
        tokenize_sample(sample, meta, row, self.cfg, self.tokenizer)
        return sample

    def load_image(self, row_idx: int) -> LoadedSample:
        """An image row → a one-frame sample with its caption's tokens (or SampleError)."""
        assert self.images is not None
        sample, row, question = self.images.load(row_idx, self.cfg.resolution)
        tokenize_sample(sample, {}, row, self.cfg, self.tokenizer, question=question)
        return sample

    def load_or_substitute(self, row_idx: int, component: int) -> tuple[LoadedSample, bool]:
        """The sample at ``row_idx``, or its first substitute that loads; (sample, replaced)."""
        try:
            return self.load(row_idx), False
        except SampleError as first:
            key = self.key_of(row_idx)
            tries = substitute_candidates(
                self.pools[component], self.cfg, self.plan.epoch, key, self.cfg.max_substitutes + 1
            )
            tries = [c for c in tries if c != row_idx][: self.cfg.max_substitutes]
            errors = [str(first)]
            for cand in tries:
                try:
                    sample = self.load(cand)
                except SampleError as exc:
                    errors.append(str(exc))
                    continue
                log.warning("sample %s failed (%s); substituted by %s", key, first, sample.key)
                return sample, True
            raise LoaderError(
                f"sample {key!r} failed to load and none of its {len(tries)} substitutes "
                f"loaded either: {' | '.join(errors[:4])}"
            ) from None

    # -- one batch -------------------------------------------------------------------------
    def batch(self, step: int) -> dict[str, Any]:
        pos = self.plan.positions(self.rank, step)
        samples, replaced = [], []
        for p in pos:
            row_idx = int(self.plan.rows[p])
            sample, was_replaced = self.load_or_substitute(row_idx, int(self.plan.components[p]))
            samples.append(sample)
            if was_replaced:
                replaced.append(self.key_of(row_idx))
        out = collate(samples, self.tokenizer)
        if self.cfg.frames_dtype == "float32":
            out["frames"] = [
                normalize_frames(s.frames, self.cfg.mean, self.cfg.std) for s in samples
            ]
        else:
            out["frames"] = [s.frames for s in samples]
        out["planned_keys"] = [self.key_of(int(self.plan.rows[p])) for p in pos]
        out["components"] = [self.cfg.mixture[int(self.plan.components[p])].name for p in pos]
        out["padded"] = torch.from_numpy(self.plan.padded[pos].copy())
        out["substituted"] = len(replaced)
        out["replaced"] = replaced
        out["epoch"] = self.plan.epoch
        out["step"] = step
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        if info is not None:
            torch.set_num_threads(1)  # W workers already use the cores
        for step in range(self.start_step + wid, self.plan.steps, workers):
            try:
                batch = self.batch(step)
            except LoaderError:
                raise
            except LongvidError as exc:  # typed errors with richer constructors → LoaderError
                raise LoaderError(
                    f"epoch {self.plan.epoch} step {step} rank {self.rank}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            yield batch


def collate(samples: list[LoadedSample], tokenizer: Any | None) -> dict[str, Any]:
    """Batch fields other than frames: keys, durations, frame counts/times, padded text."""
    out: dict[str, Any] = {
        "keys": [s.key for s in samples],
        "sources": [s.source for s in samples],
        "durations": torch.tensor([s.duration for s in samples], dtype=torch.float64),
        "n_frames": torch.tensor([len(s.times) for s in samples], dtype=torch.int64),
        "is_image": torch.tensor([s.is_image for s in samples], dtype=torch.bool),
        "frame_times": [torch.from_numpy(s.times) for s in samples],
    }
    if tokenizer is None:
        return out
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    length = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.int64)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.int64)
    mask = torch.zeros((len(samples), length), dtype=torch.int64)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        ids[i, :n] = s.input_ids
        labels[i, :n] = s.labels
        mask[i, :n] = 1
    out.update(input_ids=ids, labels=labels, attention_mask=mask)
    return out


class StatefulLoader:
    """Iterates one rank's batches; ``state_dict()`` / ``load_state_dict()`` resume exactly.

    Iterating yields the remaining batches of the current epoch, then moves to the next epoch
    (so ``for epoch in range(E): for batch in loader:`` walks E epochs). ``len(loader)`` is the
    number of batches per epoch, the same on every rank.
    """

    def __init__(
        self,
        cfg: StageData,
        catalog: Catalog,
        rank: int,
        world_size: int,
        tokenizer: Any | None = None,
        images: Mapping[str, ImageFolder] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.cfg = cfg
        self.catalog = catalog
        self.rank = rank
        self.world_size = world_size
        self.tokenizer = tokenizer
        # image rows follow the catalog's; folders not given are read here
        self.images = StageImages(cfg, images or {}, len(catalog))
        self.pools = component_pools(catalog, cfg, self.images)
        self.epoch = 0
        self.step = 0
        self.substituted = 0
        self._plans: dict[int, EpochPlan] = {}
        self.plan(0)  # fails early when the stage cannot fill one global batch

    # -- plan ------------------------------------------------------------------------------
    def plan(self, epoch: int) -> EpochPlan:
        if epoch not in self._plans:
            self._plans = {
                epoch: plan_epoch(self.catalog, self.cfg, epoch, self.world_size, self.pools)
            }
        return self._plans[epoch]

    def __len__(self) -> int:
        return self.plan(self.epoch).steps

    def _normalise_position(self) -> None:
        if self.step >= self.plan(self.epoch).steps:
            self.epoch += 1
            self.step = 0

    # -- iteration -------------------------------------------------------------------------
    def dataset(self) -> StageDataset:
        """The dataset of the rest of the current epoch (what :meth:`__iter__` loads from)."""
        self._normalise_position()
        return StageDataset(
            self.catalog,
            self.cfg,
            self.pools,
            self.plan(self.epoch),
            self.rank,
            self.step,
            self.tokenizer,
            self.images,
        )

    def dataloader(self) -> DataLoader:
        ds = self.dataset()
        workers = self.cfg.num_workers
        return DataLoader(
            ds,
            batch_size=None,
            num_workers=workers,
            prefetch_factor=self.cfg.prefetch_factor if workers > 0 else None,
            # batches decoded on a GPU are already there; only CPU tensors can be pinned
            pin_memory=self.cfg.pin_memory and self.cfg.decode_device == "cpu",
            persistent_workers=False,
            worker_init_fn=_worker_init,
            # fork shares the catalog with the workers instead of pickling it
            multiprocessing_context="fork" if workers > 0 else None,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        loader = self.dataloader()
        epoch = self.epoch
        for batch in _start_workers(loader):
            if batch["epoch"] != epoch or batch["step"] != self.step:
                raise LoaderError(
                    f"loader out of order: expected epoch {epoch} step {self.step}, got "
                    f"epoch {batch['epoch']} step {batch['step']}"
                )
            self.step += 1
            self.substituted += batch["substituted"]
            yield batch
        self._normalise_position()

    # -- cursor ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The resume cursor: small, JSON-able; counts the batches the consumer took."""
        epoch, step = self.epoch, self.step
        if step >= self.plan(epoch).steps:
            epoch, step = epoch + 1, 0
        plan = self.plan(epoch)
        names = [c.name for c in self.cfg.mixture]
        return {
            "format": CURSOR_FORMAT,
            "stage": self.cfg.stage,
            "seed": self.cfg.seed,
            "epoch": epoch,
            "step": step,
            "samples_consumed": step * plan.global_batch,
            "consumed_per_component": plan.consumed_per_component(step, names),
            "world_size": self.world_size,
            "rank": self.rank,
            "batch_size": self.cfg.batch_size,
            "substituted": self.substituted,
            "manifest_fingerprint": self.catalog.fingerprint,
            "corpus_fingerprints": list(self.catalog.corpus_fingerprints),
            "image_fingerprints": self.images.fingerprints(),
            "stage_fingerprint": stage_fingerprint(self.cfg),
            "stage_config": self.cfg.sequence_fields(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a cursor; refuse (ResumeError, saying what changed) when the manifest,
        the stage config or the batch layout no longer matches."""
        if not isinstance(state, dict) or state.get("format") != CURSOR_FORMAT:
            raise ResumeError(
                f"not a loader cursor (format {state.get('format')!r})"
                if isinstance(state, dict)
                else "not a loader cursor"
            )
        if state["manifest_fingerprint"] != self.catalog.fingerprint:
            old = state.get("corpus_fingerprints", [])
            new = list(self.catalog.corpus_fingerprints)
            changed = [
                root
                for i, root in enumerate(self.catalog.roots)
                if i >= len(old) or old[i] != new[i]
            ]
            raise ResumeError(
                f"resume refused for stage {self.cfg.stage!r}: the manifest changed "
                f"(fingerprint {state['manifest_fingerprint'][:12]} → "
                f"{self.catalog.fingerprint[:12]}; changed corpora: {changed or 'their number'})"
            )
        if state["stage_fingerprint"] != stage_fingerprint(self.cfg):
            changes = config_diff(state.get("stage_config", {}), self.cfg.sequence_fields())
            raise ResumeError(
                f"resume refused for stage {self.cfg.stage!r}: the stage config changed: "
                + ("; ".join(changes) or "(fingerprint differs)")
            )
        old_images, new_images = state.get("image_fingerprints", {}), self.images.fingerprints()
        if old_images != new_images:
            changed = sorted(
                n for n in set(old_images) | set(new_images)
                if old_images.get(n) != new_images.get(n)
            )
            raise ResumeError(
                f"resume refused for stage {self.cfg.stage!r}: the captions.jsonl of image "
                f"component(s) {changed} changed"
            )
        epoch, consumed = int(state["epoch"]), int(state["samples_consumed"])
        plan = self.plan(epoch)
        if consumed % plan.global_batch:
            raise ResumeError(
                f"resume refused for stage {self.cfg.stage!r}: {consumed} samples consumed "
                f"(world size {state['world_size']}) is not a whole number of global batches "
                f"of {plan.global_batch} at world size {self.world_size}"
            )
        self.epoch, self.step = epoch, consumed // plan.global_batch
        self.substituted = int(state.get("substituted", 0))


def _start_workers(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """``iter(loader)``, forking its workers with the garbage collector's view frozen.

    A forked worker inherits every object of the training process, garbage included. Left to
    its own collector, a worker may finalise an inherited DataLoader iterator or queue (from an
    earlier epoch or loader) and deadlock on a lock whose owner thread did not survive the fork.
    So: collect here first, then freeze what exists, so the workers' collections skip all of it
    (which also keeps the catalog's pages shared instead of copied on write).
    """
    if loader.num_workers == 0:
        return iter(loader)
    gc.collect()
    gc.freeze()
    try:
        return iter(loader)  # the multiprocessing iterator forks all workers here
    finally:
        gc.unfreeze()


def _worker_init(worker_id: int) -> None:
    # Rust tokenizers' own thread pool is unsafe after fork and the cores are taken anyway.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def make_loader(
    cfg: StageData,
    rank: int | None = None,
    world_size: int | None = None,
    tokenizer: Any | None = None,
    *,
    catalog: Catalog | None = None,
    images: Mapping[str, ImageFolder] | None = None,
) -> StatefulLoader:
    """The stage's loader for one rank (``rank``/``world_size`` default to torch.distributed's,
    else 0/1). ``tokenizer`` None leaves out the text fields. ``catalog`` reuses a loaded one,
    ``images`` loaded image folders (by root; the stage's others are read here)."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank, world_size = rank or 0, world_size or 1
    if cfg.s3 is not None:
        storage.configure(cfg.s3)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    catalog = catalog if catalog is not None else load_catalog(cfg.corpora, cfg.catalog_cache)
    if images is None:
        images = load_image_folders(c.images for _, c in cfg.image_components())
    return StatefulLoader(cfg, catalog, rank, world_size, tokenizer, images)


__all__ = [
    "normalize_frames",
    "LoaderError",
    "ResumeError",
    "StageDataset",
    "StatefulLoader",
    "collate",
    "make_loader",
    "stable_seed",
    "stage_fingerprint",
]
