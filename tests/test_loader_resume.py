"""Exact resume as a property: kill at random steps, resume with another worker count (and on
two gloo ranks), and the consumed key sequence equals the uninterrupted run's."""

from __future__ import annotations

import json
import os
import random
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longvid.training.data import ResumeError, make_loader
from longvid.training.data.catalog import load_catalog
from longvid.training.data.config import MixtureComponent, StageData
from longvid.training.data.plan import plan_epoch
from tests.fixtures.loader_corpus import ClipSpec, default_specs


def stage(root: str, **kw) -> StageData:
    """A small, fast stage: 4 frames per clip at 16 px, 2 samples per batch."""
    base = dict(
        stage="resume-test",
        corpora=[root],
        mixture=[
            MixtureComponent(name="long", weight=1, buckets=["long"]),
            MixtureComponent(name="short", weight=2, buckets=["short"]),
        ],
        num_samples=20,
        batch_size=2,
        t_min=4,
        t_max=4,
        resolution=16,
        seed=7,
        num_workers=0,
    )
    base.update(kw)
    return StageData(**base)


def run_keys(loader, steps: int) -> list[list[str]]:
    """Keys of the next ``steps`` batches (crossing epochs when needed), as the consumer sees."""
    out: list[list[str]] = []
    while len(out) < steps:
        for batch in loader:
            out.append(batch["keys"])
            if len(out) == steps:
                break
    return out


@pytest.fixture(scope="module")
def catalog(loader_corpus):
    return load_catalog([loader_corpus.root])


@pytest.fixture(scope="module")
def reference(loader_corpus, catalog):
    """Two uninterrupted epochs with the loader in-process (0 workers)."""
    loader = make_loader(stage(loader_corpus.root), 0, 1, catalog=catalog)
    assert len(loader) == 10
    return run_keys(loader, 20)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kill=st.integers(0, 19),
    before=st.sampled_from([0, 1, 2]),
    after=st.sampled_from([0, 1, 2]),
)
def test_resume_equals_uninterrupted_run(loader_corpus, catalog, reference, kill, before, after):
    cfg = stage(loader_corpus.root)
    first = make_loader(cfg.model_copy(update={"num_workers": before}), 0, 1, catalog=catalog)
    seen = run_keys(first, kill)
    cursor = json.loads(json.dumps(first.state_dict()))  # a checkpoint stores it as JSON
    del first
    second = make_loader(cfg.model_copy(update={"num_workers": after}), 0, 1, catalog=catalog)
    second.load_state_dict(cursor)
    seen += run_keys(second, 20 - kill)
    assert seen == reference


def test_cursor_is_small_and_counted_at_the_consumer(loader_corpus, catalog, reference):
    cfg = stage(loader_corpus.root, num_workers=2, prefetch_factor=4)
    loader = make_loader(cfg, 0, 1, catalog=catalog)
    it = iter(loader)
    for _ in range(3):
        next(it)  # workers have prefetched further; the cursor must say 3
    state = loader.state_dict()
    assert (state["epoch"], state["step"], state["samples_consumed"]) == (0, 3, 6)
    assert sum(state["consumed_per_component"].values()) == 6
    assert len(json.dumps(state)) < 4096
    del it
    # the last batch of an epoch: the cursor points at the next epoch's start
    run_keys(loader, 7)
    state = loader.state_dict()
    assert (state["epoch"], state["step"]) == (1, 0)
    again = make_loader(cfg, 0, 1, catalog=catalog)
    again.load_state_dict(state)
    assert run_keys(again, 2) == reference[10:12]


def test_world_size_change_continues_the_global_sequence(loader_corpus, catalog):
    cfg = stage(loader_corpus.root)
    ranks = [make_loader(cfg, r, 2, catalog=catalog) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5  # 20 samples / (2 ranks x 2)
    for loader in ranks:
        run_keys(loader, 2)
    cursor = ranks[0].state_dict()
    assert cursor["samples_consumed"] == 8
    single = make_loader(cfg, 0, 1, catalog=catalog)
    single.load_state_dict(cursor)
    plan = plan_epoch(catalog, cfg, 0, 1)
    expected = [[catalog.keys[r] for r in plan.rows[i : i + 2]] for i in range(8, 20, 2)]
    assert run_keys(single, 6) == expected
    # 3 ranks: 8 consumed samples are not whole global batches of 6
    with pytest.raises(ResumeError, match="not a whole number of global batches"):
        make_loader(cfg, 0, 3, catalog=catalog).load_state_dict(cursor)


def test_resume_refused_on_changed_stage_config(loader_corpus, catalog):
    cfg = stage(loader_corpus.root)
    loader = make_loader(cfg, 0, 1, catalog=catalog)
    run_keys(loader, 2)
    cursor = loader.state_dict()
    changed = make_loader(cfg.model_copy(update={"seed": 8, "t_max": 8}), 0, 1, catalog=catalog)
    with pytest.raises(ResumeError, match=r"stage config changed: seed: 7 → 8; t_max: 4 → 8"):
        changed.load_state_dict(cursor)
    weights = cfg.model_copy(
        update={"mixture": [cfg.mixture[0], cfg.mixture[1].model_copy(update={"weight": 3.0})]}
    )
    with pytest.raises(ResumeError, match=r"mixture\[1\]\.weight: 2\.0 → 3\.0"):
        make_loader(weights, 0, 1, catalog=catalog).load_state_dict(cursor)
    # runtime knobs do not change what is seen: accepted
    make_loader(
        cfg.model_copy(update={"num_workers": 2, "prefetch_factor": 5}), 0, 1, catalog=catalog
    ).load_state_dict(cursor)


def test_resume_refused_on_changed_manifest(loader_corpus, loader_corpus_factory, catalog):
    cfg = stage(loader_corpus.root)
    loader = make_loader(cfg, 0, 1, catalog=catalog)
    run_keys(loader, 1)
    cursor = loader.state_dict()
    # the same clips minus one, built again: another manifest
    rebuilt = loader_corpus_factory("minus-one", default_specs()[1:])
    other = make_loader(cfg.model_copy(update={"corpora": [rebuilt.root]}), 0, 1)
    with pytest.raises(
        ResumeError, match=r"the manifest changed .*changed corpora: \['.*minus-one"
    ):
        other.load_state_dict(cursor)
    # a caption edited in place changes the shard bytes and so the fingerprint
    specs = default_specs()
    specs[0] = ClipSpec(**{**specs[0].__dict__, "caption": "edited"})
    edited = loader_corpus_factory("edited", specs)
    with pytest.raises(ResumeError, match="the manifest changed"):
        make_loader(cfg.model_copy(update={"corpora": [edited.root]}), 0, 1).load_state_dict(cursor)
    # an identical rebuild elsewhere (moved corpus) resumes
    same = loader_corpus_factory("same", default_specs())
    moved = make_loader(cfg.model_copy(update={"corpora": [same.root]}), 0, 1)
    moved.load_state_dict(cursor)
    assert moved.step == 1


# --- two ranks with gloo --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, root: str, kills: list[int], out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        cfg = stage(root, num_samples=22, tail="pad")
        catalog = load_catalog([root])
        full = make_loader(cfg, catalog=catalog)  # rank and world size from torch.distributed
        steps = len(full)
        reference = run_keys(full, steps)
        results = {"steps": steps, "reference": reference, "runs": []}
        for kill, before, after in kills:
            a = make_loader(cfg.model_copy(update={"num_workers": before}), catalog=catalog)
            seen = run_keys(a, kill)
            cursor = a.state_dict()
            b = make_loader(cfg.model_copy(update={"num_workers": after}), catalog=catalog)
            b.load_state_dict(cursor)
            seen += run_keys(b, steps - kill)
            results["runs"].append(seen)
        gathered: list = [None] * world
        dist.all_gather_object(gathered, results)
        if rank == 0:
            with open(out, "w") as f:
                json.dump(gathered, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_resume_and_equal_steps(loader_corpus, catalog, tmp_path):
    rng = random.Random(1234)
    # 22 samples, 2 ranks x 2, tail pad → 6 steps per rank
    kills = [(rng.randrange(0, 6), rng.choice([0, 1, 2]), rng.choice([0, 1, 2])) for _ in range(3)]
    out = tmp_path / "ranks.json"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    mp.spawn(
        _rank_main,
        args=(2, _free_port(), loader_corpus.root, kills, str(out)),
        nprocs=2,
        join=True,
    )
    ranks = json.loads(out.read_text())
    assert [r["steps"] for r in ranks] == [6, 6]
    for r in ranks:
        assert all(len(run) == 6 for run in r["runs"])
        for run in r["runs"]:
            assert run == r["reference"]
    # the ranks' batches are the slices of the global plan: together all 24 positions
    cfg = stage(loader_corpus.root, num_samples=22, tail="pad")
    plan = plan_epoch(catalog, cfg, 0, 2)
    expected = [catalog.keys[i] for i in plan.rows]
    merged = [k for s in range(6) for r in ranks for k in r["reference"][s]]
    assert merged == expected
    assert torch.tensor(plan.padded).sum().item() == 2
