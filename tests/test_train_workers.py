"""Trainer faults with DataLoader workers: SIGKILL at a random step with ``num_workers: 2`` and
resume with 1 and with 2 workers (bitwise equal losses and weights), a resume at another world
size (same data, every rank its own RNG stream), and frozen parts bit-identical through the
stages that freeze them (compared on the weights of every step's checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from longvid.training import checkpoint as ckpt
from tests.test_train_resume import (
    TOTAL,
    assert_same_weights,
    command,
    kill_at_random_step,
    losses,
    rows,
    run,
    write_config,
)

pytestmark = pytest.mark.slow

STAGE_ENDS = {"stage1_align": 3, "stage2_short": 6, "stage3_joint": 8, "stage4_highres": 10}


@pytest.fixture(scope="module")
def workers_config(loader_corpus, tmp_path_factory) -> Path:
    """The resume tests' config with two DataLoader workers and a checkpoint at every step."""
    path = write_config(loader_corpus.root, tmp_path_factory.mktemp("workers_cfg") / "t.yaml")
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["num_workers"] = 2
    cfg["checkpoint"].update(every_steps=1, keep_last=TOTAL)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(workers_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("workers_ref") / "run"
    proc = run(command(workers_config, out))
    assert f"finished {TOTAL} steps" in proc.stdout
    return out


def model_at(out: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / f"ckpt-{step:09d}" / "model.pt", weights_only=True)


def parts(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The model's tensors by part (the names the curriculum freezes and trains)."""
    out: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "projector": {}, "llm": {}}
    for name, t in state.items():
        out[name.split(".", 1)[0]][name] = t
    return out


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("resume_workers", "seed"), [(1, 11), (2, 12)])
def test_sigkill_with_two_workers_then_resume_is_exact(workers_config, reference, tmp_path,
                                                       resume_workers, seed):
    out = tmp_path / "run"
    killed_at = kill_at_random_step(command(workers_config, out), out, seed=seed)
    assert ckpt.latest(str(out / "checkpoints")) is not None
    proc = run(command(workers_config, out, "--resume", "auto",
                       f"data.num_workers={resume_workers}"))
    assert "resuming from" in proc.stdout
    assert [r["step"] for r in rows(out)] == list(range(1, TOTAL + 1))
    assert losses(out) == losses(reference), f"killed at step {killed_at}"
    assert_same_weights(out, reference)


def test_frozen_parts_stay_bit_identical_through_the_stages_that_freeze_them(reference):
    # stage 1 trains the projector only; stage 4 freezes the LLM (conf/train/demo.yaml)
    first, end1 = parts(model_at(reference, 1)), parts(model_at(reference, STAGE_ENDS[
        "stage1_align"]))
    assert same(first["encoder"], end1["encoder"]) and same(first["llm"], end1["llm"])
    assert not same(first["projector"], end1["projector"])  # the check can see a change
    end3 = parts(model_at(reference, STAGE_ENDS["stage3_joint"]))
    end4 = parts(model_at(reference, STAGE_ENDS["stage4_highres"]))
    assert same(end3["llm"], end4["llm"])
    assert not same(end3["projector"], end4["projector"])
    assert not same(end3["encoder"], end4["encoder"])


def test_resume_at_another_world_size_keeps_the_data_and_gives_every_rank_its_own_rng(
    workers_config, reference, tmp_path
):
    """One process killed, resumed by two (torchrun, gloo): the same samples in the same order
    (losses equal to float-summation noise: DDP groups the gradient sums differently), and the
    new rank draws from its own RNG stream, not a copy of rank 0's."""
    out = tmp_path / "run"
    killed_at = kill_at_random_step(command(workers_config, out), out, seed=13)
    resumed_from = ckpt.latest(str(out / "checkpoints")).step
    run(command(workers_config, out, "--resume", "auto", procs=2))
    assert [r["step"] for r in rows(out)] == list(range(1, TOTAL + 1))
    assert losses(out)[:resumed_from] == losses(reference)[:resumed_from]
    assert losses(out) == pytest.approx(losses(reference), rel=1e-5), f"killed at {killed_at}"
    last = ckpt.latest(str(out / "checkpoints"))
    assert last.world_size == 2
    rngs = [ckpt.load_checkpoint(last, r).rank["rng"] for r in (0, 1)]
    assert not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
    assert rngs[0]["python"] != rngs[1]["python"]
    assert not torch.equal(rngs[0]["numpy"]["key"], rngs[1]["numpy"]["key"])
