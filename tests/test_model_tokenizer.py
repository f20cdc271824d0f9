"""Tokenizer building/loading, the chat prompt with the timestamp sentence, answer-only labels."""

from __future__ import annotations

import pytest
import torch

from longvid.errors import FormatError, NotFoundError
from longvid.training.tokenizer import (
    IGNORE_INDEX,
    SPECIAL_TOKENS,
    build_prompt,
    encode_conversation,
    load_tokenizer,
    stop_token_ids,
    timestamp_prompt,
    video_token_id,
)


def test_built_tokenizer_loads_with_autotokenizer(hico_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    hico_tokenizer.save_pretrained(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>"
    text = "<|im_start|>user\n<video>\nthe dog runs<|im_end|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == 3 and ids.count(2) == 1 and ids[-1] == 4  # specials stay single tokens
    assert tok.decode(ids) == text  # byte-level: exact round trip
    assert video_token_id(tok) == 2
    assert stop_token_ids(tok) == [1, 4]


def test_timestamp_prompt_wording():
    assert timestamp_prompt(367.0, 256) == (
        "The video lasts for 367.00 seconds, and 256 frames are uniformly sampled from it."
    )
    assert timestamp_prompt(8.0, 2, [2.0, 6.0]) == (
        "The video lasts for 8.00 seconds, and 2 frames are uniformly sampled from it. "
        "These frames are located at 2.00s,6.00s."
    )


def test_build_prompt_puts_the_video_then_the_timestamps():
    p = build_prompt("What happens?", 12.345, 8)
    assert p == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<video>\nThe video lasts for 12.35 seconds, and 8 frames are "
        "uniformly sampled from it.\nWhat happens?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "lasts for" not in build_prompt("Describe.", None, None)  # an image


def test_labels_cover_only_the_answers(hico_tokenizer):
    tok = hico_tokenizer
    conv = [
        {"from": "human", "value": "<image>\nWhat does the man cut?"},
        {"from": "gpt", "value": "an onion"},
        {"from": "human", "value": "And then?"},
        {"from": "gpt", "value": "he washes the knife"},
    ]
    ids, labels = encode_conversation(tok, conv, duration=30.0, n_frames=32)
    assert ids.dtype == torch.long and ids.shape == labels.shape
    assert (ids == 2).sum() == 1  # exactly one <video>, <image> removed
    text = tok.decode(ids)
    assert "<image>" not in text
    assert "<video>\nThe video lasts for 30.00 seconds, and 32 frames" in text
    learned = labels != IGNORE_INDEX
    assert torch.equal(labels[learned], ids[learned])
    # the learned spans are exactly the two answers, each closed by <|im_end|>
    spans, cur = [], []
    for i, on in enumerate(learned.tolist()):
        if on:
            cur.append(int(ids[i]))
        elif cur:
            spans.append(tok.decode(cur))
            cur = []
    assert spans == ["an onion<|im_end|>", "he washes the knife<|im_end|>"]
    # the prompt ends with the assistant header right before the first answer
    first = int(learned.nonzero()[0])
    assert tok.decode(ids[:first]).endswith(
        "What does the man cut?<|im_end|>\n<|im_start|>assistant\n"
    )
    prompt_ids = tok(build_prompt("What does the man cut?", 30.0, 32), add_special_tokens=False)
    assert ids[:first].tolist() == prompt_ids["input_ids"]


def test_role_content_turns_and_frame_times(hico_tokenizer):
    conv = [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "three"}]
    ids, _ = encode_conversation(hico_tokenizer, conv, 4.0, 2, frame_times=[1.0, 3.0])
    assert "These frames are located at 1.00s,3.00s." in hico_tokenizer.decode(ids)


@pytest.mark.parametrize(
    ("conv", "message"),
    [
        ([], "empty"),
        ([{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}], "not a string"),
        ([{"from": "gpt", "value": "x"}], "expected a user turn"),
        ([{"from": "human", "value": "q"}], "no answer"),
        ([{"from": "robot", "value": "q"}], "unknown speaker 'robot'"),
    ],
)
def test_bad_conversations_are_format_errors(hico_tokenizer, conv, message):
    with pytest.raises(FormatError, match=message):
        encode_conversation(hico_tokenizer, conv, 10.0, 8)


def test_load_tokenizer_adds_video_to_a_foreign_tokenizer(tmp_path):
    # a Qwen2-style tokenizer that has chat tokens but no <video>
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(["hello video world"], trainer)
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>").save_pretrained(
        str(tmp_path)
    )
    tok = load_tokenizer(tmp_path)
    vid = video_token_id(tok)
    assert vid == len(tok) - 1
    ids = tok("a <video> b", add_special_tokens=False)["input_ids"]
    assert ids.count(vid) == 1
    assert tok.pad_token == "<|im_end|>"  # pad falls back to eos
    with pytest.raises(NotFoundError, match="tokenizer directory not found"):
        load_tokenizer(tmp_path / "missing")


def test_plain_template_is_the_placeholder_and_the_answer(hico_tokenizer):
    import numpy as np

    from longvid.config import load_config
    from longvid.training.config import TrainConfig
    from longvid.training.curriculum import _loader_config
    from longvid.training.data.config import StageData
    from longvid.training.data.sample import LoadedSample
    from longvid.training.data.text import tokenize_sample
    from longvid.training.tokenizer import encode_plain

    conv = [
        {"from": "human", "value": "Describe the video."},
        {"from": "gpt", "value": "a red car"},
    ]
    ids, labels = encode_plain(hico_tokenizer, conv)
    video = hico_tokenizer.convert_tokens_to_ids("<video>")
    body = hico_tokenizer("a red car\n", add_special_tokens=False)["input_ids"]
    assert ids.tolist() == [video, *body]
    assert labels.tolist() == [-100, *body]
    assert hico_tokenizer.decode(ids[1:]) == "a red car\n"
    with pytest.raises(FormatError, match="no answer"):
        encode_plain(hico_tokenizer, conv[:1])

    # the loader's text step follows the stage's template
    sample = LoadedSample("k", "src", 8.0, np.arange(4) + 0.5, torch.zeros(1), [])
    row = {"key": "k", "caption": "a red car"}
    tokenize_sample(sample, {}, row, StageData(template="plain"), hico_tokenizer)
    assert sample.input_ids.tolist() == ids.tolist()
    tokenize_sample(sample, {}, row, StageData(), hico_tokenizer)
    assert len(sample.input_ids) > len(ids)  # chat layout: system, roles, timestamp prompt

    # the published recipe aligns stage 1 with it, and the curriculum hands it to the loader
    cfg = load_config("conf/train/videochat_flash.yaml", TrainConfig)
    stage1 = cfg.stages[0]
    assert stage1.data.template == "plain" and cfg.stages[1].data.template == "chat"
    from longvid.training.model.config import ModelConfig

    assert _loader_config(cfg, stage1, 224, ModelConfig()).template == "plain"
