"""Time parsing and the NaN-tolerant JSON stream used by every adapter."""

from __future__ import annotations

import io
import json
import math

import ijson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longvid.ingest.streams import NanToNull
from longvid.ingest.timeparse import (
    TimeParseError,
    frames_to_seconds,
    parse_hms,
    parse_iso_duration,
    parse_list_literal,
    parse_span,
    parse_time,
)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("00:06:21.300", 381.3),
        ("00:00:09.90000", 9.9),  # five fraction digits
        ("00:00:25.1", 25.1),  # one fraction digit
        ("0:00:19.900", 19.9),  # one hour digit
        ("123:00:00", 442800.0),  # three hour digits, no fraction
        ("01:02:03.456789", 3723.456789),
        ("00:01:02,5", 62.5),  # SRT-style decimal comma
        (" 00:00:01.5 ", 1.5),
    ],
)
def test_hms_any_fraction_and_hour_digits(text, seconds):
    assert parse_hms(text) == seconds


@pytest.mark.parametrize("text", ["1:60:00", "00:00:60", "abc", "", "-1:00:00", "00:00", "1:2:3:4"])
def test_hms_rejects_malformed(text):
    with pytest.raises(TimeParseError) as exc:
        parse_hms(text)
    assert repr(text) in str(exc.value)


def test_hms_rejects_non_string():
    with pytest.raises(TimeParseError):
        parse_hms(12)  # type: ignore[arg-type]


def test_list_literals_parse_without_eval():
    assert parse_list_literal("['00:06:21.300', '00:07:42.133']") == [
        "00:06:21.300",
        "00:07:42.133",
    ]
    assert parse_list_literal("[0, 558.0]") == [0, 558.0]
    assert parse_list_literal("[[0, 5], [5, 9.5]]") == [[0, 5], [5, 9.5]]
    assert parse_list_literal("[-1, +2]") == [-1, 2]


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch /tmp/longvid-pwned')",
        "[__import__('os')]",
        "[1 + 2]",
        "{'a': 1}",
        "[x]",
        "[True, 1]",
        "[None, 1]",
        "{1, 2}",
        "'just a string'",
        "[1, 2",
        "[-'a']",
        "[" + "1, " * 5000 + "1]",  # too long
    ],
)
def test_list_literals_refuse_anything_else(text):
    with pytest.raises(TimeParseError):
        parse_list_literal(text)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("PT00H00M17S", 17.0),
        ("PT1M30.5S", 90.5),
        ("P1DT2H", 93600.0),
        ("pt00h01m00s", 60.0),
        ("PT0S", 0.0),
        ("P1W", 604800.0),
    ],
)
def test_iso_durations(text, seconds):
    assert parse_iso_duration(text) == seconds


@pytest.mark.parametrize("text", ["PT", "P", "P1Y", "P1M", "17", "PT17", "00:00:17", ""])
def test_iso_durations_refuse_malformed_or_ambiguous(text):
    with pytest.raises(TimeParseError):
        parse_iso_duration(text)


def test_frames_and_numbers():
    assert frames_to_seconds(558.0, 24) == 23.25
    assert frames_to_seconds("11439", "30") == 381.3
    with pytest.raises(TimeParseError):
        frames_to_seconds(10, 0)
    assert parse_time(68.46000000000001) == 68.46  # float artefact of the real HowTo100M file
    assert parse_time("12.5") == 12.5
    assert parse_time("00:00:12.5") == 12.5
    for bad in (float("nan"), float("inf"), -3, "-3", True, None, "twelve"):
        with pytest.raises(TimeParseError):
            parse_time(bad)


def test_span_end_must_follow_start():
    assert parse_span("00:00:01", "00:00:02.5") == (1.0, 2.5)
    with pytest.raises(TimeParseError) as exc:
        parse_span(5, 5)
    assert "not after start" in str(exc.value)


# ------------------------------------------------------------------- NaN tokens in JSON streams


def _filtered(data: bytes, chunk: int) -> tuple[bytes, int]:
    filt = NanToNull(io.BytesIO(data), chunk_size=chunk)
    out = b""
    while True:
        piece = filt.read(5)
        if not piece:
            return out, filt.replaced
        out += piece


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_nan_tokens_become_null_but_strings_are_untouched(chunk):
    data = (
        b'{"a": {"text": ["NaN is a word", NaN, "q\\"NaN\\", y", "\\\\", NaN], '
        b'"n": [-Infinity, Infinity, 1.5]}, "NaN": "Infinity,NaN"}'
    )
    out, replaced = _filtered(data, chunk)
    assert json.loads(out) == {
        "a": {"text": ["NaN is a word", None, 'q"NaN", y', "\\", None], "n": [None, None, 1.5]},
        "NaN": "Infinity,NaN",
    }
    assert replaced == 4


def test_ijson_reads_the_filtered_stream():
    data = b'{"v1": {"start": [1.0, NaN], "text": ["a", NaN]}, "-v2": {"start": [], "text": []}}'
    items = list(ijson.kvitems(NanToNull(io.BytesIO(data), chunk_size=4), "", use_float=True))
    assert items == [
        ("v1", {"start": [1.0, None], "text": ["a", None]}),
        ("-v2", {"start": [], "text": []}),
    ]


_json_text = st.text(alphabet=st.sampled_from(list('ab ,"\\:NaInfty[]{}\n\u00e9')), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | _json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_json_text, inner, max_size=4),
    max_leaves=20,
)


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


@settings(max_examples=200, deadline=None)
@given(
    value=st.dictionaries(_json_text, _json_values, max_size=5),
    chunk=st.integers(1, 40),
    ascii_only=st.booleans(),
)
def test_nan_filter_matches_python_json_on_random_documents(value, chunk, ascii_only):
    data = json.dumps(value, allow_nan=True, ensure_ascii=ascii_only).encode()
    out, _ = _filtered(data, chunk)
    assert json.loads(out) == _nan_to_none(value)
