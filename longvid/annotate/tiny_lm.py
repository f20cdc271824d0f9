"""A tiny random-weight Qwen2 causal LM with a byte-level BPE tokenizer, saved like a real one.

For tests and benchmarks of the LLM stages (nothing is downloaded): the tokenizer is trained on
a few lines of timeline-like text, so every byte (hence any JSON) can be written, and the model
is built from a ``Qwen2Config`` with weights drawn from ``seed``. The directory is marked as
random (:func:`longvid.annotate.provenance.mark_random`): its text never becomes data.
"""

from __future__ import annotations

from pathlib import Path

from longvid.annotate.provenance import mark_random

TRAINING_TEXT = (
    'You write questions and answers about a video. Events (id, start-end seconds, kind: text): '
    '[0] 2.0-6.0 narration: C opens the fridge. {"question": "When does it happen?", '
    '"event": 1, "start": "12.5", "end": "14.0", "order": [0, 2], "count": 3, "answer": "B", '
    '"options": [{"start": "1.0", "end": "2.0"}], "relation": "after", "scene": 4}'
)


def save_random_qwen2(out: str | Path, seed: int = 0, hidden: int = 32, layers: int = 1,
                      vocab: int = 400, max_positions: int = 8192) -> Path:
    """Write a random Qwen2 (model + tokenizer, ``save_pretrained``) to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([TRAINING_TEXT] * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=max_positions, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
                      tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    mark_random(out, {"built_by": "longvid.annotate.tiny_lm.save_random_qwen2", "seed": seed})
    return out
