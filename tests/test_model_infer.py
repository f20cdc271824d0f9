"""``longvid infer`` end to end: a tiny checkpoint saved here, a video made here with ffmpeg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longvid.media.ffmpeg import run_ffmpeg
from longvid.training.model.hico import HiCoModel
from longvid.training.tokenizer import build_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, make_tiny_model) -> Path:
    out = tmp_path_factory.mktemp("ckpt")
    # an untied output head: a random tied model just repeats the prompt's last token ("\n"),
    # whatever the video; with this seed the answer changes with the input
    make_tiny_model("llm.tie_word_embeddings=false", seed=17).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    # a name that starts with '-' must still be read as a file, never as an option
    path = tmp_path_factory.mktemp("vid") / "-clip.mp4"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=6", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", str(path)],
        uri=str(path), reason="cut_failed",
    )  # fmt: skip
    return path


def expected_answer(checkpoint: Path, video: Path, n: int, dropout: bool) -> str:
    """The same steps as the command, in this process."""
    from longvid.training.infer import read_frames, video_duration

    model = HiCoModel.from_pretrained(checkpoint)
    duration = video_duration(video)
    times = (torch.arange(n, dtype=torch.float64) + 0.5) * duration / n
    frames = model.preprocess(read_frames(video, times.numpy(), model.cfg.encoder.img_size))
    prompt = build_prompt("What is shown?", duration, n)
    ids = model.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(frames, ids, max_new_tokens=8, dropout=dropout)
    return model.tokenizer.decode(out.tolist(), skip_special_tokens=True).strip()


def infer(checkpoint: Path, video: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "longvid.cli", "infer", "--checkpoint", str(checkpoint),
        f"--video={video.name}", "--question", "What is shown?", "--min-frames", "8",
        "--max-frames", "16", "--max-new-tokens", "8", "--device", "cpu", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=video.parent, capture_output=True, text=True, timeout=300)


def test_infer_end_to_end(checkpoint, video):
    # 6 s of video: T = clamp(4 * floor(6 / 4), 8, 16) = 8 frames -> 2 clips -> 32 tokens
    proc = infer(checkpoint, video)
    assert proc.returncode == 0, proc.stderr
    assert "-clip.mp4: 6.00 s, 8 frames, 32 visual tokens, dropout off" in proc.stderr
    answer = expected_answer(checkpoint, video, 8, dropout=False)
    assert answer  # the seed gives a non-empty answer, so the comparison means something
    assert proc.stdout.strip() == answer

    dropped = infer(checkpoint, video, "--dropout", "--frames", "12")
    assert dropped.returncode == 0, dropped.stderr
    assert "12 frames, 48 visual tokens, dropout on" in dropped.stderr
    dropped_answer = expected_answer(checkpoint, video, 12, dropout=True)
    assert dropped.stdout.strip() == dropped_answer
    assert dropped_answer != answer


def test_infer_reports_a_missing_video(checkpoint, tmp_path):
    proc = infer(checkpoint, tmp_path / "absent.mp4")
    assert proc.returncode == 1
    assert "absent.mp4: video file not found" in proc.stderr
