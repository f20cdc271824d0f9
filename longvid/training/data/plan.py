"""The epoch plan: which samples a rank sees, in which order. Pure functions of the catalog, the
stage config, the seed and the epoch; nothing seeds from time or pid.

The plan of an epoch is built in three steps:

1. **Draw counts.** The stage draws ``N`` samples; component ``c`` with weight ``w_c`` gets
   ``n_c`` of them by the largest-remainder rule, so ``|n_c - N·w_c/Σw| < 1`` for every
   component and ``Σ n_c = N`` exactly.
2. **Draws.** Component ``c`` walks seeded permutations of its pool (a new permutation each
   time the pool is used up) and takes the first ``n_c`` items.
3. **Interleave.** The multiset of component labels is shuffled with the stage seed and every
   position takes the next draw of its component.

The global sequence is cut into global batches of ``world_size · batch_size`` samples; rank
``r`` takes slice ``r`` of every global batch, so all ranks have the same number of steps. The
tail that does not fill a global batch is dropped, or padded with items from the start of the
epoch (flagged), as the stage's ``tail`` says.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from longvid.errors import ConfigError
from longvid.training.data.catalog import Catalog
from longvid.training.data.config import ImageComponent, StageData
from longvid.training.data.images import StageImages


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts (sha256; the same on every machine and run)."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(stable_seed(*parts)))


def largest_remainder(weights: list[float], total: int) -> list[int]:
    """Integer counts proportional to ``weights`` that sum to ``total`` (Hamilton's method).

    Each count is ``floor(total·w/Σw)`` plus one for the components with the largest
    fractional parts (ties go to the earlier component), so every count is within 1 of its
    exact share.
    """
    if total < 0 or not weights or any(w <= 0 for w in weights):
        raise ValueError(f"largest_remainder needs positive weights and total >= 0: {weights}")
    wsum = math.fsum(weights)
    exact = [total * w / wsum for w in weights]
    counts = [math.floor(x) for x in exact]
    left = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def component_pools(
    catalog: Catalog, cfg: StageData, images: StageImages | None = None
) -> list[np.ndarray]:
    """Loader row indices per mixture component. A catalog row goes to the first video
    component it matches; an image component owns its folder's rows (after the catalog's, see
    :class:`~longvid.training.data.images.StageImages`; read from ``cfg`` when not given).

    Raises ConfigError when the corpora hold no sample at all, or naming a component that
    selects no sample (its weight could not be met): a loader never starts with nothing to
    yield.
    """
    if images is None and cfg.image_components():
        images = StageImages(cfg, {}, len(catalog))
    videos = [c for c in cfg.mixture if not isinstance(c, ImageComponent)]
    if videos and len(catalog) == 0:
        raise ConfigError(
            f"stage {cfg.stage!r}: the corpora hold no samples ({catalog.describe()}); "
            "nothing to load"
        )
    taken = np.zeros(len(catalog), dtype=bool)
    pools = []
    for c, comp in enumerate(cfg.mixture):
        if isinstance(comp, ImageComponent):
            assert images is not None
            pools.append(images.pool(c))
            continue
        mask = ~taken
        if comp.sources:
            mask &= catalog.sources.isin(comp.sources)
        if comp.buckets:
            mask &= catalog.buckets.isin(comp.buckets)
        if comp.min_duration is not None:
            mask &= catalog.durations >= comp.min_duration
        if comp.max_duration is not None:
            mask &= catalog.durations < comp.max_duration
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            raise ConfigError(
                f"stage {cfg.stage!r}: mixture component {comp.name!r} selects no sample "
                f"(sources={comp.sources}, buckets={comp.buckets}, "
                f"duration in [{comp.min_duration}, {comp.max_duration})) in {catalog.describe()}"
            )
        taken[idx] = True
        pools.append(idx)
    return pools


@dataclass(frozen=True)
class EpochPlan:
    """One epoch of one stage for all ranks.

    ``rows[j]`` is the catalog row of global position ``j`` (length ``steps · world · batch``),
    ``components[j]`` its mixture component, ``padded[j]`` whether it is tail padding.
    """

    epoch: int
    world_size: int
    batch_size: int
    num_drawn: int  # N: real draws before padding or dropping
    rows: np.ndarray
    components: np.ndarray
    padded: np.ndarray

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size

    @property
    def steps(self) -> int:
        """Steps (batches) every rank takes in this epoch."""
        return len(self.rows) // self.global_batch

    def positions(self, rank: int, step: int) -> np.ndarray:
        """Global positions of rank ``rank``'s batch ``step``."""
        start = step * self.global_batch + rank * self.batch_size
        return np.arange(start, start + self.batch_size)

    def consumed_per_component(self, steps_done: int, names: list[str]) -> dict[str, int]:
        """Real (unpadded) draws per component in the first ``steps_done`` global batches."""
        end = steps_done * self.global_batch
        comps = self.components[:end][~self.padded[:end]]
        counts = np.bincount(comps, minlength=len(names))
        return {name: int(counts[i]) for i, name in enumerate(names)}


def draw_sequence(
    pools: list[np.ndarray], counts: list[int], cfg: StageData, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's global draw sequence: (catalog rows, component ids), both of length Σcounts."""
    total = sum(counts)
    labels = np.repeat(np.arange(len(pools), dtype=np.int32), counts)
    rng_for(cfg.seed, cfg.stage, epoch, "interleave").shuffle(labels)
    rows = np.empty(total, dtype=np.int64)
    for c, (pool, n) in enumerate(zip(pools, counts, strict=True)):
        if n == 0:
            continue
        name = cfg.mixture[c].name
        rounds = -(-n // len(pool))
        draws = np.concatenate(
            [
                pool[rng_for(cfg.seed, cfg.stage, epoch, name, r).permutation(len(pool))]
                for r in range(rounds)
            ]
        )[:n]
        rows[labels == c] = draws
    return rows, labels


def plan_epoch(
    catalog: Catalog, cfg: StageData, epoch: int, world_size: int, pools=None
) -> EpochPlan:
    """The plan of ``epoch`` (see the module docstring). ``pools`` may be passed to reuse them."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    pools = component_pools(catalog, cfg) if pools is None else pools
    total = cfg.num_samples if cfg.num_samples is not None else int(sum(len(p) for p in pools))
    counts = largest_remainder([c.weight for c in cfg.mixture], total)
    rows, comps = draw_sequence(pools, counts, cfg, epoch)
    gb = world_size * cfg.batch_size
    if cfg.tail == "drop":
        keep = total // gb * gb
        if keep == 0:
            raise ConfigError(
                f"stage {cfg.stage!r}: {total} samples per epoch do not fill one global batch of "
                f"{gb} (world size {world_size} x batch {cfg.batch_size}); use tail: pad or "
                "more samples"
            )
        rows, comps = rows[:keep], comps[:keep]
        padded = np.zeros(keep, dtype=bool)
    else:
        full = -(-total // gb) * gb
        extra = full - total
        reps = -(-extra // total) if extra else 0
        pad_idx = np.tile(np.arange(total), max(reps, 0))[:extra]
        rows = np.concatenate([rows, rows[pad_idx]])
        comps = np.concatenate([comps, comps[pad_idx]])
        padded = np.concatenate([np.zeros(total, dtype=bool), np.ones(extra, dtype=bool)])
    return EpochPlan(
        epoch=epoch,
        world_size=world_size,
        batch_size=cfg.batch_size,
        num_drawn=total,
        rows=rows,
        components=comps,
        padded=padded,
    )


def substitute_candidates(
    pool: np.ndarray, cfg: StageData, epoch: int, key: str, attempts: int
) -> list[int]:
    """Catalog rows to try, in order, when the sample ``key`` fails to decode.

    A hash-determined walk through the same component's pool (keeping the mixture), so every
    run and every worker count substitutes the same sample.
    """
    if len(pool) == 0:
        return []
    rng = rng_for(cfg.seed, cfg.stage, epoch, key, "substitute")
    order = pool[rng.permutation(len(pool))]
    return [int(r) for r in order[:attempts]]
