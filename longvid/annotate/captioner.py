"""A transformers vision-language captioner: frames in, one caption per frame out, batched, with
greedy (deterministic) decoding.

Two ways to get the model:

* ``model_path``: a local directory written with ``save_pretrained`` (model, image processor,
  tokenizer) of an image-to-text model that ``generate(pixel_values=...)`` drives — a
  ``VisionEncoderDecoderModel`` (ViT + GPT-2 …), BLIP, and the like. Nothing is downloaded.
* ``random_model``: a random-initialised ``VisionEncoderDecoderModel`` built from ViT and GPT-2
  config dicts, with a word-level tokenizer over ``words`` — for tests and the demo, where the
  plumbing matters and the text is random words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longvid.annotate.config import ModelCaptionsConfig
from longvid.annotate.embed import _dtype, resolve_device
from longvid.annotate.provenance import weights_random
from longvid.errors import ConfigError, NotFoundError

SPECIALS = ["<pad>", "<eos>", "<unk>"]


def word_tokenizer(words: list[str]):
    """A whitespace word-level tokenizer: ids 0-2 are <pad>, <eos>, <unk>, then ``words``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def build_random_captioner(spec: dict[str, Any]):
    """(model, image processor, tokenizer) from ``{"encoder": ViTConfig kwargs, "decoder":
    GPT2Config kwargs, "words": [...], "seed": int}``; weights drawn from ``seed``."""
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    unknown = set(spec) - {"encoder", "decoder", "words", "seed"}
    if unknown:
        raise ConfigError(f"annotate.model_captions.random_model: unknown key(s) {sorted(unknown)}")
    words = list(spec.get("words") or ["a", "video"])
    tok = word_tokenizer(words)
    try:
        enc = ViTConfig(**(spec.get("encoder") or {}))
        dec = GPT2Config(**{**(spec.get("decoder") or {}), "vocab_size": len(tok),
                            "bos_token_id": tok.eos_token_id, "eos_token_id": tok.eos_token_id,
                            "is_decoder": True, "add_cross_attention": True})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"annotate.model_captions.random_model: {exc}") from None
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id = tok.eos_token_id
    cfg.pad_token_id = tok.pad_token_id
    cfg.eos_token_id = tok.eos_token_id
    devices = []  # fork_rng needs no CUDA devices: the weights are drawn on the CPU
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(spec.get("seed", 0)))
        model = VisionEncoderDecoderModel(cfg)
    # a random net likes <pad>/<unk> as much as any word: never emit them, so every caption
    # has words (and <eos> only after min_new_tokens)
    model.generation_config.suppress_tokens = [tok.pad_token_id, tok.unk_token_id]
    size = enc.image_size
    proc = ViTImageProcessor(size={"height": size, "width": size})
    return model, proc, tok


def load_captioner(path: str):
    """(model, image processor, tokenizer) from a local ``save_pretrained`` directory."""
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").is_file():
        raise NotFoundError(f"{p}: no captioner here (expected a save_pretrained directory)")
    try:
        model = AutoModelForImageTextToText.from_pretrained(str(p), local_files_only=True)
        proc = AutoImageProcessor.from_pretrained(str(p), local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot load the captioner: {exc}") from None
    return model, proc, tok


def model_name(cfg: ModelCaptionsConfig) -> str:
    """What ``origin`` says a caption came from: ``model:<dir name>`` or
    ``model:random-<config hash>``."""
    if cfg.model_path:
        return "model:" + Path(cfg.model_path).name
    blob = json.dumps(cfg.random_model, sort_keys=True).encode()
    return "model:random-" + hashlib.sha256(blob).hexdigest()[:8]


class Captioner:
    """``caption(frames [N, H, W, 3] uint8) -> list[str]`` (N captions), ``batch_size`` frames
    per ``generate`` call; ``calls`` counts the calls."""

    def __init__(self, cfg: ModelCaptionsConfig):
        if (cfg.model_path is None) == (cfg.random_model is None):
            raise ConfigError("annotate.model_captions: give exactly one of model_path or "
                              "random_model")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.model_path:
            model, self.processor, self.tokenizer = load_captioner(cfg.model_path)
        else:
            model, self.processor, self.tokenizer = build_random_captioner(cfg.random_model or {})
        self.dtype = _dtype(cfg.dtype, self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.name = model_name(cfg)
        self.random = weights_random(cfg.model_path, cfg.random_model is not None,
                                     cfg.random_weights)
        self.calls = 0

    def decoding(self) -> dict[str, Any]:
        """The generate() settings: greedy, so the same frames always give the same text."""
        return {"do_sample": False, "num_beams": 1, "max_new_tokens": self.cfg.max_new_tokens,
                "min_new_tokens": self.cfg.min_new_tokens}

    def caption(self, frames: np.ndarray | Sequence[np.ndarray]) -> list[str]:
        """One caption per frame (``[N, H, W, 3]`` uint8, or a list of ``[H, W, 3]`` frames of
        any sizes). Every ``generate`` call holds exactly ``batch_size`` images (the last one
        padded with black frames whose captions are dropped), so a frame's caption does not
        depend on which frames share its call: batching across units changes nothing."""
        import torch

        out: list[str] = []
        settings = self.decoding()
        size = self.cfg.batch_size
        for i in range(0, len(frames), size):
            batch = [np.ascontiguousarray(f) for f in frames[i : i + size]]
            n = len(batch)
            batch += [np.zeros_like(batch[0])] * (size - n)
            px = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                ids = self.model.generate(pixel_values=px.to(self.device, self.dtype), **settings)
            self.calls += 1
            texts = self.tokenizer.batch_decode(ids[:n], skip_special_tokens=True)
            out += [" ".join(t.split()) for t in texts]
        return out

    def lineage(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {
            "model": self.name,
            "model_path": self.cfg.model_path,
            "random_model": self.cfg.random_model,
            "random_weights": self.random,
            "decoding": self.decoding(),
            "dtype": str(self.dtype).replace("torch.", ""),
            "transformers": version("transformers"),
        }
