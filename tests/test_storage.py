"""longvid.storage against real backends: the local disk, a real S3 server (rclone serve s3 on
loopback, see tests/fixtures/s3.py) and a real HTTP server (tests/fixtures/http.py)."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from longvid import storage
from longvid.config import S3Config
from longvid.errors import AccessDeniedError, NotFoundError, StorageError

MIB = 1 << 20


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty folder URI on each backend."""
    if request.param == "local":
        return str(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return server.uri(f"t-{uuid.uuid4().hex[:12]}")


class S3Calls:
    """Counts the S3 operations the shared client really sends (botocore's event hooks), and can
    run a check or raise after a given operation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.params: list[dict] = []
        self.after: dict[str, object] = {}

    def before(self, params: dict, model, **_: object) -> None:
        with self.lock:
            self.calls.append(model.name)
            self.params.append(dict(params))

    def after_call(self, model, **_: object) -> None:
        action = self.after.get(model.name)
        if action is not None:
            action()  # type: ignore[operator]

    def count(self, name: str) -> int:
        return self.calls.count(name)


@pytest.fixture
def s3_calls(s3_server):
    client = storage.s3_client()
    spy = S3Calls()
    client.meta.events.register("before-parameter-build.s3", spy.before)
    client.meta.events.register("after-call.s3", spy.after_call)
    try:
        yield spy
    finally:
        client.meta.events.unregister("before-parameter-build.s3", spy.before)
        client.meta.events.unregister("after-call.s3", spy.after_call)


# --- both backends ------------------------------------------------------------------------------


def test_round_trip(root: str) -> None:
    uri = storage.join(root, "a", "b c", "data.bin")
    data = blob(100_000, seed=1)
    assert not storage.exists(uri)
    storage.write_bytes(uri, data)  # parent folders appear as needed
    assert storage.exists(uri)
    assert storage.size(uri) == len(data)
    assert storage.read_bytes(uri) == data
    with storage.open_read(uri) as fh:
        assert fh.read(10) == data[:10]
        assert fh.read() == data[10:]

    storage.write_bytes(uri, b"replaced")
    assert storage.read_bytes(uri) == b"replaced"

    text_uri = storage.join(root, "note.txt")
    storage.write_bytes(text_uri, "größe ✓\n".encode())
    assert storage.read_text(text_uri) == "größe ✓\n"
    with pytest.raises(StorageError, match=r"note\.txt: not valid ascii text"):
        storage.read_text(text_uri, encoding="ascii")

    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # missing_ok by default
    with pytest.raises(NotFoundError, match="not found"):
        storage.delete(uri, missing_ok=False)


def test_open_write_publishes_only_on_clean_exit(root: str) -> None:
    uri = storage.join(root, "x", "obj.bin")
    with pytest.raises(RuntimeError, match="boom"):
        with storage.open_write(uri) as fh:
            fh.write(b"partial data")
            raise RuntimeError("boom")
    assert not storage.exists(uri)

    storage.write_bytes(uri, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with storage.open_write(uri) as fh:
            fh.write(b"new but unfinished")
            raise RuntimeError("boom")
    assert storage.read_bytes(uri) == b"old"  # the old object is untouched

    with storage.open_write(uri) as fh:
        fh.write(b"new ")
        fh.write(b"and complete")
        assert storage.read_bytes(uri) == b"old"  # still the old one while writing
    assert storage.read_bytes(uri) == b"new and complete"
    assert storage.list_files(root) == [uri]  # no temp files left behind or listed


def test_ranged_reads_are_exact(root: str) -> None:
    data = blob(10_000, seed=2)
    uri = storage.join(root, "r.bin")
    storage.write_bytes(uri, data)
    cases = [(0, 1), (0, 10_000), (1234, 1), (1234, 4321), (9_990, 10), (5_000, None), (None, 7)]
    for start, length in cases:
        first = start or 0
        want = data[first:] if length is None else data[first : first + length]
        assert storage.read_bytes(uri, start, length) == want, (start, length)
    # Like file.read: a range that runs past the end is cut short, one past it is empty.
    assert storage.read_bytes(uri, 9_995, 100) == data[9_995:]
    assert storage.read_bytes(uri, 10_000, 5) == b""
    assert storage.read_bytes(uri, 50_000) == b""
    assert storage.read_bytes(uri, 3, 0) == b""
    with pytest.raises(StorageError, match="start must be >= 0"):
        storage.read_bytes(uri, -1, 5)


def test_missing_object_is_not_found_naming_the_uri(root: str, tmp_path: Path) -> None:
    uri = storage.join(root, "no", "such.bin")
    assert not storage.exists(uri)
    for op in (
        lambda: storage.read_bytes(uri),
        lambda: storage.read_bytes(uri, 10, 5),
        lambda: storage.read_bytes(uri, 0, 0),
        lambda: storage.size(uri),
        lambda: storage.open_read(uri),
        lambda: storage.read_text(uri),
    ):
        with pytest.raises(NotFoundError) as info:
            op()
        assert str(info.value) == f"{uri}: not found"

    dest = tmp_path / "dl" / "such.bin"
    with pytest.raises(NotFoundError) as info:
        storage.download_file(uri, dest)
    assert str(info.value) == f"{uri}: not found"
    assert not dest.exists()
    with pytest.raises(NotFoundError):
        with storage.local_copy(uri):
            pass


def test_list_files_recursive_sorted_with_suffix(root: str) -> None:
    names = ["b.mp4", "a/z.mp4", "a/y.json", "a/deep/x.mp4", "ab/w.mp4", ".hidden.mp4", "a/.tmp"]
    for i, name in enumerate(names):
        storage.write_bytes(storage.join(root, name), bytes([i]))
    visible = sorted(
        storage.join(root, n) for n in names if not n.rsplit("/", 1)[-1].startswith(".")
    )
    assert storage.list_files(root) == visible
    assert storage.list_files(root, suffix=".mp4") == [
        storage.join(root, n) for n in ["a/deep/x.mp4", "a/z.mp4", "ab/w.mp4", "b.mp4"]
    ]
    # A prefix is a folder: "a" does not take in "ab/".
    assert storage.list_files(storage.join(root, "a")) == [
        storage.join(root, n) for n in ["a/deep/x.mp4", "a/y.json", "a/z.mp4"]
    ]
    assert storage.list_files(storage.join(root, "a") + "/", suffix=".json") == [
        storage.join(root, "a/y.json")
    ]
    for uri in storage.list_files(root):
        assert storage.read_bytes(uri) == bytes([names.index(uri[len(root) + 1 :])])


def test_upload_download_and_local_copy(root: str, tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    data = blob(300_000, seed=3)
    src.write_bytes(data)
    uri = storage.join(root, "videos", "clip one.mp4")
    storage.upload_file(src, uri)
    assert storage.read_bytes(uri) == data

    dest = tmp_path / "out" / "copy.mp4"
    storage.download_file(uri, dest)
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["copy.mp4"]  # no temp left

    with storage.local_copy(uri) as path:
        assert path.read_bytes() == data
        assert path.name == "clip one.mp4"  # the name (and extension) survives
        if storage.is_remote(uri):
            kept = path
        else:
            assert path == Path(uri)  # local: the file itself, no copy
    if storage.is_remote(uri):
        assert not kept.exists() and not kept.parent.exists()

    with pytest.raises(NotFoundError, match="missing.mp4: not found"):
        storage.upload_file(tmp_path / "missing.mp4", storage.join(root, "m.mp4"))
    assert not storage.exists(storage.join(root, "m.mp4"))


def test_open_seekable_matches_slices(root: str) -> None:
    data = blob(3 * MIB + 17, seed=4)
    uri = storage.join(root, "seek.bin")
    storage.write_bytes(uri, data)
    rng = random.Random(5)
    with storage.open_seekable(uri, block_size=256 * 1024) as fh:
        assert fh.seekable()
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == data[-10:]
        for _ in range(20):
            pos, n = rng.randrange(len(data)), rng.randrange(1, 600_000)
            fh.seek(pos)
            assert fh.read(n) == data[pos : pos + n]
            assert fh.tell() == min(pos + n, len(data))


def test_threads_share_the_backend(root: str) -> None:
    def work(i: int) -> bytes:
        uri = storage.join(root, f"th/{i}.bin")
        storage.write_bytes(uri, blob(5_000, seed=i))
        return storage.read_bytes(uri, 100, 50)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(work, range(24)))
    assert got == [blob(5_000, seed=i)[100:150] for i in range(24)]
    assert len(storage.list_files(storage.join(root, "th"))) == 24


# --- local only ---------------------------------------------------------------------------------


def test_local_write_in_progress_is_invisible(tmp_path: Path) -> None:
    target = tmp_path / "shards" / "shard-000.tar"
    with storage.open_write(str(target)) as fh:
        fh.write(blob(2 * MIB, seed=6))
        fh.flush()
        assert not target.exists()
        temps = list(target.parent.iterdir())
        # The bytes are on disk under a dot-prefixed sibling name that listing skips.
        assert len(temps) == 1 and temps[0].name.startswith(".shard-000.tar.tmp-")
        assert temps[0].stat().st_size == 2 * MIB
        assert storage.list_files(str(target.parent)) == []
    assert target.read_bytes() == blob(2 * MIB, seed=6)
    assert [p.name for p in target.parent.iterdir()] == ["shard-000.tar"]


def test_local_errors_name_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    with pytest.raises(StorageError, match=rf"^{folder}: is a directory"):
        storage.read_bytes(str(folder))
    with pytest.raises(StorageError, match=rf"^{folder}: is a directory"):
        storage.write_bytes(str(folder), b"x")
    with pytest.raises(NotFoundError, match=rf"^{tmp_path / 'nope'}: not found$"):
        storage.list_files(str(tmp_path / "nope"))
    (tmp_path / "f").write_bytes(b"1")
    with pytest.raises(StorageError, match="not a directory"):
        storage.list_files(str(tmp_path / "f"))
    assert storage.read_bytes(f"file://{tmp_path / 'f'}") == b"1"


def test_join_and_schemes() -> None:
    assert storage.join("/data/root", "a/b", "c.mp4") == "/data/root/a/b/c.mp4"
    assert storage.join("s3://bkt", "a", "b.mp4") == "s3://bkt/a/b.mp4"
    assert storage.join("s3://bkt/pre/", "a") == "s3://bkt/pre/a"
    assert storage.join("https://host/x", "y z.json") == "https://host/x/y z.json"
    assert storage.join("s3://bkt/p", "", "k") == "s3://bkt/p/k"
    assert storage.join("-dir", "-v.mp4") == "-dir/-v.mp4"
    for bad in ("../escape", "a/../../b", "/etc/passwd", "s3://other/key"):
        with pytest.raises(StorageError, match="would leave the base"):
            storage.join("s3://bkt/root", bad)
        with pytest.raises(StorageError, match="would leave the base"):
            storage.join("/data/root", bad)
    assert storage.is_remote("s3://b/k") and storage.is_remote("HTTPS://h/x")
    assert not storage.is_remote("/x/y") and not storage.is_remote("file:///x")
    with pytest.raises(StorageError, match=r"gs://b/k: unsupported URI scheme 'gs'"):
        storage.exists("gs://b/k")


# --- S3 only ------------------------------------------------------------------------------------


def test_s3_multipart_upload_is_multipart_and_atomic(s3_server, s3_calls, tmp_path: Path) -> None:
    uri = s3_server.uri(f"mp-{uuid.uuid4().hex[:8]}/big.bin")
    data = blob(20 * MIB + 123, seed=7)  # threshold and part size are 8 MiB: 3 parts
    src = tmp_path / "big.bin"
    src.write_bytes(data)

    seen_mid_upload: list[bool] = []
    s3_calls.after["UploadPart"] = lambda: seen_mid_upload.append(storage.exists(uri))
    storage.upload_file(src, uri)

    assert s3_calls.count("CreateMultipartUpload") == 1
    assert s3_calls.count("UploadPart") == 3
    assert s3_calls.count("CompleteMultipartUpload") == 1
    assert s3_calls.count("PutObject") == 0
    # While parts were arriving the object did not exist under its name.
    assert seen_mid_upload == [False, False, False]
    assert storage.size(uri) == len(data)
    assert storage.read_bytes(uri) == data
    assert s3_server.path(uri.split("/", 3)[3]).read_bytes() == data

    # The same through open_write and write_bytes.
    for writer in ("open_write", "write_bytes"):
        s3_calls.calls.clear()
        other = uri + "." + writer
        if writer == "open_write":
            with storage.open_write(other) as fh:
                for i in range(0, len(data), 3 * MIB):
                    fh.write(data[i : i + 3 * MIB])
        else:
            storage.write_bytes(other, data)
        assert s3_calls.count("UploadPart") == 3, writer
        assert storage.read_bytes(other) == data

    # Small objects are a single PUT.
    s3_calls.calls.clear()
    storage.write_bytes(uri + ".small", b"tiny")
    assert s3_calls.count("PutObject") == 1 and s3_calls.count("UploadPart") == 0


def test_s3_failed_multipart_upload_publishes_nothing(s3_server, s3_calls, tmp_path) -> None:
    uri = s3_server.uri(f"abort-{uuid.uuid4().hex[:8]}/big.bin")
    storage.write_bytes(uri, b"previous version")
    src = tmp_path / "big.bin"
    src.write_bytes(blob(20 * MIB, seed=8))

    class Cut(Exception):
        pass

    parts: list[int] = []

    def cut_after_second_part() -> None:
        parts.append(1)
        if len(parts) == 2:
            raise Cut("connection lost (test)")

    s3_calls.after["UploadPart"] = cut_after_second_part
    with pytest.raises(Cut):
        storage.upload_file(src, uri)
    assert s3_calls.count("AbortMultipartUpload") == 1
    assert s3_calls.count("CompleteMultipartUpload") == 0
    assert storage.read_bytes(uri) == b"previous version"
    assert storage.list_files(uri.rsplit("/", 1)[0]) == [uri]
    # Nothing left on the server's disk either (no temp object from the aborted upload).
    folder = s3_server.path(uri.split("/", 3)[3]).parent
    assert [p.name for p in folder.iterdir()] == ["big.bin"]


def test_s3_ranged_read_sends_range_get(s3_server, s3_calls) -> None:
    uri = s3_server.uri(f"rg-{uuid.uuid4().hex[:8]}.bin")
    data = blob(50_000, seed=9)
    storage.write_bytes(uri, data)
    s3_calls.calls.clear()
    s3_calls.params.clear()
    assert storage.read_bytes(uri, 40_000, 1_000) == data[40_000:41_000]
    gets = [p for c, p in zip(s3_calls.calls, s3_calls.params, strict=True) if c == "GetObject"]
    assert len(gets) == 1 and gets[0]["Range"] == "bytes=40000-40999"


def test_s3_missing_bucket(s3_server) -> None:
    with pytest.raises(NotFoundError, match=r"^s3://no-such-bucket/k: not found \(bucket"):
        storage.read_bytes("s3://no-such-bucket/k")
    with pytest.raises(NotFoundError, match="no-such-bucket"):
        storage.list_files("s3://no-such-bucket/prefix")
    assert storage.list_files(s3_server.uri("empty-prefix-" + uuid.uuid4().hex)) == []
    with pytest.raises(StorageError, match="S3 URI has no key"):
        storage.read_bytes(f"s3://{s3_server.bucket}/")


def _assert_secret_hidden(exc: BaseException, *secrets: str) -> None:
    printed = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for secret in secrets:
        for text in (str(exc), repr(exc), repr(exc.args), printed):
            assert secret not in text
    assert exc.__cause__ is None and exc.__context__ is None


@pytest.mark.parametrize("which", ["secret", "access_key"])
def test_s3_wrong_credentials_are_access_denied_without_the_secret(
    s3_server, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    uri = s3_server.uri(f"cred-{uuid.uuid4().hex[:8]}.txt")
    storage.write_bytes(uri, b"guarded")
    wrong_secret = "WRONG-secret-" + uuid.uuid4().hex
    if which == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "LONGVIDUNKNOWNKEYID0")
    ops = {
        "read": lambda: storage.read_bytes(uri),
        "size": lambda: storage.size(uri),
        "write": lambda: storage.write_bytes(uri, b"x"),
        "list": lambda: storage.list_files(s3_server.uri("")),
    }
    for name, op in ops.items():
        with pytest.raises(AccessDeniedError) as info:
            op()
        message = str(info.value)
        assert message.startswith(f"{uri if name != 'list' else s3_server.uri('')}: access denied")
        assert "credentials were refused" in message, name
        _assert_secret_hidden(info.value, wrong_secret, s3_server.secret_key)
    monkeypatch.undo()
    assert storage.read_bytes(uri) == b"guarded"  # right credentials work again


def test_s3_unreachable_endpoint_is_a_storage_error(s3_server) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # nothing listens once the socket closes
    try:
        storage.configure(S3Config(endpoint_url=f"http://127.0.0.1:{dead}", max_attempts=1))
        uri = s3_server.uri("anything.bin")
        with pytest.raises(
            StorageError, match=rf"^{uri}: S3 request failed: EndpointConnectionError"
        ):
            storage.read_bytes(uri)
    finally:
        storage.configure(s3_server.s3_config)


def test_s3_server_env_reaches_subprocesses(s3_server) -> None:
    uri = s3_server.uri(f"sub-{uuid.uuid4().hex[:8]}.txt")
    storage.write_bytes(uri, b"from the parent")
    code = (
        "import sys; from longvid import storage; "
        "sys.stdout.write(storage.read_text(sys.argv[1])); "
        "storage.write_bytes(sys.argv[1] + '.reply', b'from the child')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout == "from the parent"
    assert storage.read_bytes(uri + ".reply") == b"from the child"
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint_url


# --- HTTP(S) ------------------------------------------------------------------------------------


def test_http_reads(http_server) -> None:
    data = blob(70_000, seed=10)
    (http_server.root / "sub").mkdir()
    (http_server.root / "sub" / "v 1.mp4").write_bytes(data)
    uri = http_server.url("sub/v 1.mp4")
    assert "%20" in uri
    assert storage.exists(uri)
    assert storage.size(uri) == len(data)
    assert storage.read_bytes(uri) == data
    with storage.open_read(uri) as fh:
        assert fh.read() == data

    http_server.requests.clear()
    assert storage.read_bytes(uri, 1_000, 500) == data[1_000:1_500]
    assert storage.read_bytes(uri, 69_990) == data[69_990:]
    ranges = [h.get("Range") for m, _, h in http_server.requests if m == "GET"]
    assert ranges == ["bytes=1000-1499", "bytes=69990-"]
    assert storage.read_bytes(uri, 70_000, 10) == b""  # 416 from the server

    with storage.local_copy(uri) as path:
        assert path.name == "v 1.mp4" and path.read_bytes() == data
    with storage.open_seekable(uri, block_size=8192) as fh:
        fh.seek(65_000)
        assert fh.read(100) == data[65_000:65_100]


def test_http_server_that_ignores_ranges(http_server) -> None:
    data = blob(30_000, seed=11)
    (http_server.root / "f.bin").write_bytes(data)
    http_server.honour_ranges = False
    assert storage.read_bytes(http_server.url("f.bin"), 25_000, 100) == data[25_000:25_100]


def test_http_errors_and_read_only(http_server) -> None:
    missing = http_server.url("nope.bin")
    assert not storage.exists(missing)
    with pytest.raises(NotFoundError) as info:
        storage.read_bytes(missing)
    assert str(info.value) == f"{missing}: not found"
    (http_server.root / "f.bin").write_bytes(b"abc")
    uri = http_server.url("f.bin")
    for op in (
        lambda: storage.write_bytes(uri, b"x"),
        lambda: storage.delete(uri),
        lambda: storage.upload_file(http_server.root / "f.bin", uri),
        lambda: storage.list_files(http_server.base_url),
    ):
        with pytest.raises(StorageError, match="^" + re.escape(http_server.base_url)):
            op()
    with pytest.raises(StorageError, match="read-only"):
        with storage.open_write(uri):
            pass


def test_http_retries_transient_errors(http_server) -> None:
    (http_server.root / "f.bin").write_bytes(b"payload")
    uri = http_server.url("f.bin")
    http_server.fail_next["/f.bin"] = 2
    assert storage.read_bytes(uri) == b"payload"
    assert [m for m, _, _ in http_server.requests] == ["GET", "GET", "GET"]

    http_server.fail_next["/f.bin"] = 10
    storage.configure(storage.current_s3_config(), http_attempts=2)
    try:
        with pytest.raises(StorageError, match=rf"^{uri}: HTTP 503"):
            storage.read_bytes(uri)
    finally:
        storage.configure(storage.current_s3_config(), http_attempts=4)


def test_http_cut_connection_fails_loudly(http_server, tmp_path: Path) -> None:
    data = blob(200_000, seed=12)
    (http_server.root / "shard.tar").write_bytes(data)
    uri = http_server.url("shard.tar")
    http_server.truncate["/shard.tar"] = 50_000
    with pytest.raises(StorageError, match=rf"^{re.escape(uri)}: HTTP body read failed"):
        storage.read_bytes(uri)
    with pytest.raises(StorageError, match="HTTP body read failed"):
        with storage.open_read(uri) as fh:
            fh.read()
    with pytest.raises(StorageError, match=r"truncated body: got 50000 of 200000 bytes"):
        with storage.open_read(uri) as fh:
            while fh.read(4096):  # reads that ask for a size: http.client would not complain
                pass
    dest = tmp_path / "dl" / "shard.tar"
    with pytest.raises(StorageError, match="truncated body"):
        storage.download_file(uri, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial file


def test_http_size_without_head(http_server) -> None:
    (http_server.root / "f.bin").write_bytes(b"0123456789")
    (http_server.root / "empty.bin").write_bytes(b"")
    http_server.refuse_head = True
    assert storage.size(http_server.url("f.bin")) == 10  # from a one-byte Range GET
    assert storage.exists(http_server.url("f.bin"))
    assert storage.size(http_server.url("empty.bin")) == 0
    assert not storage.exists(http_server.url("nope.bin"))
