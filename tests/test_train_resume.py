"""``longvid train`` end to end on a small built corpus: all four stages, metrics and TensorBoard
output, exact resume after SIGKILL at a random step with one process and with two (torchrun,
gloo), a clean --stop-after and its resume, and the refusals (a changed started stage, a fresh
run over existing checkpoints)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from longvid.training import checkpoint as ckpt

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STEPS = [3, 3, 2, 2]  # per stage; 10 optimizer steps in all
TOTAL = sum(STEPS)
EVERY = 2


def write_config(corpus: str, path: Path) -> Path:
    """conf/train/demo.yaml made smaller: few steps, 4-sample batches, one thread, no workers."""
    cfg = yaml.safe_load((REPO / "conf" / "train" / "demo.yaml").read_text())
    for s, n in zip(cfg["stages"], STEPS, strict=True):
        s.update(steps=n, global_batch=4, micro_batch=2)
    cfg["data"].update(corpus=[corpus], num_workers=0, tokenizer_vocab=400)
    cfg["checkpoint"].update(every_steps=EVERY, keep_last=2)
    cfg["runtime"]["threads"] = 1
    cfg["metrics"]["log_every"] = 1
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def command(config: Path, out: Path, *extra: str, procs: int = 1) -> list[str]:
    args = ["-m", "longvid.cli", "train", str(config), "--out", str(out), *extra]
    if procs == 1:
        return [sys.executable, *args]
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", f"--nproc_per_node={procs}", *args]


def run(cmd: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if ok:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in rows(out)]


def final_weights(out: Path) -> dict:
    return load_file(str(out / "model" / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not (wa[k].dtype == wb[k].dtype and wa[k].equal(wb[k]))]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def kill_at_random_step(cmd: list[str], out: Path, seed: int) -> int:
    """Start ``cmd``, SIGKILL its whole process group once ``metrics.jsonl`` has reached a random
    step after the first checkpoint; returns that step."""
    target = random.Random(seed).randint(EVERY + 1, TOTAL - 2)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            done = rows(out) if (out / "metrics.jsonl").exists() else []
            if len(done) >= target:
                break
            if proc.poll() is not None:
                pytest.fail(f"run ended before step {target}: {proc.stderr.read()[-3000:]}")
            time.sleep(0.05)
        else:
            pytest.fail(f"step {target} not reached in time")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return target


@pytest.fixture(scope="module")
def train_config(loader_corpus, tmp_path_factory) -> Path:
    return write_config(loader_corpus.root, tmp_path_factory.mktemp("train_cfg") / "train.yaml")


@pytest.fixture(scope="module")
def reference(train_config, tmp_path_factory) -> Path:
    """One uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("train_ref") / "run"
    proc = run(command(train_config, out))
    assert "finished 10 steps" in proc.stdout
    return out


def test_uninterrupted_run_writes_metrics_checkpoints_and_model(reference: Path) -> None:
    rs = rows(reference)
    assert [r["step"] for r in rs] == list(range(1, TOTAL + 1))
    stages = ["stage1_align"] * 3 + ["stage2_short"] * 3 + ["stage3_joint"] * 2 + [
        "stage4_highres"] * 2
    assert [r["stage"] for r in rs] == stages
    for r in rs:
        for key in ("loss", "lr", "tokens_per_s", "samples_per_s", "visual_tokens_per_sample",
                    "data_wait_share", "grad_norm", "step_time_s"):
            assert isinstance(r[key], float) and r[key] >= 0, (key, r)
        assert 0 <= r["data_wait_share"] <= 1
        assert r["answer_tokens"] > 0
    assert all(r["loss"] > 0 for r in rs)
    # warm-up: the first step of every stage runs at lr 0 (HF schedule), the next at the peak
    firsts = [0, 3, 6, 8]
    assert [rs[i]["lr"] for i in firsts] == [0.0] * 4
    assert rs[1]["lr"] == pytest.approx(1e-3)  # warm-up over, cosine at its start
    assert rs[4]["lr_groups"] == pytest.approx({"encoder": 1e-4, "projector": 5e-4, "llm": 5e-4})
    assert rs[2]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 2)))
    # visual tokens: 4 frames = 1 clip = 16 tokens in stage 1; stage 4 runs at 128 px and the
    # merge keeps 4 tokens per frame, so 8-16 frames give 32-64 tokens
    assert all(r["visual_tokens_per_sample"] == 16 for r in rs[:3])
    assert all(32 <= r["visual_tokens_per_sample"] <= 64 for r in rs[6:])
    # the loss falls over the run
    assert sum(losses(reference)[-2:]) < sum(losses(reference)[:2])
    refs = ckpt.list_checkpoints(str(reference / "checkpoints"))
    assert [r.step for r in refs] == [8, 10]  # keep_last 2
    state = json.loads(Path(refs[-1].uri, "state.json").read_text())
    assert state["train_state"] == {"stage_index": 3, "step_in_stage": 2, "global_step": 10,
                                    "samples_seen": 40, "tokens_seen": state["train_state"][
                                        "tokens_seen"]}
    assert (reference / "model" / "model.yaml").is_file()
    assert (reference / "tokenizer" / "tokenizer.json").is_file()
    # TensorBoard: one loss scalar per step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(reference / "tb"))
    acc.Reload()
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == list(range(1, TOTAL + 1))
    assert [e.value for e in events] == pytest.approx(losses(reference), rel=1e-6)


def test_sigkill_at_a_random_step_then_resume_is_exact(train_config, reference, tmp_path) -> None:
    out = tmp_path / "run"
    killed_at = kill_at_random_step(command(train_config, out), out, seed=8)
    assert ckpt.latest(str(out / "checkpoints")) is not None, f"no checkpoint by step {killed_at}"
    assert len(rows(out)) < TOTAL
    proc = run(command(train_config, out, "--resume", "auto"))
    assert "resuming from" in proc.stdout
    assert [r["step"] for r in rows(out)] == list(range(1, TOTAL + 1))
    assert losses(out) == losses(reference), f"killed at step {killed_at}"
    assert_same_weights(out, reference)


def test_two_processes_sigkill_and_resume_is_exact(train_config, reference, tmp_path) -> None:
    ref2 = tmp_path / "ref2"
    proc = run(command(train_config, ref2, procs=2))
    assert "2 process(es)" in proc.stdout and "accum 1" in proc.stdout
    # DDP over two ranks computes the same steps as one rank accumulating two micro-batches
    assert losses(ref2) == pytest.approx(losses(reference), rel=1e-5)

    out = tmp_path / "run"
    killed_at = kill_at_random_step(command(train_config, out, procs=2), out, seed=2)
    refs = ckpt.list_checkpoints(str(out / "checkpoints"))
    assert refs and refs[-1].world_size == 2
    assert sorted(refs[-1].manifest["files"])[-3:] == ["rank-00000.pt", "rank-00001.pt",
                                                      "state.json"]
    run(command(train_config, out, "--resume", "auto", procs=2))
    assert [r["step"] for r in rows(out)] == list(range(1, TOTAL + 1))
    assert losses(out) == losses(ref2), f"killed at step {killed_at}"
    assert_same_weights(out, ref2)


def test_stop_after_half_refusals_and_resume(train_config, reference, tmp_path) -> None:
    out = tmp_path / "run"
    proc = run(command(train_config, out, "--stop-after", "half"))
    assert "stopped after step 5 of 10" in proc.stdout
    assert ckpt.latest(str(out / "checkpoints")).step == 5
    assert [r["step"] for r in rows(out)] == [1, 2, 3, 4, 5]

    # a fresh run into the same folder would mix two runs
    proc = run(command(train_config, out), ok=False)
    assert proc.returncode != 0 and "already holds checkpoints" in proc.stderr
    # stage 2 has started: changing it is refused, naming the key
    cfg = yaml.safe_load(train_config.read_text())
    cfg["stages"][1]["part_lr"] = {"encoder": 3.0e-4}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    proc = run(command(changed, out, "--resume", "auto"), ok=False)
    assert proc.returncode != 0
    assert "resume refused" in proc.stderr
    assert "stages[1] (stage2_short).part_lr.encoder: 0.0001 → 0.0003" in proc.stderr

    # a stage that has not started may change; runtime settings too (workers, logging)
    cfg = yaml.safe_load(train_config.read_text())
    cfg["stages"][3]["data"]["max_substitutes"] = 9
    cfg["data"]["num_workers"] = 1
    cfg["metrics"]["log_every"] = 5
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text(yaml.safe_dump(cfg))
    proc = run(command(runtime, out, "--resume", "auto"))
    assert "resuming from" in proc.stdout and "finished 10 steps" in proc.stdout
    assert losses(out) == losses(reference)
    assert_same_weights(out, reference)
