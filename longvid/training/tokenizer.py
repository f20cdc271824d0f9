"""Tokenizers and chat prompts for the HiCo model.

- ``build_tokenizer``: a small byte-level BPE trained locally (tests, the demo), saved so that
  ``AutoTokenizer.from_pretrained(out_dir)`` loads it.
- ``load_tokenizer``: any local tokenizer (e.g. a real Qwen2 one) with ``<video>`` added.
- ``build_prompt`` / ``encode_conversation``: the Qwen chat layout with one ``<video>`` placeholder
  followed by the timestamp prompt; labels are -100 everywhere except the answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from longvid.errors import FormatError, NotFoundError

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
VIDEO_TOKEN = "<video>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, VIDEO_TOKEN, IM_START, IM_END]
DEFAULT_SYSTEM = "You are a helpful assistant."
IGNORE_INDEX = -100
# placeholders that LLaVA-style records use for the visual input; all become VIDEO_TOKEN
_PLACEHOLDERS = ("<image>", "<video>")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def timestamp_prompt(
    duration: float, n_frames: int, frame_times: Sequence[float] | None = None
) -> str:
    """The sentence that follows the visual tokens (VideoChat-Flash wording)."""
    text = f"The video lasts for {duration:.2f} seconds, and {n_frames} frames are uniformly sampled from it."
    if frame_times:
        text += " These frames are located at " + ",".join(f"{t:.2f}s" for t in frame_times) + "."
    return text


def _user_header(duration: float | None, n_frames: int | None, frame_times) -> str:
    if duration is None:
        return VIDEO_TOKEN + "\n"
    if n_frames is None:
        raise ValueError("n_frames is required with duration")
    return f"{VIDEO_TOKEN}\n{timestamp_prompt(duration, n_frames, frame_times)}\n"


def _turn(role: str, text: str) -> str:
    return f"{IM_START}{role}\n{text}{IM_END}\n"


def build_prompt(
    question: str,
    duration: float | None,
    n_frames: int | None,
    frame_times: Sequence[float] | None = None,
    system: str = DEFAULT_SYSTEM,
) -> str:
    """The conversation text up to the assistant's turn, ready for generation. ``duration=None``
    (an image) omits the timestamp prompt."""
    user = _user_header(duration, n_frames, frame_times) + question.strip()
    return _turn("system", system) + _turn("user", user) + f"{IM_START}assistant\n"


def _strip_placeholders(text: str) -> str:
    for ph in _PLACEHOLDERS:
        text = text.replace(ph + "\n", "").replace(ph, "")
    return text.strip()


def encode_conversation(
    tokenizer: Any,
    conversations: Sequence[dict[str, Any]],
    duration: float | None = None,
    n_frames: int | None = None,
    frame_times: Sequence[float] | None = None,
    system: str = DEFAULT_SYSTEM,
) -> tuple[Tensor, Tensor]:
    """LLaVA-style turns -> (input_ids [L], labels [L]) as int64 tensors.

    ``conversations``: ``[{"from": "human"|"gpt", "value": str}, ...]`` (``role``/``content``
    with user/assistant also accepted), starting with the human. ``<image>``/``<video>`` in the
    text is dropped and exactly one ``<video>`` plus the timestamp prompt opens the first human
    turn. Labels copy the ids of each answer and its closing ``<|im_end|>``; all else is -100.
    """
    if not conversations:
        raise FormatError("conversation is empty")
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, learn: bool) -> None:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if learn else [IGNORE_INDEX] * len(piece))

    add(_turn("system", system), False)
    answers = 0
    for i, turn in enumerate(conversations):
        raw_role = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        role = _ROLES.get(str(raw_role))
        if role is None:
            raise FormatError(f"conversation turn {i}: unknown speaker {raw_role!r}")
        if not isinstance(value, str):
            raise FormatError(
                f"conversation turn {i}: text is {type(value).__name__}, not a string"
            )
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise FormatError(f"conversation turn {i}: expected a {expected} turn, got {role}")
        if role == "user":
            text = _strip_placeholders(value)
            if i == 0:
                text = _user_header(duration, n_frames, frame_times) + text
            add(_turn("user", text), False)
        else:
            add(f"{IM_START}assistant\n", False)
            add(value.strip() + IM_END, True)
            add("\n", False)
            answers += 1
    if answers == 0:
        raise FormatError("conversation has no answer turn")
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def encode_plain(tokenizer: Any, conversations: Sequence[dict[str, Any]]) -> tuple[Tensor, Tensor]:
    """The ``plain`` template of stage 1 (LLaVA / VideoChat-Flash alignment): ``<video>`` then the
    first answer and a newline, nothing else (no system, roles or question). Labels copy the
    answer and its newline; the placeholder is -100."""
    answers = [
        t.get("value", t.get("content"))
        for t in conversations
        if _ROLES.get(str(t.get("from", t.get("role")))) == "assistant"
    ]
    if not answers or not isinstance(answers[0], str) or not answers[0].strip():
        raise FormatError("conversation has no answer turn")
    head = tokenizer(VIDEO_TOKEN, add_special_tokens=False)["input_ids"]
    body = tokenizer(answers[0].strip() + "\n", add_special_tokens=False)["input_ids"]
    ids = torch.tensor(head + body, dtype=torch.long)
    labels = torch.tensor([IGNORE_INDEX] * len(head) + body, dtype=torch.long)
    return ids, labels


def build_tokenizer(
    texts: Iterable[str], out_dir: str | Path, vocab_size: int = 1024, seed_prompts: bool = True
):
    """Train a byte-level BPE on ``texts`` and save it to ``out_dir``.

    Special tokens: <pad>, <eos>, <video>, <|im_start|>, <|im_end|> (ids 0..4). With
    ``seed_prompts`` the chat and timestamp templates are added to the training text so their
    words get merged tokens. Returns the transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts)
    if seed_prompts:
        corpus += [build_prompt("What happens?", 12.5, 8, [0.5, 1.5]), DEFAULT_SYSTEM]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        extra_special_tokens=[VIDEO_TOKEN, IM_START, IM_END],
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return fast


def load_tokenizer(path_or_dir: str | Path):
    """Load a local tokenizer and make sure ``<video>`` is one special token."""
    from transformers import AddedToken, AutoTokenizer

    p = Path(path_or_dir)
    if not p.exists():
        raise NotFoundError(f"{p}: tokenizer directory not found")
    tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    if VIDEO_TOKEN not in tok.get_vocab():
        tok.add_tokens(
            [AddedToken(VIDEO_TOKEN, special=True, normalized=False)], special_tokens=True
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def video_token_id(tokenizer: Any) -> int:
    """Id of the ``<video>`` placeholder; a LongvidError when the tokenizer lacks it."""
    vid = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    if vid is None or vid == getattr(tokenizer, "unk_token_id", None):
        raise FormatError(f"tokenizer has no {VIDEO_TOKEN} token (load it with load_tokenizer)")
    return int(vid)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids that end an answer: eos and ``<|im_end|>`` when the tokenizer has them."""
    out = []
    for tok in (tokenizer.eos_token, IM_END):
        if tok is None:
            continue
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is not None and tid != getattr(tokenizer, "unk_token_id", None) and tid not in out:
            out.append(int(tid))
    return out
