"""Loading a local causal LM (a ``save_pretrained`` folder) for the text stages that generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longvid.errors import ConfigError, NotFoundError


def require_lm_dir(model_path: str | None, key: str, stage: str) -> Path:
    """The model folder named by config ``key``; refused when unset or not a saved model."""
    if not model_path:
        raise ConfigError(f"{key} is required for the {stage} stage")
    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise NotFoundError(f"{path}: no language model here (expected a save_pretrained dir)")
    return path


def load_causal_lm(path: Path, what: str) -> tuple[Any, Any]:
    """(tokenizer, model) from local files only, the tokenizer set up for batched generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load the {what}: {exc}") from None
    tokenizer.padding_side = "left"  # decoder-only batches pad on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
