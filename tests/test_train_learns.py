"""It learns: the tiny model trained on the built sample corpus (its captions say what is on
screen: the colour and pattern of every shot) gets its loss down clearly and, on source videos
it never saw, names a colour that is on screen far more often than any video-blind answer.

The question is "What colours are on the screen?" and the answer the caption's colours in order
(``"purple"``, ``"yellow, cyan, red"``): a question whose chance level is computable. Chance is
scored, not assumed: the best constant answer (always the same colour) and a uniform guess
among the eight colours, on the same held-out samples. A correctness test, not a timing one."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from longvid.media.synth import COLOURS
from longvid.shards.index import write_index
from longvid.shards.manifest import SAMPLES_NAME, read_table, write_table
from longvid.shards.reader import read_sample
from longvid.shards.tarwriter import ShardSequenceWriter
from longvid.training.config import TrainConfig
from longvid.training.data_config import StageData
from longvid.training.evaluate import greedy_answers
from longvid.training.model.hico import HiCoModel
from longvid.training.trainer import Trainer

pytestmark = pytest.mark.slow

COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")
QUESTION = "What colours are on the screen?"
FRAMES = 4
RES = 64


def colours(text: str) -> list[str]:
    """Colour words of a text, each once, in order of first mention."""
    return list(dict.fromkeys(COLOUR_WORD.findall(text.lower())))


def colour_corpora(built: Path, base: Path) -> tuple[str, str]:
    """Train and held-out corpora rewritten from the built one: each sample gets the colour
    question answered from its caption (samples whose caption names no colour are left out).
    Every third source video (in hash order) is held out whole, so no held-out shot was seen
    inside a training sample."""
    rows = read_table(str(built / SAMPLES_NAME)).to_pylist()
    records = sorted({r["record_id"] for r in rows},
                     key=lambda r: hashlib.sha256(r.encode()).hexdigest())
    held_out = set(records[::3])
    out = {}
    for name in ("train", "held"):
        root = str(base / name)
        keep = [r for r in rows if colours(r["caption"] or "")
                and (r["record_id"] in held_out) == (name == "held")]
        new_rows = []
        with ShardSequenceWriter(root, max_samples=16) as writer:
            for r in keep:
                members = read_sample(str(built), r)
                meta = json.loads(members["json"])
                answer = ", ".join(colours(r["caption"]))
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
            "steps": 80,
        }],
        "checkpoint": {"every_steps": 0, "keep_last": 1},
        "runtime": {"threads": 2},
        "metrics": {"log_every": 20, "tensorboard": False},
    })
    try:
        result = Trainer(cfg, tmp_path / "run").run()
    finally:  # the trainer switched these on for this process
        torch.use_deterministic_algorithms(False)
    assert result.finished and result.global_step == 80

    # the loss falls clearly: the last tenth's mean is under a third of the first tenth's
    (summary,) = result.summary
    assert summary["last_tenth_mean"] < summary["first_tenth_mean"] / 3, summary

    model = HiCoModel.from_pretrained(tmp_path / "run" / "model")
    held = StageData(stage="eval", corpora=[held_root], t_min=FRAMES, t_max=FRAMES,
                     resolution=RES, num_workers=0)
    answers = list(greedy_answers(model, held, max_new_tokens=16))
    assert len(answers) >= 12, "too few held-out samples to judge"
    on_screen = [set(colours(a.reference)) for a in answers]
    said = [colours(a.answer)[:1] for a in answers]
    right = sum(bool(s) and s[0] in truth for s, truth in zip(said, on_screen, strict=True))
    # video-blind answers, scored on the same samples
    best_constant = max(sum(c in truth for truth in on_screen) for c in COLOURS)
    uniform_guess = sum(len(truth) / len(COLOURS) for truth in on_screen)
    report = "\n".join(f"{sorted(t)} <- {a.answer!r}" for t, a in zip(on_screen, answers,
                                                                       strict=True))
    assert right >= 2 * best_constant and right >= best_constant + 4, (
        f"{right}/{len(answers)} right; best constant answer {best_constant}, uniform guess "
        f"{uniform_guess:.1f}\n{report}"
    )
    assert right > 2 * uniform_guess
