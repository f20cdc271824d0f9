"""S3 (and S3-compatible servers) through boto3: one cached client per process and settings,
adaptive retries, timeouts, multipart uploads, and typed errors that never carry a secret."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from longvid.config import S3Config
from longvid.errors import AccessDeniedError, NotFoundError, StorageError
from longvid.storage.streams import RangeError, StreamReader

T = TypeVar("T")

_config: S3Config = S3Config()
_client_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}


def set_config(cfg: S3Config | None) -> None:
    global _config
    _config = cfg if cfg is not None else S3Config()


def get_config() -> S3Config:
    return _config


def split_uri(uri: str, *, need_key: bool = True) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: S3 URI has no bucket (expected s3://bucket/key)")
    if need_key and not key:
        raise StorageError(f"{uri}: S3 URI has no key (expected s3://bucket/key)")
    return bucket, key


# --- client -------------------------------------------------------------------------------------


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _settings() -> dict[str, Any]:
    cfg = _config
    endpoint = cfg.endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    region = cfg.region or _env("AWS_REGION", "AWS_DEFAULT_REGION")
    if region is None and endpoint:
        region = "us-east-1"  # S3-compatible servers ignore it, but SigV4 signing needs one
    return {
        "endpoint": endpoint,
        "region": region,
        "profile": cfg.profile or _env("AWS_PROFILE"),
        "max_attempts": cfg.max_attempts,
        "connect_timeout": cfg.connect_timeout_s,
        "read_timeout": cfg.read_timeout_s,
    }


def _credentials_fingerprint() -> tuple[str | None, str | None]:
    # New credentials in the environment (a rotated key) get a new client; only a hash of the
    # secret is kept.
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    token = os.environ.get("AWS_SESSION_TOKEN") or ""
    digest = hashlib.sha256(f"{secret}\0{token}".encode()).hexdigest() if secret else None
    return os.environ.get("AWS_ACCESS_KEY_ID"), digest


def client() -> Any:
    """The boto3 S3 client for the current settings: cached per process (a forked or Ray worker
    process makes its own) and shared by threads (boto3 clients are thread-safe)."""
    settings = _settings()
    key = (os.getpid(), tuple(sorted(settings.items())), _credentials_fingerprint())
    found = _clients.get(key)
    if found is not None:
        return found
    with _client_lock:
        found = _clients.get(key)
        if found is None:
            found = _make_client(settings)
            _clients[key] = found
    return found


def _make_client(settings: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "max_attempts": settings["max_attempts"]},
        connect_timeout=settings["connect_timeout"],
        read_timeout=settings["read_timeout"],
        s3={"addressing_style": "path"} if settings["endpoint"] else {},
        # Some S3-compatible servers (rclone among them) send the whole object's checksum with a
        # ranged GET, which botocore would then reject; full-object GETs ask for validation
        # explicitly instead (see ``get_body``).
        response_checksum_validation="when_required",
        max_pool_connections=32,
    )
    try:
        # Sessions are not thread-safe: one per client, made under the lock.
        session = boto3.session.Session(profile_name=settings["profile"])
        return session.client(
            "s3", endpoint_url=settings["endpoint"], region_name=settings["region"], config=config
        )
    except Exception as exc:  # ProfileNotFound, bad endpoint URL, ...
        error = StorageError(f"S3: cannot create a client: {type(exc).__name__}: {exc}")
    raise error


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=_config.multipart_threshold_mb << 20,
        multipart_chunksize=_config.multipart_chunk_mb << 20,
        max_concurrency=4,
        use_threads=True,
    )


# --- errors -------------------------------------------------------------------------------------

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED_CODES = {
    "401",
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
}


def _client_error_in(exc: BaseException) -> Any:
    """The botocore ClientError in ``exc`` or its cause/context chain, or None."""
    from botocore.exceptions import ClientError

    node: BaseException | None = exc
    for _ in range(10):
        if node is None:
            return None
        if isinstance(node, ClientError):
            return node
        node = node.__cause__ or node.__context__
    return None


def is_boto_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError) or _client_error_in(exc) is not None


def to_storage_error(uri: str, exc: BaseException) -> StorageError:
    """The typed error for a botocore/s3transfer failure. Only the error code, HTTP status and
    the server's message go into it, never request data or credentials."""
    from botocore.exceptions import IncompleteReadError, NoCredentialsError, PartialCredentialsError

    client_error = _client_error_in(exc)
    if client_error is not None:
        err = client_error.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = client_error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            bucket = split_uri(uri, need_key=False)[0]
            return NotFoundError(f"{uri}: not found (bucket {bucket!r} does not exist)")
        if code in _NOT_FOUND_CODES or status == 404:
            return NotFoundError(f"{uri}: not found")
        if code == "InvalidRange" or status == 416:
            return RangeError(f"{uri}: requested range starts past the end of the object")
        if code in _DENIED_CODES or status in (401, 403):
            label = code if code and not code.isdigit() else f"HTTP {status}"
            return AccessDeniedError(
                f"{uri}: access denied ({label}): the credentials were refused or lack permission"
            )
        message = str(err.get("Message", "")).strip()
        detail = f"{code} {message}".strip() or f"HTTP {status}"
        return StorageError(f"{uri}: S3 request failed: {detail}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDeniedError(
            f"{uri}: no usable S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE)"
        )
    if isinstance(exc, IncompleteReadError):
        return StorageError(f"{uri}: truncated read: {exc}")
    return StorageError(f"{uri}: S3 request failed: {type(exc).__name__}: {exc}")


def translate(uri: str, exc: Exception) -> StorageError | None:
    return to_storage_error(uri, exc) if is_boto_error(exc) else None


def call(uri: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one boto3 operation, translating its errors. The typed error is raised outside the
    ``except`` block, so botocore's exception is not attached to it as context."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if not is_boto_error(exc):
            raise
        error = to_storage_error(uri, exc)
    raise error


# --- operations ---------------------------------------------------------------------------------


def head(uri: str) -> dict[str, Any]:
    bucket, key = split_uri(uri)
    return call(uri, client().head_object, Bucket=bucket, Key=key)


def exists(uri: str) -> bool:
    try:
        head(uri)
    except NotFoundError:
        return False
    return True


def get_body(uri: str, start: int | None = None, length: int | None = None) -> StreamReader:
    """The object's body as a raw stream: whole (checksum-validated when the server sends one)
    or the byte range ``[start, start + length)``."""
    bucket, key = split_uri(uri)
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if start or length is not None:
        first = start or 0
        args["Range"] = f"bytes={first}-" + ("" if length is None else str(first + length - 1))
    else:
        args["ChecksumMode"] = "ENABLED"
    resp = call(uri, client().get_object, **args)
    return StreamReader(uri, resp["Body"], translate, resp.get("ContentLength"))


def read_range(uri: str, start: int | None, length: int | None) -> bytes:
    try:
        body = get_body(uri, start, length)
    except RangeError:
        return b""
    with body:
        return body.readall()


def upload_fileobj(fileobj: BinaryIO, uri: str) -> None:
    """Upload (multipart above the threshold). S3 shows the object only once the upload
    completes; s3transfer aborts a failed multipart upload, so nothing partial is published."""
    bucket, key = split_uri(uri)
    call(uri, client().upload_fileobj, fileobj, bucket, key, Config=_transfer_config())


def download_fileobj(uri: str, fh: BinaryIO) -> None:
    bucket, key = split_uri(uri)
    call(uri, client().download_fileobj, bucket, key, fh, Config=_transfer_config())


def list_prefix(uri: str, suffix: str | None) -> list[str]:
    return sorted(list_prefix_sizes(uri, suffix))


def list_prefix_sizes(uri: str, suffix: str | None = None) -> dict[str, int]:
    """Objects below a prefix taken as a folder → their sizes, from the paginated LIST."""
    bucket, prefix = split_uri(uri, need_key=False)
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # a prefix names a folder, as local paths do
    out: dict[str, int] = {}

    def collect() -> None:
        out.clear()  # a retried listing starts over
        paginator = client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                name = key.rsplit("/", 1)[-1]
                if not name or name.startswith("."):
                    continue
                if suffix and not key.endswith(suffix):
                    continue
                out[f"s3://{bucket}/{key}"] = int(obj["Size"])

    call(uri, collect)
    return dict(sorted(out.items()))


def delete(uri: str) -> None:
    bucket, key = split_uri(uri)
    call(uri, client().delete_object, Bucket=bucket, Key=key)


# --- incomplete multipart uploads ---------------------------------------------------------------
# A writer killed mid-upload (worker or node death, SIGKILL) leaves its multipart upload open:
# the parts are stored and billed, yet no listing of objects shows them.


def list_uploads(uri: str) -> list[tuple[str, str, Any]]:
    """Open multipart uploads under a prefix (taken as a folder): (object URI, upload id,
    initiated datetime), sorted."""
    bucket, prefix = split_uri(uri, need_key=False)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    out: list[tuple[str, str, Any]] = []

    def collect() -> None:
        paginator = client().get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for up in page.get("Uploads", []):
                    key = up["Key"]
                    out.append((f"s3://{bucket}/{key}", up["UploadId"], up.get("Initiated")))
        except Exception as exc:
            # rclone (gofakes3) answers NoSuchUpload for a prefix with no object under it,
            # where AWS answers an empty list
            error = _client_error_in(exc)
            if error is None or error.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    call(uri, collect)
    return sorted(out, key=lambda u: (u[0], u[1]))


def abort_upload(uri: str, upload_id: str) -> None:
    """Abort one multipart upload (its parts are deleted); one already gone is fine."""
    bucket, key = split_uri(uri)
    try:
        call(uri, client().abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
    except NotFoundError:
        pass  # NoSuchUpload: completed or aborted meanwhile
