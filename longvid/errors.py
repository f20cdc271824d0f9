"""Typed errors. Every message names the input (file, URI, key) and the reason.

The CLI prints ``longvid: error: <message>`` and exits non-zero for any LongvidError, so messages
are written to stand on their own on one line.
"""

from __future__ import annotations


class LongvidError(Exception):
    """Base class for every error longvid raises on purpose."""

    exit_code = 1


class ConfigError(LongvidError):
    """A config file or override is wrong: unknown key, wrong type, missing value."""

    exit_code = 2


class StorageError(LongvidError):
    """A URI could not be read or written."""


class NotFoundError(StorageError):
    """The object or file does not exist."""


class AccessDeniedError(StorageError):
    """Credentials were refused (the message never contains the secret)."""


class MediaError(LongvidError):
    """A video file could not be probed, decoded or cut.

    ``reason`` is a short machine-friendly tag (``unreadable``, ``no_video_stream``,
    ``zero_duration``, ``decode_failed``, ``cut_failed``, ``span_out_of_range``) used as the reject
    reason; the message says which file and why.
    """

    def __init__(self, uri: str, reason: str, detail: str = ""):
        self.uri = uri
        self.reason = reason
        self.detail = detail
        msg = f"{uri}: {reason}" + (f": {detail}" if detail else "")
        super().__init__(msg)


class FormatError(LongvidError):
    """A whole metadata file is in the wrong format (e.g. a MiraData v0 CSV given as v1)."""
