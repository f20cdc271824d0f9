"""Read-only HTTP(S) with the standard library: HEAD for size, ``Range`` GETs, timeouts and
retries for connection errors, 429 and 5xx."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from longvid.errors import AccessDeniedError, NotFoundError, StorageError
from longvid.storage.streams import RangeError, StreamReader, discard, read_up_to

_RETRY_STATUS = {429, 500, 502, 503, 504}
_timeout_s: float = 60.0
_attempts: int = 4
_first_backoff_s = 0.2


def set_options(timeout_s: float | None = None, attempts: int | None = None) -> None:
    global _timeout_s, _attempts
    if timeout_s is not None:
        _timeout_s = float(timeout_s)
    if attempts is not None:
        _attempts = max(1, int(attempts))


def _quote(url: str) -> str:
    # Quote characters that are not legal in a URL (spaces, non-ASCII) but keep existing escapes.
    return urllib.parse.quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def request(uri: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    """``urlopen`` with a timeout, retries with backoff, and typed errors."""
    req = urllib.request.Request(_quote(uri), method=method, headers=headers or {})
    delay = _first_backoff_s
    for attempt in range(1, _attempts + 1):
        try:
            return urllib.request.urlopen(req, timeout=_timeout_s)
        except urllib.error.HTTPError as exc:
            status, reason = exc.code, exc.reason
            exc.close()
            if status in (404, 410):
                raise NotFoundError(f"{uri}: not found") from None
            if status in (401, 403):
                raise AccessDeniedError(f"{uri}: access denied (HTTP {status})") from None
            if status == 416:
                raise RangeError(f"{uri}: requested range starts past the end") from None
            if status not in _RETRY_STATUS or attempt == _attempts:
                raise StorageError(f"{uri}: HTTP {status} {reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            if attempt == _attempts:
                why = getattr(exc, "reason", None) or exc
                raise StorageError(
                    f"{uri}: HTTP request failed after {attempt} tries: {why}"
                ) from None
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def translate(uri: str, exc: Exception) -> StorageError | None:
    if isinstance(exc, OSError | ValueError | http.client.HTTPException):
        # IncompleteRead (truncated body), connection reset, socket timeout
        return StorageError(f"{uri}: HTTP body read failed: {type(exc).__name__}: {exc}")
    return None


def _content_length(resp: Any) -> int | None:
    value = resp.headers.get("Content-Length")
    if value is None or resp.headers.get("Content-Encoding") not in (None, "identity"):
        return None
    return int(value) if value.strip().isdigit() else None


def _reader(uri: str, resp: Any) -> StreamReader:
    return StreamReader(uri, resp, translate, _content_length(resp))


def open_body(uri: str) -> StreamReader:
    return _reader(uri, request(uri))


def size(uri: str) -> int:
    try:
        with request(uri, "HEAD") as resp:
            length = resp.headers.get("Content-Length")
    except (NotFoundError, AccessDeniedError):
        raise
    except StorageError:
        length = None  # some servers refuse HEAD: ask for one byte instead
    if length is not None:
        return int(length)
    try:
        with request(uri, "GET", {"Range": "bytes=0-0"}) as resp:
            content_range = resp.headers.get("Content-Range", "")
            total = content_range.rsplit("/", 1)[-1]
            if resp.status == 206 and total.isdigit():
                return int(total)
            if resp.status == 200 and resp.headers.get("Content-Length") is not None:
                return int(resp.headers["Content-Length"])
    except RangeError:
        return 0  # an empty resource: no byte 0 to send
    raise StorageError(f"{uri}: the server reports no size (no Content-Length)")


def exists(uri: str) -> bool:
    try:
        size(uri)
    except NotFoundError:
        return False
    return True


def read_range(uri: str, start: int | None, length: int | None) -> bytes:
    first = start or 0
    headers: dict[str, str] = {}
    if first or length is not None:
        headers["Range"] = f"bytes={first}-" + ("" if length is None else str(first + length - 1))
    try:
        resp = request(uri, "GET", headers)
    except RangeError:
        return b""
    ignored_range = bool(headers) and resp.status == 200
    with _reader(uri, resp) as body:
        if ignored_range:
            discard(body, first)  # the server sent the whole body: skip to ``first``
        return body.readall() if length is None else read_up_to(body, length)
