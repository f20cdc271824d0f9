"""Optional LLM rewriter: rephrases the template questions with a local transformers causal LM.

Only questions change. Their answers and ``check`` facts stay exactly as generated, and a
rewrite is used only when it keeps every quoted phrase and every number of the template
question verbatim (so the question still asks about the same events and times); otherwise the
template stays. Decoding is greedy, so the same model gives the same rewrites.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from longvid.annotate.config import RewriteConfig
from longvid.annotate.embed import resolve_device
from longvid.annotate.local_lm import load_causal_lm, require_lm_dir
from longvid.annotate.provenance import weights_random
from longvid.annotate.qa import QAItem
from longvid.errors import ConfigError

_QUOTED = re.compile(r'"([^"]+)"')
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def keeps_facts(original: str, rewrite: str) -> bool:
    """Whether ``rewrite`` is usable: non-empty, not absurdly long, and every quoted phrase and
    number of ``original`` appears in it verbatim."""
    if not rewrite or len(rewrite) > 3 * len(original) + 40 or rewrite == original:
        return False
    needed = _QUOTED.findall(original) + _NUMBER.findall(original)
    return all(n in rewrite for n in needed)


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


class Rewriter:
    """``rewrite(items)`` rephrases questions in place; ``lineage()`` says how."""

    def __init__(self, cfg: RewriteConfig):
        path = require_lm_dir(cfg.model_path, "annotate.rewrite.model_path", "qa_rewrite")
        try:
            filled = cfg.prompt.format(question="\x00")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"annotate.rewrite.prompt: only {{question}} may be in braces "
                              f"({exc!r})") from None
        if "\x00" not in filled:
            raise ConfigError("annotate.rewrite.prompt must contain {question}")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.tokenizer, self.model = load_causal_lm(path, "rewriter")
        self.model.to(self.device).eval()
        self.random = weights_random(cfg.model_path, False, cfg.random_weights)
        self.tried = self.used = 0

    def decoding(self) -> dict[str, Any]:
        return {"do_sample": False, "num_beams": 1, "max_new_tokens": self.cfg.max_new_tokens}

    def generate(self, prompts: Sequence[str]) -> list[str]:
        import torch

        out: list[str] = []
        for i in range(0, len(prompts), self.cfg.batch_size):
            batch = list(prompts[i : i + self.cfg.batch_size])
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                ids = self.model.generate(**enc, **self.decoding(),
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]
            out += [first_line(t) for t in self.tokenizer.batch_decode(new,
                                                                      skip_special_tokens=True)]
        return out

    def rewrite(self, items: list[QAItem], apply: bool = True) -> list[str]:
        """Rephrase the questions of ``items`` in place (only when ``apply``: a random model's
        rewrites are only returned, for lineage); returns the usable rewrites."""
        prompts = [self.cfg.prompt.format(question=it.question) for it in items]
        usable = []
        for it, new in zip(items, self.generate(prompts), strict=True):
            self.tried += 1
            if keeps_facts(it.question, new):
                usable.append(new)
                self.used += 1
                if apply:
                    it.question, it.rewritten = new, True
        return usable

    def lineage(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"model_path": self.cfg.model_path, "random_weights": self.random,
                "prompt": self.cfg.prompt,
                "decoding": self.decoding(), "transformers": version("transformers")}
