"""It learns: the tiny model trained on the built sample corpus (its captions say what is on
screen: the colour and pattern of every shot) gets its loss down clearly and, on source videos
it never saw, names a colour that is on screen far more often than any video-blind answer.

The question is "What colour is the screen?", asked of the samples whose caption names one colour
(one shot, or shots of one colour), and the answer is that colour: a question whose chance level
is computable. Chance is scored, not assumed: the best constant answer (always the same colour)
and a uniform guess among the eight colours, on the same held-out samples. A correctness test,
not a timing one."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import torch

from longvid.samples.synth import COLOURS
from longvid.shards.index import write_index
from longvid.shards.manifest import SAMPLES_NAME, read_table, write_table
from longvid.shards.reader import read_sample
from longvid.shards.tarwriter import ShardSequenceWriter
from longvid.training.config import TrainConfig
from longvid.training.data.config import StageData
from longvid.training.evaluate import greedy_answers
from longvid.training.model.hico import HiCoModel
from longvid.training.trainer import Trainer

pytestmark = pytest.mark.slow

COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")
QUESTION = "What colour is the screen?"
FRAMES = 4
RES = 64


def colours(text: str) -> list[str]:
    """Colour words of a text, each once, in order of first mention."""
    return list(dict.fromkeys(COLOUR_WORD.findall(text.lower())))


def colour_corpora(built: Path, base: Path) -> tuple[str, str]:
    """Train and held-out corpora rewritten from the built one: each sample whose caption names
    exactly one colour gets the colour question answered with it (the others are left out).
    Every third source video (in hash order) is held out whole, so no held-out shot was seen
    inside a training sample."""
    rows = read_table(str(built / SAMPLES_NAME)).to_pylist()
    records = sorted({r["record_id"] for r in rows},
                     key=lambda r: hashlib.sha256(r.encode()).hexdigest())
    held_out = set(records[::3])
    out = {}
    for name in ("train", "held"):
        root = str(base / name)
        keep = [r for r in rows if len(colours(r["caption"] or "")) == 1
                and (r["record_id"] in held_out) == (name == "held")]
        new_rows = []
        with ShardSequenceWriter(root, max_samples=16) as writer:
            for r in keep:
                members = read_sample(str(built), r)
                meta = json.loads(members["json"])
                (answer,) = colours(r["caption"])
                meta["conversations"] = [{"from": "human", "value": f"<video>\n{QUESTION}"},
                                         {"from": "gpt", "value": answer}]
                members["json"] = json.dumps(meta).encode()
                placement = writer.add(r["key"], members)
                new_rows.append({**r, "caption": answer, "shard": placement.shard,
                                 "members": placement.members})
        write_index(root, writer.close(), name=name)
        write_table(str(base / name / SAMPLES_NAME), new_rows)
        out[name] = root
    return out["train"], out["held"]


def test_tiny_model_learns_the_colours_on_screen(built_corpus: Path, tmp_path: Path) -> None:
    train_root, held_root = colour_corpora(built_corpus, tmp_path / "corpora")
    cfg = TrainConfig.model_validate({
        "model": "conf/model/tiny.yaml",
        "seed": 0,
        "data": {"corpus": [train_root], "num_workers": 1, "tokenizer_vocab": 512},
        "stages": [{
            "name": "sft",
            "trainable": ["encoder", "projector", "llm"],
            "resolution": RES,
            "data": {"t_min": FRAMES, "t_max": FRAMES},
            "lr": 2e-3,
            "warmup_ratio": 0.05,
            "global_batch": 8,
            "micro_batch": 8,
            "max_seq_len": 512,
            "steps": 100,
        }],
        "checkpoint": {"every_steps": 0, "keep_last": 1},
        "runtime": {"threads": 2},
        "metrics": {"log_every": 20, "tensorboard": False},
    })
    try:
        result = Trainer(cfg, tmp_path / "run").run()
    finally:  # the trainer switched these on for this process
        torch.use_deterministic_algorithms(False)
    assert result.finished and result.global_step == 100

    # the loss falls clearly: the last tenth's mean is under a third of the first tenth's
    (summary,) = result.summary
    assert summary["last_tenth_mean"] < summary["first_tenth_mean"] / 3, summary

    model = HiCoModel.from_pretrained(tmp_path / "run" / "model")
    held = StageData(stage="eval", corpora=[held_root], t_min=FRAMES, t_max=FRAMES,
                     resolution=RES, num_workers=0)
    answers = list(greedy_answers(model, held, max_new_tokens=8))
    n = len(answers)
    assert n >= 12, "too few held-out samples to judge"
    truth = [colours(a.reference)[0] for a in answers]
    said = [(colours(a.answer) or [None])[0] for a in answers]
    right = sum(s == t for s, t in zip(said, truth, strict=True))
    # video-blind answers scored on the same samples: always the most common colour, or a guess
    best_constant = max(truth.count(c) for c in COLOURS)
    report = f"{right}/{n} right, best constant answer {best_constant}/{n}, uniform guess " + (
        f"{n / len(COLOURS):.1f}/{n}\n" + "\n".join(
            f"{t} <- {a.answer!r}" for t, a in zip(truth, answers, strict=True)))
    # one-sided binomial test against the best constant answer's accuracy
    assert binomial_tail(right, n, best_constant / n) < 1e-3, report
    assert right >= best_constant + 4 and right >= 3 * n / len(COLOURS), report


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
