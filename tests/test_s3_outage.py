"""The S3 server killed (SIGKILL) and restarted at the same address while a build writes to
``s3://``: the build rides through on retries or fails with a clear message, and the rerun ends
with the keys and bytes of an uninterrupted build, no duplicates, no partial object, no open
upload left. Its own rclone server, since the session's must not go down."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from longvid import storage
from longvid.config import S3Config
from tests.fixtures.build import build_command
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, _free_port, start_rclone_s3
from tests.test_build_faults import assert_same_as_reference, ledger_entries, wait_for

pytestmark = pytest.mark.slow

BUCKET = "outage"


def test_s3_server_killed_and_restarted_mid_build(build_inputs, reference_build, tmp_path,
                                                   monkeypatch):
    root = tmp_path / "s3root"
    (root / BUCKET).mkdir(parents=True)
    port = _free_port()
    server, endpoint = start_rclone_s3(root, tmp_path / "rclone.log", port=port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1")
    out = root / BUCKET / "corpus"  # the files behind s3://outage/corpus
    cmd = build_command(build_inputs.manifest_dir, f"s3://{BUCKET}/corpus")
    total = len(ledger_entries(reference_build))
    log = tmp_path / "build.log"
    proc = None
    try:
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: len(ledger_entries(out)) >= 1 or proc.poll() is not None, 300,
                 "a first committed unit")
        assert proc.poll() is None, log.read_text()[-3000:]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        down_at, committed_at_kill = time.monotonic(), len(ledger_entries(out))
        time.sleep(3.0)  # the server is away for a few seconds, as in a pod restart
        server, _ = start_rclone_s3(root, tmp_path / "rclone.log", port=port)
        back_after = time.monotonic() - down_at
        proc.wait(timeout=600)
        first = log.read_text()
        assert committed_at_kill < total, "the outage came after the last commit"
        if proc.returncode != 0:  # failed, and says so in its last line, naming the root
            last = first.strip().splitlines()[-1]
            assert last.startswith("longvid: error:") and f"s3://{BUCKET}/corpus" in last, last
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                               check=False)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert_same_as_reference(out, reference_build)  # keys, bytes, no orphan, no temp file
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            monkeypatch.setenv(name, env[name])
        previous = storage.current_s3_config()
        storage.configure(S3Config(endpoint_url=endpoint, region="us-east-1"))
        try:
            assert storage.incomplete_uploads(f"s3://{BUCKET}/corpus") == []
        finally:
            storage.configure(previous)
        print(f"server down {back_after:.1f} s; first run rc {proc.returncode}, "
              f"{committed_at_kill}/{total} units committed at the kill")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        server.terminate()
        server.wait(timeout=30)


def test_loader_reading_s3_through_a_server_restart_never_skips_a_sample(
    loader_corpus_factory, tmp_path, monkeypatch
):
    """Two DataLoader workers read a corpus on S3 with few retries (2 attempts); the server is
    SIGKILLed after the first batches, so a read fails: the loader fails loudly (LoaderError
    naming the object), the server comes back, and a resume from the loader's cursor carries
    on. The batches are exactly those of an undisturbed pass (none skipped, none twice), and no
    storage failure became a substitute."""
    from longvid.training.data import LoaderError, make_loader
    from longvid.training.data.config import StageData
    from tests.fixtures.loader_corpus import ClipSpec

    root = tmp_path / "s3root"
    (root / BUCKET).mkdir(parents=True)
    port = _free_port()
    server, endpoint = start_rclone_s3(root, tmp_path / "rclone.log", port=port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    previous = storage.current_s3_config()
    storage.configure(S3Config(endpoint_url=endpoint, region="us-east-1", max_attempts=2,
                               connect_timeout_s=2))
    try:
        specs = [ClipSpec("webvid", f"out{i}", duration=2.0 + i % 3) for i in range(8)]
        corpus = loader_corpus_factory(f"s3://{BUCKET}/loader", specs)
        cfg = StageData(corpora=[corpus.root], num_samples=24, batch_size=2, t_min=4, t_max=4,
                        resolution=16, seed=3, num_workers=2, prefetch_factor=1)
        expected = [b["keys"] for b in make_loader(cfg, 0, 1)]

        loader = make_loader(cfg, 0, 1)
        got, failures = [], 0
        it = iter(loader)
        got += [next(it)["keys"], next(it)["keys"]]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        while len(got) < len(expected):
            try:
                for batch in it:
                    got.append(batch["keys"])
            except LoaderError as exc:  # loud, naming what failed; resume from the cursor
                failures += 1
                assert f"s3://{BUCKET}/loader/" in str(exc), exc
                if server.poll() is not None:  # the outage ends
                    server, _ = start_rclone_s3(root, tmp_path / "rclone.log", port=port)
                cursor = loader.state_dict()
                loader = make_loader(cfg, 0, 1)
                loader.load_state_dict(cursor)
                it = iter(loader)
            else:
                break
        assert failures >= 1 and server.poll() is None  # the outage was felt, and it ended
        assert got == expected, f"{failures} loud failure(s)"
        assert loader.state_dict()["substituted"] == 0
        print(f"loader: {failures} loud failure(s) during the outage")
    finally:
        storage.configure(previous)
        server.terminate()
        server.wait(timeout=30)
