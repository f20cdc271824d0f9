"""Open multipart uploads left by a writer killed mid-upload, on the loopback S3 server (rclone
serves ListMultipartUploads, ListParts and AbortMultipartUpload): listed, aborted, and swept by
a build that reruns on an S3 root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import boto3
import pytest

from longvid import storage
from longvid.config import load_config
from longvid.pipelines.build import run_build
from longvid.pipelines.config import BuildConfig
from longvid.pipelines.uploads import unit_of
from tests.fixtures.build import overrides

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20

# A writer that uploads with longvid.storage from a pipe that stalls after 12 MiB: the first
# parts (5 MiB each) reach the server, then it waits for data until it is killed.
WRITER = textwrap.dedent("""
    import os, sys, tempfile, threading, time
    from longvid import storage
    from longvid.config import S3Config
    storage.configure(S3Config(endpoint_url=sys.argv[2], region="us-east-1",
                               multipart_threshold_mb=5, multipart_chunk_mb=5))
    pipe = os.path.join(tempfile.mkdtemp(), "spool")
    os.mkfifo(pipe)

    def feed():
        with open(pipe, "wb") as fh:
            fh.write(b"x" * (12 << 20))
            fh.flush()
            time.sleep(3600)

    threading.Thread(target=feed, daemon=True).start()
    storage.upload_file(pipe, sys.argv[1])
""")


def boto(s3_server):
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=s3_server.access_key,
                        aws_secret_access_key=s3_server.secret_key)


def kill_writer_mid_upload(s3_server, uri: str) -> None:
    """Start a writer of ``uri`` and SIGKILL it once the server holds a part of its upload."""
    client = boto(s3_server)
    bucket, key = uri[len("s3://"):].split("/", 1)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, uri, s3_server.endpoint_url],
                            cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ups = storage.incomplete_uploads(uri.rsplit("/", 1)[0])
            if ups and client.list_parts(Bucket=bucket, Key=key,
                                         UploadId=ups[0].upload_id).get("Parts"):
                break
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.1)
        else:
            pytest.fail("the writer uploaded no part in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_a_writer_killed_mid_upload_leaves_an_upload_that_is_listed_and_aborted(s3_server):
    base = s3_server.uri(f"uploads-{uuid.uuid4().hex[:8]}")
    victim = storage.join(base, "out/shards/u1-00000.tar")
    kill_writer_mid_upload(s3_server, victim)
    elsewhere = storage.join(base, "other/x.bin")  # outside the swept folder: left alone
    client = boto(s3_server)
    bucket, key = elsewhere[len("s3://"):].split("/", 1)
    other_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=other_id, PartNumber=1, Body=b"y" * MIB)

    out = storage.join(base, "out")
    assert not storage.exists(victim)  # nothing published ...
    assert storage.list_files(out) == []  # ... and nothing listed as an object
    (up,) = storage.incomplete_uploads(out)  # but the upload is there, holding its parts
    assert up.uri == victim and up.initiated is not None
    assert storage.abort_incomplete_uploads(out, keep=lambda u: u.uri == victim) == []
    assert storage.abort_incomplete_uploads(out) == [up]
    assert storage.incomplete_uploads(out) == []
    assert [u.upload_id for u in storage.incomplete_uploads(base)] == [other_id]
    storage.abort_incomplete_uploads(base)
    # rclone keeps parts in a hidden temp file beside the object: gone with the abort
    assert not any(s3_server.path(victim.split("/", 3)[3]).parent.glob(".rclone_temp_*"))


def test_local_folders_have_no_open_uploads(tmp_path):
    assert storage.incomplete_uploads(str(tmp_path)) == []
    assert storage.abort_incomplete_uploads(str(tmp_path)) == []


def test_unit_of_output_names():
    assert unit_of("s3://b/r/shards/u0123abcd-00002.tar") == "u0123abcd"
    assert unit_of("s3://b/r/ledger/u0123abcd.json") == "u0123abcd"
    assert unit_of("s3://b/r/samples.parquet") is None


@pytest.mark.slow
def test_a_rerun_on_s3_aborts_the_upload_a_killed_worker_left(s3_server, build_inputs):
    import ray

    root = s3_server.uri(f"builds/stale-{uuid.uuid4().hex[:8]}")
    cfg = load_config(None, BuildConfig, [*overrides(), f"manifest={build_inputs.manifest_dir}",
                                          f"output.root={root}"])
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        first = run_build(cfg)
    finally:
        ray.shutdown()
    assert first.summary["run"]["stale_uploads_aborted"] == 0
    shards = {u: storage.read_bytes(u) for u in storage.list_files(storage.join(root, "shards"))}
    unit = unit_of(sorted(shards)[0])
    # a worker killed while uploading its unit's next shard
    kill_writer_mid_upload(s3_server, storage.join(root, "shards", f"{unit}-00009.tar"))
    assert len(storage.incomplete_uploads(root)) == 1

    again = run_build(cfg)  # every unit committed: no Ray, only the sweeps and finalize
    assert again.summary["run"]["skipped"] == again.summary["units"]["total"]
    assert again.summary["run"]["stale_uploads_aborted"] == 1
    assert storage.incomplete_uploads(root) == []
    assert {u: storage.read_bytes(u) for u in storage.list_files(storage.join(root, "shards"))} \
        == shards
