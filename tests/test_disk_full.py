"""A full disk, for real: a size-limited tmpfs mounted by the test (root is needed; the tests
skip, saying so, where mounting is not permitted). A build and a checkpoint save on it fail with
an error naming the file; nothing partial is left visible; after the space is freed the rerun
completes, and ``--resume auto`` only ever sees checkpoints it can load."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from longvid.errors import StorageError
from longvid.training import checkpoint as ckpt
from tests.fixtures.build import build_command

REPO = Path(__file__).resolve().parents[1]


class SmallDisk:
    """A tmpfs of a given size at ``path``; ``resize`` frees space (remount, contents kept)."""

    def __init__(self, path: Path, size: str):
        self.path = path
        path.mkdir(parents=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): "
                        "the disk-full tests need root")

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path) -> Iterator:
    disks: list[SmallDisk] = []

    def make(size: str) -> SmallDisk:
        if os.geteuid() != 0:
            pytest.skip("the disk-full tests mount a tmpfs, which needs root")
        disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size))
        return disks[-1]

    yield make
    for d in disks:
        d.unmount()


def hidden_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*")]


# --- checkpoints -----------------------------------------------------------------------------


def save(writer: ckpt.CheckpointWriter, step: int, numel: int) -> str:
    return writer.save(step, {"train_state": {"step": step}}, {"rng": ckpt.rng_state(),
                                                               "loader": {"step": step}},
                       model_state=lambda: {"w": torch.full((numel,), float(step))},
                       optimizer_state=lambda: {"optimizer": {}, "scheduler": {}})


def test_a_checkpoint_save_on_a_full_disk_fails_clearly_and_leaves_the_last_good_one(
    small_disk,
):
    disk = small_disk("1m")
    folder = disk.path / "run" / "checkpoints"
    writer = ckpt.CheckpointWriter(str(folder), 0, 1, keep_last=3, barrier=lambda: None)
    save(writer, 1, 1_000)  # 4 kB of weights: fits
    with pytest.raises(StorageError) as info:
        save(writer, 2, 400_000)  # 1.6 MB of weights: does not
    msg = str(info.value)
    assert msg.startswith(str(folder / "ckpt-000000002.tmp" / "model.pt") + ": could not write")
    assert "the checkpoint was not committed" in msg
    # nothing of step 2 is left, its space is free again, and resume picks step 1, which loads
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-000000001"]
    assert ckpt.latest(str(folder)).step == 1
    loaded = ckpt.load_checkpoint(ckpt.latest(str(folder)), 0)
    assert torch.equal(loaded.model["w"], torch.full((1_000,), 1.0))
    assert loaded.rank["loader"] == {"step": 1}

    disk.resize("8m")  # space freed: the same save now goes through
    save(writer, 2, 400_000)
    assert ckpt.latest(str(folder)).step == 2
    assert torch.equal(ckpt.load_checkpoint(ckpt.latest(str(folder)), 0).model["w"],
                       torch.full((400_000,), 2.0))


# --- the build -------------------------------------------------------------------------------


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "shards").glob("*.tar"))}


@pytest.mark.slow
def test_a_build_on_a_full_disk_fails_clearly_and_the_rerun_completes(
    small_disk, build_inputs, reference_build
):
    """The reference build writes about 650 kB; a 300 kB disk fills part way through."""
    disk = small_disk("300k")
    out = disk.path / "out"
    cmd = build_command(build_inputs.manifest_dir, out)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          check=False)
    assert proc.returncode != 0
    # the failing write names its file under the output root and the reason
    assert f"{out}/" in proc.stderr and "No space left on device" in proc.stderr, (
        proc.stderr[-3000:]
    )
    assert "Traceback" not in proc.stderr.split("longvid: error:")[-1]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("longvid: error:") and str(out) in last, last
    # nothing partial: no temp file, and every shard on disk is whole (the reference's bytes);
    # the corpus (index.json, when it could be written) lists only committed shards. A shard
    # of a unit that failed on a later shard is whole but uncommitted: the rerun removes it.
    assert hidden_files(out) == []
    ref = shard_bytes(reference_build)
    for name, data in shard_bytes(out).items():
        assert data == ref[name], name
    committed = {Path(s["url"]).name for f in (out / "ledger").glob("*.json")
                 for s in json.loads(f.read_text())["shards"]}
    assert committed <= set(shard_bytes(out)) and len(committed) < len(ref)
    if (out / "index.json").exists():
        index = json.loads((out / "index.json").read_text())
        assert {Path(e["url"]).name for e in index["shardlist"]} == committed

    disk.resize("4m")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shard_bytes(out) == ref
    assert json.loads((out / "index.json").read_text()) == json.loads(
        (reference_build / "index.json").read_text())
    assert json.loads((out / "summary.json").read_text())["complete"] is True
