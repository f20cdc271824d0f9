"""Exactly once under failures: the driver killed with SIGKILL at a random point and rerun, and a
real two-node Ray cluster (head + worker on loopback, token auth on) whose worker node is killed
mid-build. Both must end with the keys and bytes of an uninterrupted build, and no leftovers."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.fixtures.build import build_command
from tests.test_build_e2e import samples_by_key

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


def ledger_entries(out: Path) -> list[Path]:
    d = out / "ledger"
    return sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []


def wait_for(cond, timeout: float, what: str, interval: float = 0.2) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_same_as_reference(out: Path, reference: Path) -> None:
    got, ref = samples_by_key(out), samples_by_key(reference)
    assert sorted(got) == sorted(ref), set(got) ^ set(ref)  # none missing; none doubled (*)
    for key in ref:
        assert got[key] == ref[key], key
    # (*) samples_by_key fails on a key seen twice
    index = json.loads((out / "index.json").read_text())
    assert index == json.loads((reference / "index.json").read_text())
    # no orphans: every file under shards/ is in the index, no temp files anywhere
    listed = {e["url"] for e in index["shardlist"]}
    on_disk = {str(p.relative_to(out)) for p in (out / "shards").iterdir()}
    assert on_disk == listed, on_disk ^ listed
    hidden = [str(p) for p in out.rglob(".*")]
    assert not hidden, hidden
    assert len(ledger_entries(out)) == len(ledger_entries(reference))


def kill_tree(proc: subprocess.Popen, sig=signal.SIGKILL) -> list[psutil.Process]:
    """Signal ``proc`` only; return its descendants (to wait for)."""
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    return kids


def kill_driver_at_random_point(cmd: list[str], out: Path, rng: random.Random, total: int,
                                log_path: Path) -> int:
    """Start the build, SIGKILL the driver after a random number of commits plus a random
    slice of time, wait for its Ray processes to go; return the units committed by then."""
    after = rng.randrange(0, total - 2)
    delay = rng.uniform(0.0, 0.3)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: (out / "build.json").exists() or proc.poll() is not None, 300,
                 "the build to start")
        wait_for(lambda: len(ledger_entries(out)) >= after or proc.poll() is not None, 300,
                 f"{after} committed units", interval=0.02)
        time.sleep(delay)
        assert proc.poll() is None, log_path.read_text()[-3000:]
        kids = kill_tree(proc)
        # Ray's raylet and task workers exit when their driver is gone (its agents may linger,
        # they write nothing of ours): give them a moment, then end whatever is left of them
        _gone, alive = psutil.wait_procs(kids, timeout=10)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return len(ledger_entries(out))


def test_driver_killed_at_a_random_point_then_rerun(build_inputs, reference_build, tmp_path):
    rng = random.Random(20261126)
    out = tmp_path / "killed"
    total = len(ledger_entries(reference_build))
    cmd = build_command(build_inputs.manifest_dir, out)
    for attempt in range(3):  # a kill that lands after the last commit tests nothing: again
        committed = kill_driver_at_random_point(cmd, out, rng, total,
                                                tmp_path / f"driver{attempt}.log")
        if committed < total:
            break
        shutil.rmtree(out)
    assert committed < total, "every kill landed after the last commit"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["resumed"] is True
    assert summary["run"]["skipped"] == committed, (summary["run"], committed)
    assert summary["complete"] is True
    assert_same_as_reference(out, reference_build)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(address: str, env: dict[str, str]) -> list[dict]:
    code = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], "
        "'head': 'node:__internal_head__' in n['Resources']} for n in ray.nodes()]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    if proc.returncode != 0:
        return []
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_worker_node_killed_mid_build(build_inputs, reference_build, tmp_path):
    """Head (1 CPU) + worker (2 CPUs) started with ``ray start`` on 127.0.0.1, token auth on for
    every process. The worker node is killed (its whole process group, SIGKILL) once it has
    committed a unit and while the build runs; the build must still finish, exactly once."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = Path("/tmp") / f"lvray-{port}"  # short: Ray's socket paths must fit 107 bytes
    head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]

    def started(log: Path) -> bool:  # `ray start --block` says so once its node is up
        return log.exists() and "Ray runtime started" in log.read_text(errors="replace")

    with open(head_log, "wb") as fh:
        head = subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={temp}",
             "--include-dashboard=false", *common],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    groups = [head]  # process groups to kill at the end (the nodes)
    driver: subprocess.Popen | None = None
    out = tmp_path / "two-node"
    try:
        wait_for(lambda: started(head_log), 180, "the head node", interval=0.5)
        with open(worker_log, "wb") as fh:
            worker = subprocess.Popen(
                [RAY, "start", f"--address={address}", "--num-cpus=2", *common],
                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        groups.append(worker)
        wait_for(lambda: started(worker_log), 180, "the worker node", interval=0.5)
        nodes: list[dict] = []

        def two_alive() -> bool:
            nodes[:] = _nodes(address, env)
            return sum(n["alive"] for n in nodes) == 2

        wait_for(two_alive, 120, "both nodes alive", interval=1)
        worker_id = next(n["id"] for n in nodes if not n["head"])
        total = len(ledger_entries(reference_build))
        committers: dict[Path, str | None] = {}

        def committed_by_worker() -> bool:
            for p in ledger_entries(out):
                if p not in committers:
                    committers[p] = json.loads(p.read_text())["stats"].get("node_id")
            return worker_id in committers.values()

        for attempt in range(3):  # a kill after the last commit tests nothing: build again
            with open(tmp_path / f"driver{attempt}.log", "wb") as fh:
                driver = subprocess.Popen(
                    build_command(build_inputs.manifest_dir, out, f"ray.address={address}"),
                    env=env, stdout=fh, stderr=subprocess.STDOUT)
            running = driver
            wait_for(lambda d=running: committed_by_worker() or d.poll() is not None, 300,
                     "a unit committed by the worker node", interval=0.02)
            if driver.poll() is None and len(ledger_entries(out)) < total:
                break
            assert driver.wait(timeout=600) == 0
            shutil.rmtree(out)
            committers.clear()
        else:
            raise AssertionError("the build finished before the worker could be killed")
        # the worker has committed work and units are still to do: kill the node
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        log = tmp_path / f"driver{attempt}.log"
        assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
        entries = [json.loads(p.read_text()) for p in ledger_entries(out)]
        nodes_used = {e["stats"]["node_id"] for e in entries}
        head_id = next(n["id"] for n in nodes if n["head"])
        assert worker_id in nodes_used and nodes_used <= {worker_id, head_id}
        summary = json.loads((out / "summary.json").read_text())
        assert summary["complete"] and summary["run"]["ray_address"] == address
        assert_same_as_reference(out, reference_build)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
        for p in reversed(groups):
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the node and every process it started
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
