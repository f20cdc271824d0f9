"""Still images as a stage mixture component: a folder of JPEG/PNG/WebP pictures with
``captions.jsonl`` mixed with the videos of a built corpus. A batch holds each image as one
frame flagged as an image with its caption as the answer; resume mid-epoch repeats the
uninterrupted run; a bad image is substituted with its file named; a few trainer steps run the
model's image path (T = 1 through the encoder, one clip's token budget)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longvid.errors import FormatError, NotFoundError
from longvid.training.config import TrainConfig
from longvid.training.data import LoaderError, ResumeError, make_loader
from longvid.training.data.catalog import load_catalog
from longvid.training.data.config import ImageComponent, MixtureComponent, StageData
from longvid.training.data.images import decode_image, load_image_folder
from longvid.training.tokenizer import IGNORE_INDEX, build_tokenizer

# name → (file, colour); captions are written here (source text, not model output)
PICTURES = {
    "red": ("pics/red.png", (200, 30, 30)),
    "green": ("pics/green.jpg", (30, 180, 40)),
    "blue": ("pics/blue.webp", (30, 60, 210)),
    "yellow": ("yellow.png", (230, 220, 30)),
    "white": ("more/white.jpg", (250, 250, 250)),
    "grey": ("grey.webp", (128, 128, 128)),
}
RES = 32


def caption(name: str) -> str:
    return f"A plain {name} square."


def write_folder(root: Path, names=tuple(PICTURES), extra_lines: list[dict] | None = None) -> Path:
    """Solid-colour pictures at a size other than RES (so they are resized) + captions.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        rel, rgb = PICTURES[name]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 40), rgb).save(root / rel, quality=95)
        lines.append({"image": rel, "caption": caption(name)})
    lines += extra_lines or []
    (root / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [caption(n) for n in PICTURES] * 4 + ["A test pattern from webvid lasting 3 s."]
    return build_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=400)


def mixed_stage(corpus: str, images: str, **kw) -> StageData:
    base = dict(
        stage="images-test",
        corpora=[corpus],
        mixture=[
            MixtureComponent(name="short", weight=1, buckets=["short"]),
            ImageComponent(name="pics", weight=1, images=images),
        ],
        num_samples=12,
        batch_size=2,
        t_min=4,
        t_max=4,
        resolution=RES,
        frames_dtype="uint8",
        seed=5,
        num_workers=0,
    )
    base.update(kw)
    return StageData(**base)


def test_config_tells_image_components_from_video_ones(folder):
    cfg = StageData.model_validate({"corpora": ["x"], "mixture": [
        {"name": "v", "weight": 2.0, "buckets": ["short"]},
        {"name": "pics", "weight": 1.0, "images": str(folder)},
    ]})  # fmt: skip
    video, image = cfg.mixture
    assert isinstance(video, MixtureComponent) and isinstance(image, ImageComponent)
    assert image.question == "Describe the image."
    assert cfg.image_components() == [(1, image)]
    # a video component dumps as before (cursors and checkpoints of older runs still match)
    assert set(cfg.sequence_fields()["mixture"][0]) == {
        "name", "weight", "sources", "buckets", "min_duration", "max_duration"}  # fmt: skip
    with pytest.raises(ValueError, match="sources"):  # no video filters on an image folder
        StageData.model_validate(
            {"mixture": [{"name": "p", "weight": 1, "images": "d", "sources": ["x"]}]}
        )


def test_batches_hold_images_as_one_frame_with_their_caption(loader_corpus, folder, tokenizer):
    cfg = mixed_stage(loader_corpus.root, str(folder))
    batches = list(make_loader(cfg, 0, 1, tokenizer))
    assert len(batches) == 6
    seen_images = 0
    by_key = {rel: name for name, (rel, _) in PICTURES.items()}
    for batch in batches:
        for b, comp in enumerate(batch["components"]):
            frames = batch["frames"][b]
            ids, labels = batch["input_ids"][b], batch["labels"][b]
            text = tokenizer.decode(ids[batch["attention_mask"][b].bool()])
            if comp != "pics":
                assert not batch["is_image"][b] and tuple(frames.shape) == (4, 3, RES, RES)
                assert "The video lasts for" in text
                continue
            seen_images += 1
            name = by_key[batch["keys"][b]]
            assert batch["is_image"][b] and int(batch["n_frames"][b]) == 1
            assert tuple(frames.shape) == (1, 3, RES, RES) and frames.dtype == torch.uint8
            assert batch["frame_times"][b].tolist() == [0.0] and batch["durations"][b] == 0.0
            # a solid picture stays its colour after the resize (JPEG/WebP: within a few levels)
            mean = frames[0].float().mean(dim=(1, 2))
            assert torch.allclose(mean, torch.tensor(PICTURES[name][1], dtype=torch.float32),
                                  atol=4), (name, mean)  # fmt: skip
            # chat template: <video>, the image question, no timestamp sentence; caption answers
            assert "<video>" in text and "Describe the image." in text
            assert "lasts for" not in text
            answer = tokenizer.decode(ids[labels != IGNORE_INDEX])
            assert answer.startswith(caption(name))
    assert seen_images == 6  # 12 draws, weights 1:1 → exactly 6 images


def test_plain_template_for_images(loader_corpus, folder, tokenizer):
    cfg = mixed_stage(loader_corpus.root, str(folder), template="plain",
                      mixture=[ImageComponent(name="pics", weight=1, images=str(folder))],
                      num_samples=2)  # fmt: skip
    (batch,) = list(make_loader(cfg, 0, 1, tokenizer))
    for b, key in enumerate(batch["keys"]):
        name = next(n for n, (rel, _) in PICTURES.items() if rel == key)
        ids = batch["input_ids"][b][batch["attention_mask"][b].bool()]
        assert tokenizer.decode(ids) == f"<video>{caption(name)}\n"


def test_resume_mid_epoch_with_a_mixture_equals_the_uninterrupted_run(
    loader_corpus, folder, tokenizer
):
    cfg = mixed_stage(loader_corpus.root, str(folder), num_samples=16)
    catalog = load_catalog([loader_corpus.root])
    full = []
    loader = make_loader(cfg, 0, 1, tokenizer, catalog=catalog)
    for _ in range(2):  # two epochs of 8 steps
        full += list(loader)
    assert any(b["is_image"].any() for b in full) and not all(b["is_image"].all() for b in full)

    for stop in (3, 11):  # mid epoch 0 and mid epoch 1
        first = make_loader(cfg, 0, 1, tokenizer, catalog=catalog)
        taken = 0
        while taken < stop:
            for _ in first:
                taken += 1
                if taken == stop:
                    break
        state = json.loads(json.dumps(first.state_dict()))  # the cursor survives JSON
        assert set(state["image_fingerprints"]) == {"pics"}
        resumed = make_loader(cfg.model_copy(update={"num_workers": 2}), 0, 1, tokenizer,
                              catalog=catalog)  # fmt: skip
        resumed.load_state_dict(state)
        rest = []
        while len(rest) < len(full) - stop:
            rest += list(resumed)
        for a, b in zip(full[stop:], rest, strict=True):
            assert a["keys"] == b["keys"] and a["epoch"] == b["epoch"] and a["step"] == b["step"]
            assert torch.equal(a["input_ids"], b["input_ids"])
            assert all(torch.equal(x, y) for x, y in zip(a["frames"], b["frames"], strict=True))


def test_resume_refused_when_the_captions_change(loader_corpus, tmp_path, tokenizer):
    root = write_folder(tmp_path / "pics")
    cfg = mixed_stage(loader_corpus.root, str(root))
    loader = make_loader(cfg, 0, 1, tokenizer)
    next(iter(loader))
    state = loader.state_dict()
    lines = (root / "captions.jsonl").read_text().replace("plain red", "bright red")
    (root / "captions.jsonl").write_text(lines)
    with pytest.raises(ResumeError, match=r"captions.jsonl of image component\(s\) \['pics'\]"):
        make_loader(cfg, 0, 1, tokenizer).load_state_dict(state)


def test_bad_images_are_substituted_naming_the_file(loader_corpus, tmp_path, tokenizer, caplog):
    root = write_folder(tmp_path / "pics", names=("red", "green"), extra_lines=[
        {"image": "broken.jpg", "caption": "never seen"},
        {"image": "gone.png", "caption": "never seen"},
        {"image": "red2.png"},  # no caption
        {"image": "../pics/red.png", "caption": "outside"},  # leaves the folder
    ])  # fmt: skip
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (8, 8), (200, 30, 30)).save(root / "red2.png")
    cfg = mixed_stage(loader_corpus.root, str(root), num_samples=12, batch_size=6,
                      mixture=[ImageComponent(name="pics", weight=1, images=str(root))])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="longvid.training.data.loader"):
        batches = list(make_loader(cfg, 0, 1, tokenizer))
    keys = [k for b in batches for k in b["keys"]]
    planned = [k for b in batches for k in b["planned_keys"]]
    assert set(keys) <= {"pics/red.png", "pics/green.jpg"}
    assert set(planned) == {"pics/red.png", "pics/green.jpg", "broken.jpg", "gone.png", "red2.png",
                            "../pics/red.png"}  # fmt: skip
    assert sum(b["substituted"] for b in batches) == 8  # every draw of a bad line (2 each)
    log = caplog.text
    assert f"{root}/broken.jpg: bad_image" in log
    assert f"{root}/gone.png: missing_image" in log and "captions.jsonl line 4" in log
    assert "captions.jsonl line 5" in log and "no_caption" in log
    assert "captions.jsonl line 6" in log and "the image path leaves the folder" in log

    # nothing loads: a LoaderError naming the files
    only_bad = write_folder(tmp_path / "bad", names=(), extra_lines=[
        {"image": "broken.jpg", "caption": "x"}])  # fmt: skip
    (only_bad / "broken.jpg").write_bytes(b"GIF89a garbage")
    cfg = cfg.model_copy(update={"num_samples": 1, "batch_size": 1, "mixture": [
        ImageComponent(name="pics", weight=1, images=str(only_bad))]})  # fmt: skip
    with pytest.raises(LoaderError, match=r"bad/broken.jpg: bad_image"):
        list(make_loader(cfg, 0, 1, tokenizer))


def test_folder_errors_name_the_file(tmp_path):
    with pytest.raises(NotFoundError, match=r"nothing/captions.jsonl: image folder has no"):
        load_image_folder(str(tmp_path / "nothing"))
    (tmp_path / "captions.jsonl").write_text('{"image": "a.jpg", "caption": "x"}\n{"image": \n')
    with pytest.raises(FormatError, match=r"captions.jsonl: not JSON lines"):
        load_image_folder(str(tmp_path))
    (tmp_path / "captions.jsonl").write_text('{"caption": "x"}\n')
    with pytest.raises(FormatError, match="no line has an 'image' field"):
        load_image_folder(str(tmp_path))
    (tmp_path / "captions.jsonl").write_text("\n")
    with pytest.raises(FormatError, match="no lines"):
        load_image_folder(str(tmp_path))


def test_decode_image_formats_and_orientation(tmp_path):
    import io

    # a 2:1 picture, left half red, right half blue, stored rotated with an EXIF orientation tag
    im = Image.new("RGB", (64, 32), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 32, 32))
    rotated = im.transpose(Image.Transpose.ROTATE_90)  # what a camera stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    rotated.save(buf, format="JPEG", quality=95, exif=exif)
    out = decode_image(buf.getvalue(), 16, "mem.jpg")  # [1, 3, 16, 16]
    assert tuple(out.shape) == (1, 3, 16, 16)
    left, right = out[0, :, :, :6].float().mean((1, 2)), out[0, :, :, 10:].float().mean((1, 2))
    assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGBA", (20, 20), (10, 200, 30, 128)).save(buf, format=fmt, lossless=True)
        px = decode_image(buf.getvalue(), 16, f"x.{fmt}")[0, :, 8, 8].tolist()
        assert np.allclose(px, [10, 200, 30], atol=2), (fmt, px)


def test_trainer_steps_on_images_use_the_image_path(loader_corpus, folder, tmp_path):
    """A few CPU steps on a video + image mixture: finite loss, images counted, the encoder fed
    one-frame inputs, each image one clip's token budget."""
    from longvid.training.trainer import Trainer

    cfg = TrainConfig.model_validate({
        "model": "conf/model/tiny.yaml",
        "data": {"corpus": [loader_corpus.root], "num_workers": 0, "tokenizer_vocab": 400},
        "stages": [{
            "name": "align", "trainable": ["projector"], "resolution": 64, "lr": 1e-3,
            "global_batch": 4, "micro_batch": 4, "max_seq_len": 256, "steps": 3,
            "data": {"t_min": 8, "t_max": 8, "template": "plain", "num_samples": 12, "mixture": [
                {"name": "short", "weight": 1.0, "buckets": ["short"]},
                {"name": "pics", "weight": 1.0, "images": str(folder)}]},
        }],
        "checkpoint": {"every_steps": 0, "keep_last": 1, "export_model": False},
        "runtime": {"threads": 1, "device": "cpu"},
        "metrics": {"tensorboard": False},
    })  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    shapes: list[tuple[int, ...]] = []
    real_setup = trainer._setup

    def setup_and_hook() -> None:  # record what the encoder is fed
        real_setup()
        trainer.model.encoder.register_forward_hook(
            lambda _m, args, _out: shapes.append(tuple(args[0].shape))
        )

    trainer._setup = setup_and_hook
    try:
        result = trainer.run()
    finally:
        torch.use_deterministic_algorithms(False)
    assert result.finished and result.global_step == 3
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert sum(r["image_samples"] for r in rows) == 6  # 12 draws 1:1, all 12 used in 3 steps
    model_cfg = trainer.model.cfg
    per_image, per_video = model_cfg.visual_tokens_per_image(), model_cfg.visual_tokens(8)
    assert per_image == 16 and per_video == 32  # tiny: one clip's budget; 8 frames = 2 clips
    for r in rows:
        n_img = r["image_samples"]
        expect = (n_img * per_image + (4 - n_img) * per_video) / 4
        assert r["visual_tokens_per_sample"] == expect
    # images went through the encoder as T = 1 inputs (the image position table), videos as clips
    assert any(s[2] == 1 for s in shapes) and any(s[2] == 4 for s in shapes)
    assert {s[2] for s in shapes} == {1, 4}
    # the released model's numbers: 196 patches of an image merged to 64 tokens
    from longvid.config import load_config
    from longvid.training.model.config import ModelConfig

    flash = load_config("conf/model/videochat_flash.yaml", ModelConfig, [])
    assert flash.visual_tokens_per_image() == 64 and flash.visual_tokens(1) == 64
