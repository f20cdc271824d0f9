"""Greedy answers of a model to the samples of a corpus, next to the reference answers.

The prompt is exactly the one training uses (the loader builds it: ``<video>``, the timestamp
sentence, the question); generation starts where the reference answer starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from longvid.training.data import make_loader
from longvid.training.data.config import StageData
from longvid.training.tokenizer import IGNORE_INDEX


@dataclass(frozen=True)
class Answer:
    key: str
    question_ids: list[int]
    answer: str  # the model's greedy answer
    reference: str  # the sample's first answer


def split_prompt(input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's ids [L] and labels [L] → (prompt ids up to the first answer token, the
    first answer's ids without its closing token)."""
    answer_pos = (labels != IGNORE_INDEX).nonzero().flatten()
    if answer_pos.numel() == 0:
        raise ValueError("sample has no answer tokens")
    start = int(answer_pos[0])
    end = start
    while end < len(labels) and labels[end] != IGNORE_INDEX:
        end += 1
    return input_ids[:start], input_ids[start : end - 1]  # drop <|im_end|>


def greedy_answers(
    model: Any, data: StageData, max_new_tokens: int = 32, limit: int | None = None
) -> Iterator[Answer]:
    """Answers to one epoch of ``data`` (batch size 1, frames normalised as in training)."""
    tok = model.tokenizer
    cfg = data.model_copy(update={"batch_size": 1, "frames_dtype": "float32"})
    loader = make_loader(cfg, 0, 1, tok)
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            break
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()]
        labels = batch["labels"][0][: len(ids)]
        prompt, reference = split_prompt(ids, labels)
        out = model.generate(batch["frames"][0], prompt, max_new_tokens=max_new_tokens)
        yield Answer(
            key=batch["keys"][0],
            question_ids=prompt.tolist(),
            answer=tok.decode(out.tolist(), skip_special_tokens=True).strip(),
            reference=tok.decode(reference.tolist(), skip_special_tokens=True).strip(),
        )
