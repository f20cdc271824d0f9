"""A sample's text: its conversation, the timestamp prompt, and the token ids.

The conversation is the sample's own (``KEY.json`` ``conversations``, LLaVA style) or, until
annotation writes one, the stage's question answered by the main caption. The tokenizer module
puts one ``<video>`` placeholder and the timestamp prompt built from the real duration and the
frame count (and, with ``frame_times_prompt``, every frame's time) at the start of the first
human turn; labels are -100 outside the answers. The ``plain`` template (stage 1) is
``<video>`` and the answer alone. An image has no timestamp sentence (its question is its image
component's).
"""

from __future__ import annotations

from typing import Any

from longvid.errors import FormatError
from longvid.training.data.config import StageData
from longvid.training.data.sample import LoadedSample, SampleError, default_conversation
from longvid.training.tokenizer import encode_conversation, encode_plain, timestamp_prompt


def prompt_for(sample: LoadedSample, cfg: StageData) -> str:
    """The timestamp sentence this sample's prompt carries."""
    times = [float(t) for t in sample.times] if cfg.frame_times_prompt else None
    return timestamp_prompt(sample.duration, len(sample.times), times)


def tokenize_sample(
    sample: LoadedSample,
    meta: dict[str, Any],
    row: dict[str, Any],
    cfg: StageData,
    tokenizer: Any | None,
    question: str | None = None,
) -> None:
    """Fill ``sample.conversations`` and (with a tokenizer) ``input_ids`` / ``labels``.

    ``question`` replaces the stage's (image components bring their own). Ids are cut to
    ``cfg.max_text_len``. A conversation the tokenizer module refuses (wrong
    turn order, no answer) makes the sample unusable: SampleError, and it gets a substitute.
    """
    sample.conversations = default_conversation(meta, row, question or cfg.question)
    if tokenizer is None:
        return
    times = [float(t) for t in sample.times] if cfg.frame_times_prompt else None
    duration = None if sample.is_image else sample.duration  # None: no timestamp sentence
    try:
        if cfg.template == "plain":
            ids, labels = encode_plain(tokenizer, sample.conversations)
        else:
            ids, labels = encode_conversation(
                tokenizer, sample.conversations, duration, len(sample.times), times
            )
    except FormatError as exc:
        raise SampleError(row["key"], "bad_conversation", str(exc)) from None
    sample.input_ids = ids[: cfg.max_text_len]
    sample.labels = labels[: cfg.max_text_len]
