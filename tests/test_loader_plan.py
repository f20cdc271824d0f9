"""The loader's pure parts: frame-count formula, midpoint times, draw counts, epoch plans."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.errors import ConfigError
from longvid.training.data.catalog import load_catalog
from longvid.training.data.config import MixtureComponent, StageData
from longvid.training.data.plan import (
    component_pools,
    largest_remainder,
    plan_epoch,
    stable_seed,
)
from longvid.training.data.sampling import frame_count, midpoint_times

# --- T = clamp(4·floor(D/4), T_min, T_max) ----------------------------------------------------


@pytest.mark.parametrize(
    "duration, t_min, t_max, want",
    [
        (1.0, 4, 8, 4),  # very short: up to t_min
        (7.9, 4, 512, 4),
        (8.0, 4, 512, 8),
        (367.3, 64, 512, 364),  # about 1 fps, a multiple of 4
        (10.0, 64, 512, 64),  # densely sampled short video
        (3599.0, 64, 512, 512),  # long video, capped
        (63.99, 64, 512, 64),
        (67.5, 64, 512, 64),
        (68.0, 64, 512, 68),
    ],
)
def test_frame_count_formula(duration, t_min, t_max, want):
    assert frame_count(duration, t_min, t_max) == want


@given(
    d=st.floats(min_value=0.01, max_value=10_000, allow_nan=False),
    lo=st.integers(1, 32).map(lambda x: 4 * x),
    span=st.integers(0, 128).map(lambda x: 4 * x),
)
def test_frame_count_properties(d, lo, span):
    hi = lo + span
    t = frame_count(d, lo, hi)
    assert t % 4 == 0 and lo <= t <= hi
    assert t == min(max(4 * math.floor(d / 4), lo), hi)


def test_frame_count_rejects_bad_duration():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="duration"):
            frame_count(bad, 4, 8)


def test_midpoint_times_exact():
    np.testing.assert_allclose(midpoint_times(8.0, 4), [1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(midpoint_times(10.0, 8), [0.625 + 1.25 * i for i in range(8)])
    t = midpoint_times(367.3, 364)
    assert t[0] > 0 and t[-1] < 367.3
    np.testing.assert_allclose(np.diff(t), 367.3 / 364)


# --- config ---------------------------------------------------------------------------------


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of the clip length"):
        StageData(t_min=6)
    with pytest.raises(ValueError, match="t_min 128 > t_max 64"):
        StageData(t_min=128, t_max=64)
    with pytest.raises(ValueError, match="unique"):
        StageData(
            mixture=[MixtureComponent(name="a", weight=1), MixtureComponent(name="a", weight=2)]
        )
    with pytest.raises(ValueError, match="unknown|extra"):
        StageData(batch_sise=3)


def test_sequence_fields_exclude_runtime_knobs():
    a = StageData(num_workers=0, corpora=["/a"])
    b = StageData(num_workers=4, corpora=["s3://b/a"], prefetch_factor=8)
    assert a.sequence_fields() == b.sequence_fields()
    assert StageData(t_max=64).sequence_fields() != a.sequence_fields()


# --- largest remainder ------------------------------------------------------------------------


def test_largest_remainder_examples():
    assert largest_remainder([1, 1, 1], 10) == [4, 3, 3]  # tie → earlier component
    assert largest_remainder([0.5, 0.3, 0.2], 7) == [4, 2, 1]  # exact 3.5, 2.1, 1.4
    assert largest_remainder([3, 1], 30) == [23, 7]  # 22.5, 7.5: tie → first


@given(
    weights=st.lists(st.floats(0.01, 100, allow_nan=False), min_size=1, max_size=8),
    total=st.integers(0, 100_000),
)
def test_largest_remainder_is_within_one(weights, total):
    counts = largest_remainder(weights, total)
    assert sum(counts) == total
    wsum = math.fsum(weights)
    for c, w in zip(counts, weights, strict=True):
        assert abs(c - total * w / wsum) < 1 + 1e-9


def test_stable_seed_is_fixed():
    # A pure function of its parts: the same value in every process and on every machine.
    assert stable_seed(0, "stage", 1) == stable_seed(0, "stage", 1)
    assert stable_seed(0, "stage", 1) != stable_seed(0, "stage", 2)
    assert stable_seed("a") == int.from_bytes(
        __import__("hashlib").sha256(b"a").digest()[:8], "little"
    )


# --- plans over a real catalog ------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(loader_corpus):
    return load_catalog([loader_corpus.root])


def _cfg(corpus_root: str, **kw) -> StageData:
    kw.setdefault(
        "mixture",
        [
            MixtureComponent(name="long", weight=1, buckets=["long"]),
            MixtureComponent(name="webvid", weight=1, sources=["webvid"]),
            MixtureComponent(name="rest", weight=2),
        ],
    )
    return StageData(corpora=[corpus_root], t_min=4, t_max=8, **kw)


def test_pools_are_disjoint_first_match(catalog, loader_corpus):
    cfg = _cfg(loader_corpus.root)
    pools = component_pools(catalog, cfg)
    assert [len(p) for p in pools] == [4, 6, 8]
    assert set(catalog.buckets[pools[0]]) == {"long"}
    assert set(catalog.sources[pools[1]]) == {"webvid"}
    assert set(catalog.sources[pools[2]]) == {"howto100m"}
    bad = _cfg(loader_corpus.root, mixture=[MixtureComponent(name="x", weight=1, sources=["nope"])])
    with pytest.raises(ConfigError, match="component 'x' selects no sample"):
        component_pools(catalog, bad)


def test_plan_is_pure_and_epoch_dependent(catalog, loader_corpus):
    cfg = _cfg(loader_corpus.root, num_samples=40, batch_size=3)
    a = plan_epoch(catalog, cfg, 0, 2)
    b = plan_epoch(catalog, cfg, 0, 2)
    np.testing.assert_array_equal(a.rows, b.rows)
    c = plan_epoch(catalog, cfg, 1, 2)
    assert not np.array_equal(a.rows, c.rows)
    d = plan_epoch(catalog, _cfg(loader_corpus.root, num_samples=40, batch_size=3, seed=1), 0, 2)
    assert not np.array_equal(a.rows, d.rows)


def test_plan_draw_counts_and_tail(catalog, loader_corpus):
    # N = 40 with weights 1:1:2 → exact shares 10, 10, 20; every component repeats its pool.
    cfg = _cfg(loader_corpus.root, num_samples=40, batch_size=3, tail="drop")
    plan = plan_epoch(catalog, cfg, 0, 2)
    assert plan.steps == 6 and len(plan.rows) == 36  # 40 // 6 global batches of 6
    full = plan_epoch(catalog, _cfg(loader_corpus.root, num_samples=40, batch_size=4), 0, 2)
    counts = np.bincount(full.components, minlength=3)
    assert counts.tolist() == [10, 10, 20]  # 40 // 8 = 5 steps, nothing dropped
    # each pass over a pool is a permutation: 10 draws from 4 long clips = 3, 3, 2, 2 ... exactly
    long_rows = full.rows[full.components == 0]
    per_row = np.bincount(long_rows, minlength=len(catalog))[long_rows].tolist()
    assert sorted(set(per_row)) == [2, 3]
    padded = plan_epoch(
        catalog, _cfg(loader_corpus.root, num_samples=40, batch_size=3, tail="pad"), 0, 2
    )
    assert padded.steps == 7 and padded.padded.sum() == 2
    np.testing.assert_array_equal(padded.rows[40:], padded.rows[:2])


def test_plan_refuses_too_few_for_one_global_batch(catalog, loader_corpus):
    cfg = _cfg(loader_corpus.root, num_samples=5, batch_size=4, tail="drop")
    with pytest.raises(ConfigError, match="do not fill one global batch"):
        plan_epoch(catalog, cfg, 0, 2)
    assert plan_epoch(catalog, cfg.model_copy(update={"tail": "pad"}), 0, 2).steps == 1


@settings(max_examples=30, deadline=None)
@given(
    world=st.integers(1, 4),
    batch=st.integers(1, 5),
    n=st.integers(8, 200),
    tail=st.sampled_from(["drop", "pad"]),
)
def test_ranks_get_equal_steps(catalog, loader_corpus, world, batch, n, tail):
    cfg = _cfg(loader_corpus.root, num_samples=n, batch_size=batch, tail=tail)
    if tail == "drop" and n < world * batch:
        return
    plan = plan_epoch(catalog, cfg, 0, world)
    steps = n // (world * batch) if tail == "drop" else -(-n // (world * batch))
    assert plan.steps == steps
    seen = np.concatenate([plan.positions(r, s) for s in range(plan.steps) for r in range(world)])
    # every rank's batch is a distinct slice; together they cover the plan exactly once
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(plan.rows)))


def test_example_stage_config_loads_and_comments_every_key():
    from pathlib import Path

    from longvid.config import load_config

    path = Path(__file__).resolve().parents[1] / "conf" / "train" / "loader_stage3.yaml"
    cfg = load_config(path, StageData, ["corpora=[/data/a, s3://b/c]"])
    assert cfg.corpora == ["/data/a", "s3://b/c"]
    assert [c.name for c in cfg.mixture] == ["image_like", "short", "long"]
    assert (cfg.t_min, cfg.t_max, cfg.resolution) == (64, 512, 224)
    top = [line for line in path.read_text().splitlines() if line and line[0].isalpha()]
    assert {line.split(":")[0] for line in top} == set(StageData.model_fields)
    assert all("#" in line for line in top)
