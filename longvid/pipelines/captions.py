"""The main caption of a sample (``KEY.txt``), chosen from the texts that fall inside it.

Scope rule: a text that describes the whole video (a generic folder's text, a WebVid name, a
HowTo100M task: no time range, or a range that is the whole video, as the ingest adapters write
them) is *video-level*: :func:`mark_video_level` marks it ``"scope": "video"`` in the sample's
texts. It is the caption of a sample only when the sample is the whole video; for a sub-clip it
stays video-level context (kept in ``texts`` and ``captions``, for long samples and the LLM) and
never becomes the clip's caption, which would describe things the clip does not show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WHOLE_KINDS = ("caption", "title")
RUNNING_KINDS = ("narration", "asr")


def _covers(t: dict[str, Any]) -> bool:
    return not t.get("clipped", False)


def video_level(t: dict[str, Any], video_duration: float, tol: float = 1.0) -> bool:
    """Whether a text of the *source record* (times in the source video) is about the whole
    video: no start; or a caption/title/summary starting at 0 with no end; or a range that is
    the whole video (within ``tol`` seconds: declared durations are rounded)."""
    start, end = t.get("start"), t.get("end")
    if start is None:
        return True
    if start > tol:
        return False
    if end is None:
        return t.get("kind") in (*WHOLE_KINDS, "summary")
    return end >= video_duration - tol


def mark_video_level(texts: Sequence[dict[str, Any]], source_texts: Sequence[dict[str, Any]],
                     video_duration: float) -> list[dict[str, Any]]:
    """``texts`` (re-timed to a sample) with ``"scope": "video"`` on those that come from a
    video-level text of ``source_texts`` (matched by text, kind and origin)."""
    whole = {(t.get("text"), t.get("kind"), t.get("origin")) for t in source_texts
             if video_level(t, video_duration)}
    return [{**t, "scope": "video"} if (t.get("text"), t.get("kind"), t.get("origin")) in whole
            else dict(t) for t in texts]


def main_caption(
    texts: Sequence[dict[str, Any]], prefer_origins: Sequence[str], max_chars: int,
    whole_video: bool = True,
) -> str:
    """A caption that describes the whole sample, if the release has one (preferred origins
    first, then the first such caption); else a summary covering it; else the narrations/ASR
    inside it joined in time order (repeats dropped, cut at ``max_chars`` on a word boundary);
    else any caption overlapping it; else ``""``.

    ``whole_video``: whether the sample is the whole video; when not, video-level texts (marked
    ``scope: video``, or without a start) are never the caption (see the module docstring).
    """
    if not whole_video:
        texts = [t for t in texts if t.get("scope") != "video" and t.get("start") is not None]
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
