"""Training checkpoints: atomic commit (manifest last, temp folder renamed), the newest complete
one found, the last K kept, RNG states restored exactly, S3 prefixes on the loopback server."""

from __future__ import annotations

import json
import random
import shutil
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from longvid import storage
from longvid.errors import NotFoundError, StorageError
from longvid.training import checkpoint as ckpt


def writer(dir_uri: str, keep: int = 3) -> ckpt.CheckpointWriter:
    return ckpt.CheckpointWriter(dir_uri, rank=0, world_size=1, keep_last=keep, barrier=lambda: None)


def save(w: ckpt.CheckpointWriter, step: int) -> str:
    model = {"w": torch.full((3, 2), float(step))}
    return w.save(
        step,
        {"train_state": {"global_step": step}},
        {"rng": ckpt.rng_state(), "loader": {"step": step}},
        model_state=lambda: model,
        optimizer_state=lambda: {"optimizer": {"lr": 0.1 * step}, "scheduler": {}},
    )


def test_save_load_roundtrip_and_layout(tmp_path: Path) -> None:
    w = writer(str(tmp_path / "ck"))
    uri = save(w, 7)
    assert Path(uri).name == "ckpt-000000007"
    assert sorted(p.name for p in Path(uri).iterdir()) == [
        "manifest.json", "model.pt", "optimizer.pt", "rank-00000.pt", "state.json"
    ]
    manifest = json.loads((Path(uri) / "manifest.json").read_text())
    assert manifest["step"] == 7 and manifest["world_size"] == 1
    assert manifest["files"]["model.pt"] == (Path(uri) / "model.pt").stat().st_size
    assert not list(tmp_path.glob("ck/*.tmp"))
    loaded = ckpt.load_checkpoint(ckpt.latest(str(tmp_path / "ck")), rank=0)
    assert torch.equal(loaded.model["w"], torch.full((3, 2), 7.0))
    assert loaded.optimizer["optimizer"]["lr"] == pytest.approx(0.7)
    assert loaded.rank["loader"] == {"step": 7}
    assert loaded.state["train_state"]["global_step"] == 7


def test_latest_skips_incomplete_and_temp_folders(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    w = writer(str(root), keep=10)
    save(w, 2)
    save(w, 4)
    # a save killed before its rename: a temp folder with everything but the manifest
    shutil.copytree(root / "ckpt-000000004", root / "ckpt-000000006.tmp")
    (root / "ckpt-000000006.tmp" / "manifest.json").unlink()
    # a folder whose manifest is there but a file is shorter than the manifest says
    shutil.copytree(root / "ckpt-000000004", root / "ckpt-000000008")
    m = json.loads((root / "ckpt-000000008" / "manifest.json").read_text())
    m["step"] = 8
    (root / "ckpt-000000008" / "manifest.json").write_text(json.dumps(m))
    data = (root / "ckpt-000000008" / "model.pt").read_bytes()
    (root / "ckpt-000000008" / "model.pt").write_bytes(data[: len(data) // 2])
    # and one without a manifest at all
    shutil.copytree(root / "ckpt-000000004", root / "ckpt-000000010")
    (root / "ckpt-000000010" / "manifest.json").unlink()
    assert [r.step for r in ckpt.list_checkpoints(str(root))] == [2, 4]
    assert ckpt.latest(str(root)).step == 4
    with pytest.raises(NotFoundError, match="not a complete checkpoint"):
        ckpt.open_checkpoint(str(root / "ckpt-000000010"))
    assert ckpt.open_checkpoint(str(root / "ckpt-000000002")).step == 2
    assert ckpt.latest(str(tmp_path / "nothing-here")) is None


def test_keep_last_k_and_stale_temps_removed(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    w = writer(str(root), keep=2)
    (root / "ckpt-000000099.tmp").mkdir(parents=True)  # left by a killed run
    for step in (1, 2, 3, 4):
        save(w, step)
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-000000003", "ckpt-000000004"]


def test_resave_of_an_existing_step_replaces_it(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    w = writer(str(root))
    save(w, 5)
    w.save(5, {"train_state": {"global_step": 5}}, {"rng": ckpt.rng_state(), "loader": {}},
           model_state=lambda: {"w": torch.zeros(1)},
           optimizer_state=lambda: {"optimizer": {}, "scheduler": {}})
    loaded = ckpt.load_checkpoint(ckpt.latest(str(root)), rank=0)
    assert torch.equal(loaded.model["w"], torch.zeros(1))
    assert [p.name for p in root.iterdir()] == ["ckpt-000000005"]


def test_rng_states_restore_exactly() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt.set_rng_state(state)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == first


def test_two_ranks_save_together_and_a_new_world_size_takes_rank_modulo(tmp_path: Path) -> None:
    """Two ranks (threads meeting at a real barrier) write one checkpoint; resuming it with four
    ranks gives rank r the RNG and cursor of rank r mod 2."""
    root = str(tmp_path / "ck")
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def rank_main(rank: int) -> None:
        try:
            w = ckpt.CheckpointWriter(root, rank, 2, keep_last=2, barrier=barrier.wait)
            w.save(3, {"train_state": {}}, {"rng": {}, "loader": {"rank": rank}},
                   model_state=lambda: {"w": torch.ones(2)},
                   optimizer_state=lambda: {"optimizer": {}, "scheduler": {}})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ref = ckpt.latest(root)
    assert ref.world_size == 2 and sorted(ref.manifest["files"]) == [
        "model.pt", "optimizer.pt", "rank-00000.pt", "rank-00001.pt", "state.json"
    ]
    assert [ckpt.load_checkpoint(ref, r).rank["loader"]["rank"] for r in range(4)] == [0, 1, 0, 1]


def test_missing_rank_file_fails_the_commit(tmp_path: Path) -> None:
    """Two ranks on nodes without a shared folder: rank 0 cannot see rank 1's file."""
    w = ckpt.CheckpointWriter(str(tmp_path / "ck"), rank=0, world_size=2, keep_last=2,
                              barrier=lambda: None)
    with pytest.raises(StorageError, match="must be shared"):
        save(w, 1)
    assert ckpt.latest(str(tmp_path / "ck")) is None


def test_s3_checkpoints_commit_with_the_manifest_last(s3_server) -> None:
    prefix = s3_server.uri(f"ckpt-{uuid.uuid4().hex[:8]}")
    w = writer(prefix, keep=2)
    for step in (1, 2, 3):
        save(w, step)
    refs = ckpt.list_checkpoints(prefix)
    assert [r.step for r in refs] == [2, 3]
    assert refs[-1].uri == f"{prefix}/ckpt-000000003"
    loaded = ckpt.load_checkpoint(refs[-1], rank=0)
    assert torch.equal(loaded.model["w"], torch.full((3, 2), 3.0))
    # an upload that never got its manifest is not a checkpoint
    storage.write_bytes(f"{prefix}/ckpt-000000004/model.pt", b"partial")
    assert ckpt.latest(prefix).step == 3
    # deleting uncommits first: no manifest is left behind for a pruned step
    assert not storage.exists(f"{prefix}/ckpt-000000001/manifest.json")
    assert storage.list_files(f"{prefix}/ckpt-000000001") == []
