"""The main caption of a sample (``KEY.txt``), chosen from the texts that fall inside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WHOLE_KINDS = ("caption", "title")
RUNNING_KINDS = ("narration", "asr")


def _covers(t: dict[str, Any]) -> bool:
    return not t.get("clipped", False)


def main_caption(
    texts: Sequence[dict[str, Any]], prefer_origins: Sequence[str], max_chars: int
) -> str:
    """A caption that describes the whole sample, if the release has one (preferred origins
    first, then the first such caption); else a summary covering it; else the narrations/ASR
    inside it joined in time order (repeats dropped, cut at ``max_chars`` on a word boundary);
    else any caption overlapping it; else ``""``."""
    whole = [t for t in texts if t.get("kind") in WHOLE_KINDS and _covers(t) and _ok(t)]
    for origin in prefer_origins:
        for t in whole:
            if t.get("origin") == origin:
                return t["text"].strip()
    if whole:
        return whole[0]["text"].strip()
    summaries = [t for t in texts if t.get("kind") == "summary" and _covers(t) and _ok(t)]
    if summaries:
        return summaries[0]["text"].strip()
    running: list[str] = []
    for t in texts:
        if t.get("kind") in RUNNING_KINDS and _ok(t):
            text = " ".join(t["text"].split())
            if text and (not running or running[-1] != text):
                running.append(text)
    if running:
        return _cut(" ".join(running), max_chars)
    partial = [t for t in texts if t.get("kind") in (*WHOLE_KINDS, "summary") and _ok(t)]
    return partial[0]["text"].strip() if partial else ""


def _ok(t: dict[str, Any]) -> bool:
    return isinstance(t.get("text"), str) and bool(t["text"].strip())


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut or text[:max_chars]
