"""Stream helpers shared by the network backends."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from longvid.errors import StorageError

Translate = Callable[[str, Exception], "StorageError | None"]

COPY_CHUNK = 8 << 20


class RangeError(StorageError):
    """A ranged read started at or past the end of the object (S3 InvalidRange / HTTP 416)."""


class StreamReader(io.RawIOBase):
    """Wraps a network body (botocore stream or HTTP response) so that reads raise typed errors:
    a cut connection or a truncated body is a StorageError naming the URI, never a silently
    short file. ``translate`` returns the typed error for an exception, or None to re-raise;
    ``expected_size`` (the Content-Length) is checked when the body ends, because
    ``http.client`` returns a short body without complaint when reads ask for a size."""

    def __init__(self, uri: str, body: Any, translate: Translate, expected_size: int | None = None):
        self._uri = uri
        self._body = body
        self._translate = translate
        self._expected = expected_size
        self._received = 0

    def readable(self) -> bool:
        return True

    def _guarded_read(self, amount: int | None) -> bytes:
        try:
            data = self._body.read() if amount is None else self._body.read(amount)
        except Exception as exc:
            error = self._translate(self._uri, exc)
            if error is None:
                raise
        else:
            self._received += len(data)
            if (amount is None or (amount and not data)) and self._expected is not None:
                if self._received < self._expected:
                    raise StorageError(
                        f"{self._uri}: truncated body: got {self._received} of "
                        f"{self._expected} bytes (connection cut?)"
                    )
            return data
        raise error  # outside ``except``: the original is not chained (it may carry request data)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._guarded_read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self._guarded_read(None)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            except Exception:  # closing a broken connection must not mask the real error
                pass
        super().close()


def read_up_to(stream: Any, count: int) -> bytes:
    """Read ``count`` bytes, or fewer only at EOF (a raw stream may return less per call)."""
    parts = []
    while count > 0:
        chunk = stream.read(count)
        if not chunk:
            break
        parts.append(chunk)
        count -= len(chunk)
    return b"".join(parts)


def discard(stream: Any, count: int) -> None:
    """Skip ``count`` bytes of a non-seekable stream."""
    while count > 0:
        chunk = stream.read(min(count, COPY_CHUNK))
        if not chunk:
            return
        count -= len(chunk)
