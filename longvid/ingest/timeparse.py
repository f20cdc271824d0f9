"""Time values as the releases write them → float seconds from the start of the video.

Every parser raises :class:`TimeParseError` (a ``ValueError``) with the offending value in the
message; adapters turn that into a reject or a dropped item. Results are rounded to the
microsecond so that float artefacts such as ``68.46000000000001`` read back as ``68.46``.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

# Rounding applied to every parsed time: a microsecond is far below a frame at any fps.
TIME_DECIMALS = 6

# Longest list-literal string accepted; a real MiraData timestamp is ~30 characters.
MAX_LITERAL_CHARS = 10_000


class TimeParseError(ValueError):
    """A time value could not be read; the message names the value and why."""


def normalise_seconds(value: float) -> float:
    """Round to the microsecond (clears float artefacts) and map -0.0 to 0.0."""
    return round(float(value), TIME_DECIMALS) + 0.0


_HMS = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:[.,](\d*))?\s*$")


def parse_hms(text: str) -> float:
    """``H+:MM:SS[.fraction]`` → seconds.

    Any number of hour digits (``0:01:02``, ``123:00:00``) and any number of fraction digits
    (``00:00:01.5``, ``00:00:01.500``, ``00:00:01.500000``); a comma works as the decimal mark
    (SRT style). Minutes and seconds must be below 60.
    """
    if not isinstance(text, str):
        raise TimeParseError(f"{text!r}: expected a H:MM:SS.fff string")
    m = _HMS.match(text)
    if not m:
        raise TimeParseError(f"{text!r}: not a H:MM:SS.fff time")
    hours, minutes, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if minutes >= 60 or seconds >= 60:
        raise TimeParseError(f"{text!r}: minutes and seconds must be below 60")
    frac_digits = m.group(4) or ""
    frac = int(frac_digits) / 10 ** len(frac_digits) if frac_digits else 0.0
    return normalise_seconds(hours * 3600 + minutes * 60 + seconds + frac)


_ISO_DURATION = re.compile(
    r"^\s*P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?\s*$",
    re.IGNORECASE,
)
_ISO_UNITS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_iso_duration(text: str) -> float:
    """ISO-8601 duration (``PT00H00M17S``, ``PT1M30.5S``, ``P1DT2H``) → seconds.

    Years and months are refused: their length in seconds is not defined.
    """
    if not isinstance(text, str):
        raise TimeParseError(f"{text!r}: expected an ISO-8601 duration string")
    m = _ISO_DURATION.match(text)
    parts = {k: v for k, v in m.groupdict().items() if v is not None} if m else {}
    if not parts or text.strip().upper().endswith("T"):
        raise TimeParseError(f"{text!r}: not an ISO-8601 duration like PT00H00M17S")
    return normalise_seconds(sum(float(v) * _ISO_UNITS[k] for k, v in parts.items()))


def frames_to_seconds(frame: Any, fps: Any) -> float:
    """Frame index / frames per second → seconds (frame may be fractional, e.g. ``558.0``)."""
    f = parse_number(frame)
    rate = parse_number(fps)
    if rate <= 0:
        raise TimeParseError(f"fps {fps!r}: must be positive")
    return normalise_seconds(f / rate)


def parse_number(value: Any) -> float:
    """A finite, non-negative number given as int, float or numeric string."""
    if isinstance(value, bool):
        raise TimeParseError(f"{value!r}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise TimeParseError(f"{value!r}: not a number") from None
    else:
        raise TimeParseError(f"{value!r}: expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise TimeParseError(f"{value!r}: not a finite number")
    if number < 0:
        raise TimeParseError(f"{value!r}: negative time")
    return number


def parse_time(value: Any) -> float:
    """Seconds from a number, a numeric string or a ``H:MM:SS.fff`` string."""
    if isinstance(value, str) and ":" in value:
        return parse_hms(value)
    return normalise_seconds(parse_number(value))


def parse_span(start: Any, end: Any) -> tuple[float, float]:
    """Two time values → ``(start, end)`` seconds with ``end > start``."""
    s, e = parse_time(start), parse_time(end)
    if e <= s:
        raise TimeParseError(f"span [{start!r}, {end!r}]: end {e} is not after start {s}")
    return s, e


_LITERAL_NODES = (
    ast.Expression,
    ast.List,
    ast.Tuple,
    ast.Constant,
    ast.UnaryOp,
    ast.USub,
    ast.UAdd,
    ast.Load,
)


def parse_list_literal(text: str) -> list[Any]:
    """A string holding a Python list literal (``"['00:06:21.300', '00:07:42.133']"``,
    ``"[0, 558.0]"``) → a Python list.

    Only lists/tuples of strings and numbers (with an optional sign) are accepted; the string is
    parsed with :mod:`ast` and never evaluated, so names, calls, attribute access, dicts, sets and
    operators are refused.
    """
    if not isinstance(text, str):
        raise TimeParseError(f"{text!r}: expected a list literal string")
    if len(text) > MAX_LITERAL_CHARS:
        raise TimeParseError(f"list literal of {len(text)} characters is too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise TimeParseError(f"{text!r}: not a list literal") from None
    for node in ast.walk(tree):
        if not isinstance(node, _LITERAL_NODES):
            raise TimeParseError(f"{text!r}: only literal lists are allowed")
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, (str, int, float))
        ):
            raise TimeParseError(f"{text!r}: only strings and numbers are allowed")
        if isinstance(node, ast.UnaryOp) and not (
            isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)
        ):
            raise TimeParseError(f"{text!r}: a sign may only precede a number")
    if not isinstance(tree.body, (ast.List, ast.Tuple)):
        raise TimeParseError(f"{text!r}: not a list")
    return list(ast.literal_eval(tree))
