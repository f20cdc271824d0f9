"""One probe: a haystack of F frames with the needle clip(s) inserted at a depth, the question,
and two scores.

- **exact** (the released evaluation): the answer tokens are fed teacher-forced after the prompt;
  correct when the model's greedy choice equals the answer at every answer position.
- **option**: the option letters' log-likelihoods at the answer position; correct when the
  answer's letter is the most likely.

Needles are inserted between clips, never inside one: at clip ``round(depth * clips)``; the hops
of a multi-hop needle at ``depth`` and then evenly over the rest of the haystack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from longvid.training.model.dropout import LayerRunner, plan_dropout
from longvid.training.tokenizer import build_prompt


@dataclass
class ProbeResult:
    exact: bool
    option: bool
    predicted: str  # the most likely option letter
    visual_tokens: int


def hop_depths(depth: float, hops: int) -> list[float]:
    """Depth of each hop: the first at ``depth``, the others spread evenly after it."""
    return [depth + (1.0 - depth) * k / hops for k in range(hops)]


def insert_needles(
    haystack: Tensor, clips: int, tokens_per_clip: int, needles: list[Tensor], depth: float
) -> Tensor:
    """[clips * tpc + sum(needle tokens), D]: the first ``clips`` clips of ``haystack`` with
    each needle ([n_i, D]) inserted at its hop's clip boundary."""
    hay = haystack[: clips * tokens_per_clip]
    if hay.shape[0] < clips * tokens_per_clip:
        raise ValueError(
            f"haystack has {haystack.shape[0] // tokens_per_clip} clips, {clips} asked"
        )
    cuts = [round(d * clips) for d in hop_depths(depth, len(needles))]
    pieces, prev = [], 0
    for cut, needle in zip(cuts, needles, strict=True):
        pieces += [hay[prev * tokens_per_clip : cut * tokens_per_clip], needle.to(hay)]
        prev = cut
    pieces.append(hay[prev * tokens_per_clip :])
    return torch.cat(pieces)


def letter_ids(tokenizer, letters: list[str]) -> list[int]:
    """The first token of each option letter as an answer would start."""
    return [tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in letters]


@torch.no_grad()
def score_probe(
    model, visual: Tensor, question: str, answer: str, letters: list[str], dropout: bool
) -> ProbeResult:
    """Prefill the prompt with ``visual`` [n, D] at ``<video>``; both scores."""
    tok = model.tokenizer
    device = model.device
    prompt = build_prompt(question, None, None)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    visual = visual.to(device)
    embeds, _, _ = model.splice(ids, torch.ones_like(ids), [visual])
    start = int((ids[0] == model.video_token_id).nonzero()[0])
    dcfg = model.cfg.dropout.model_copy(update={"enabled": dropout})
    steps = plan_dropout(dcfg, visual.shape[0], model.llm.config.num_hidden_layers)
    runner = LayerRunner(model.llm)
    pre = runner.prefill(embeds, start, visual.shape[0], steps)

    logits = pre.logits[0].float()
    options = letter_ids(tok, letters)
    best = int(torch.stack([logits[i] for i in options]).argmax())
    predicted = letters[best]

    exact = True
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
    step_logits = pre.logits
    for j, target in enumerate(answer_ids):
        if int(step_logits[0].argmax()) != target:
            exact = False
            break
        if j + 1 < len(answer_ids):  # teacher forcing: feed the true token
            step_logits = runner.decode(torch.tensor([[target]], device=device), pre.cache)
    return ProbeResult(exact, predicted == answer[:1], predicted, visual.shape[0])
