"""``longvid eval niah``: the harness measures what a model knows. A tiny model is trained here for
a few hundred steps on a synthetic needle task (a coloured picture hidden in a greyscale haystack
video made with ffmpeg; the question asks its colour with four fixed options), then the harness
runs the real path (decode the video at 1 fps, encode and cache the haystack, insert the needle
at each depth, score) and reports accuracy per depth far above the 25 % chance, where the same
model untrained sits at chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from longvid.cli import main
from longvid.errors import FormatError, NotFoundError
from longvid.media.ffmpeg import run_ffmpeg
from longvid.training.niah import NiahConfig, run_niah
from longvid.training.niah.data import encode_haystack, encode_needle, load_needles
from longvid.training.niah.probe import hop_depths, insert_needles
from longvid.training.niah.report import write_figure
from longvid.training.tokenizer import IGNORE_INDEX, encode_conversation

pytestmark = pytest.mark.slow

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220),
           "yellow": (230, 220, 30)}  # fmt: skip
QUESTION = "Which colour is the odd picture? A. red B. green C. blue D. yellow"
# 1 token per frame: a 32-64 frame haystack is 32-64 visual tokens, cheap to train on CPU
NEEDLE_MODEL = ("llm.tie_word_embeddings=false", "merge.tokens_per_frame=1")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """hay.mp4 (64 s of a black-and-white cellular automaton at 1 fps), four colour pictures and
    needles.json (answer = the colour's option letter)."""
    d = tmp_path_factory.mktemp("niah")
    run_ffmpeg(
        ["-f", "lavfi", "-i", "cellauto=s=64x64:rate=1", "-t", "64", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", str(d / "hay.mp4")],
        uri=str(d / "hay.mp4"), reason="cut_failed",
    )  # fmt: skip
    items = []
    for letter, (name, rgb) in zip("ABCD", COLOURS.items(), strict=True):
        Image.new("RGB", (64, 64), rgb).save(d / f"{name}.png")
        items.append({"image": f"{name}.png", "question": QUESTION, "answer": letter})
    (d / "needles.json").write_text(json.dumps(items))
    return d


def train_on_needles(model, model_dir: Path, task: Path, steps: int, seed: int = 0) -> None:
    """LLM-only training (encoder and projector frozen, so the cached haystack stays valid):
    each sample is 32-64 haystack frames with one needle at a random depth."""
    hay = encode_haystack(model, model_dir, task / "hay.mp4", 1.0, 64, task / "cache")
    needles = load_needles(task / "needles.json")
    emb = [encode_needle(model, n.images[0]) for n in needles]
    convs = [
        encode_conversation(
            model.tokenizer,
            [{"from": "human", "value": n.question}, {"from": "gpt", "value": n.answer}],
        )
        for n in needles
    ]
    tpc = model.cfg.visual_tokens_per_clip()
    opt = torch.optim.AdamW(model.llm.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    batch = 8
    for _ in range(steps):
        pick = torch.randint(len(needles), (batch,), generator=g).tolist()
        clips = torch.randint(8, 17, (batch,), generator=g).tolist()
        depths = torch.rand(batch, generator=g).tolist()
        visual = [
            insert_needles(hay, c, tpc, [emb[k]], d)
            for k, c, d in zip(pick, clips, depths, strict=True)
        ]
        length = max(len(convs[k][0]) for k in pick)
        ids = torch.full((batch, length), model.tokenizer.pad_token_id)
        mask = torch.zeros(batch, length, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX)
        for b, k in enumerate(pick):
            n = len(convs[k][0])
            ids[b, :n], mask[b, :n], labels[b, :n] = convs[k][0], 1, convs[k][1]
        embeds, mask2, labels2 = model.splice(ids, mask, visual, labels)
        loss = model.llm(inputs_embeds=embeds, attention_mask=mask2, labels=labels2).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_trained_model_finds_the_needle_at_every_depth(task, tmp_path, make_tiny_model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared CPU: one thread is the fastest
    try:
        model = make_tiny_model(*NEEDLE_MODEL, seed=0)
        model.save_pretrained(tmp_path / "init")
        cfg = NiahConfig(
            checkpoint=str(tmp_path / "init"), haystack=str(task / "hay.mp4"),
            needles=str(task / "needles.json"), frames=[32, 64],
            depths=[0.0, 0.25, 0.5, 0.75, 1.0], device="cpu",
        )  # fmt: skip
        before = run_niah(cfg, tmp_path / "before")["summary"]
        train_on_needles(model, tmp_path / "init", task, steps=300)
        model.save_pretrained(tmp_path / "trained")
        code = main([
            "eval", "niah", "conf/eval/niah.yaml", "--out", str(tmp_path / "after"),
            "--checkpoint", str(tmp_path / "trained"), "--haystack", str(task / "hay.mp4"),
            "--needles", str(task / "needles.json"), "frames=[32,64]",
            "depths=[0.0,0.25,0.5,0.75,1.0]", "--set", "device=cpu",  # --set: the old alias
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    results = json.loads((tmp_path / "after" / "results.json").read_text())
    after = results["summary"]
    # 4 needles x 5 depths x 2 lengths; per depth 8 probes
    assert after["probes"] == 40 and len(results["cells"]) == 10 and len(results["needles"]) == 40
    assert after["chance"] == 0.25
    assert set(after["by_depth"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    for depth, acc in after["by_depth"].items():
        assert acc["exact"] >= 0.75 and acc["option"] >= 0.75, (depth, acc)
    assert set(after["by_frames"]) == {"32", "64"}
    # the untrained model (same weights before training) is at chance level
    assert before["option"] <= 0.5 and before["exact"] <= 0.5
    for cell in results["cells"]:
        assert cell["visual_tokens"] == cell["frames"] * 1  # 1 token per frame
        assert cell["seconds_per_probe"] > 0 and cell["peak_memory_mb"] > 0
    page = (tmp_path / "after" / "niah.html").read_text()
    assert "teacher-forced answer" in page and "option likelihood" in page and "<script" not in page
    figure = next((tmp_path / "after").glob("niah.*g"))
    assert figure.suffix in (".png", ".svg") and figure.stat().st_size > 0
    # the haystack was encoded once per model and cached
    assert len(list((tmp_path / "after" / "cache").glob("haystack-*.pt"))) == 1


def test_needles_are_inserted_between_clips():
    hay = torch.arange(10 * 2, dtype=torch.float32)[:, None]  # 10 clips of 2 tokens, D = 1
    needle = torch.full((3, 1), -1.0)
    out = insert_needles(hay, 8, 2, [needle], 0.5)  # 8 clips, the needle after clip 4
    assert out[:, 0].tolist() == [*range(8), -1, -1, -1, *range(8, 16)]
    assert insert_needles(hay, 8, 2, [needle], 0.0)[:3, 0].tolist() == [-1, -1, -1]
    assert insert_needles(hay, 8, 2, [needle], 1.0)[-3:, 0].tolist() == [-1, -1, -1]
    # multi-hop: at the depth, then evenly over the rest
    assert hop_depths(0.5, 2) == [0.5, 0.75]
    two = insert_needles(hay, 8, 2, [needle, needle * 2], 0.5)
    assert two[:, 0].tolist() == [*range(8), -1, -1, -1, 8, 9, 10, 11, -2, -2, -2, 12, 13, 14, 15]
    with pytest.raises(ValueError, match="10 clips, 12 asked"):
        insert_needles(hay, 12, 2, [needle], 0.5)


def test_needle_file_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    bad = tmp_path / "n.json"
    bad.write_text(json.dumps([{"question": "Q?", "image": "a.png"}]))
    with pytest.raises(FormatError, match="needle 0: 'answer' missing"):
        load_needles(bad)
    bad.write_text(json.dumps([{"question": "Q?", "answer": "A", "images": ["b.png"]}]))
    with pytest.raises(NotFoundError, match="b.png not found"):
        load_needles(bad)
    bad.write_text("{")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_needles(bad)
    multi = [{"question": "Q?", "answer": "B", "images": ["a.png", "a.png"]}]
    bad.write_text(json.dumps(multi))
    assert len(load_needles(bad)[0].images) == 2 and load_needles(bad)[0].hops == ()
    multi[0]["hops"] = [{"question": "First?", "answer": "A"}]  # one hop for two images
    bad.write_text(json.dumps(multi))
    with pytest.raises(FormatError, match="one {question, answer} per image"):
        load_needles(bad)
    multi[0]["hops"] = [{"question": "First?", "answer": "A"}, {"question": "Then?"}]
    bad.write_text(json.dumps(multi))
    with pytest.raises(FormatError, match="hop 2 needs a non-empty 'question' and 'answer'"):
        load_needles(bad)
    multi[0]["hops"][1]["answer"] = "D"
    bad.write_text(json.dumps(multi))
    assert [(h.question, h.answer) for h in load_needles(bad)[0].hops] == [
        ("First?", "A"), ("Then?", "D")]  # fmt: skip


def test_svg_figure_without_matplotlib(tmp_path):
    results = {"cells": [{"frames": f, "depth": d, "exact": 0.5, "option": 1.0}
                         for f in (32, 64) for d in (0.0, 1.0)]}  # fmt: skip
    path = write_figure(results, tmp_path)
    assert path.suffix in (".png", ".svg")
    if path.suffix == ".svg":
        text = path.read_text()
        assert text.count("<rect") == 4 and "0.50" in text


def test_multi_hop_needles_are_scored_per_hop(task, tmp_path, make_tiny_model):
    """Every hop's question is scored on the same haystack as the final one. Hop 1 asks the
    final question with the final answer, so its scores equal the final ones; hop 2 asks it
    with each of the four letters as the answer over four needles, so exactly one of them (the
    model's most likely letter) is right by option likelihood."""
    model = make_tiny_model(*NEEDLE_MODEL, seed=1)
    model.save_pretrained(tmp_path / "m")
    multi = [
        {"id": f"two-{x}", "images": ["red.png", "blue.png"], "question": QUESTION,
         "answer": "C", "hops": [{"question": QUESTION, "answer": "C"},
                                 {"question": QUESTION, "answer": x}]}
        for x in "ABCD"
    ]  # fmt: skip
    (task / "multi.json").write_text(json.dumps(multi))
    cfg = NiahConfig(
        checkpoint=str(tmp_path / "m"), haystack=str(task / "hay.mp4"),
        needles=str(task / "multi.json"), frames=[32], depths=[0.5], device="cpu",
        dropout=True,
    )  # fmt: skip
    results = run_niah(cfg, tmp_path / "out")
    rows = results["needles"]
    assert [r["needle"] for r in rows] == ["two-A", "two-B", "two-C", "two-D"]
    (predicted,) = {r["predicted"] for r in rows}  # the same haystack and question each time
    assert predicted in "ABCD"
    for r in rows:
        assert (r["hops"], r["frames"], r["depth"]) == (2, 32, 0.5)
        first, second = r["hop_scores"]
        assert (first["hop"], second["hop"]) == (1, 2)
        assert (first["exact"], first["option"], first["predicted"]) == (
            r["exact"], r["option"], r["predicted"])  # fmt: skip
        assert second["predicted"] == predicted
        assert second["option"] == (second["answer"] == predicted)
        assert r["all_hops_option"] == (r["option"] and second["option"])
        assert r["all_hops_exact"] == (r["exact"] and first["exact"] and second["exact"])
    assert sum(r["hop_scores"][1]["option"] for r in rows) == 1
    by_hop = results["summary"]["by_hop"]
    assert set(by_hop) == {"1", "2", "final", "all"}
    assert by_hop["2"]["option"] == 0.25 and by_hop["1"] == by_hop["final"]
    assert by_hop["all"]["option"] == sum(r["all_hops_option"] for r in rows) / 4
    (cell,) = results["cells"]
    assert cell["probes"] == 4 and cell["questions"] == 12  # 4 needles x (2 hops + final)
    assert cell["all_hops_option"] == by_hop["all"]["option"]
    page = (tmp_path / "out" / "niah.html").read_text()
    assert "accuracy per hop" in page and "all hops correct, teacher-forced" in page
