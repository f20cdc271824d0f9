"""A loader with nothing to yield stops at once with an error that says why, never hangs: an
empty corpus (a build whose every input was rejected), a mixture whose filters select nothing,
no corpora at all, with DataLoader workers and through ``longvid train``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from longvid import storage
from longvid.errors import ConfigError, FormatError
from longvid.shards import SAMPLES_SCHEMA
from longvid.shards.index import write_index
from longvid.shards.manifest import SAMPLES_NAME, write_table
from longvid.training.data import LoaderError, make_loader
from longvid.training.data.config import MixtureComponent, StageData
from longvid.training.trainer import batch_stream

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def empty_corpus(tmp_path_factory) -> str:
    """What the build writes when it accepts no sample: an empty shard list and samples table."""
    root = str(tmp_path_factory.mktemp("empty_corpus"))
    write_index(root, [], name="longvid")
    write_table(storage.join(root, SAMPLES_NAME), [], SAMPLES_SCHEMA)
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_an_empty_corpus_is_refused_at_once(empty_corpus, workers):
    cfg = StageData(stage="s1", corpora=[empty_corpus], t_min=4, t_max=8, num_workers=workers)
    t = time.monotonic()
    with pytest.raises(ConfigError, match=r"stage 's1': the corpora hold no samples \(0 samples "
                                          rf"in {empty_corpus}\)"):
        make_loader(cfg, 0, 1)
    assert time.monotonic() - t < 30


def test_an_empty_corpus_beside_a_full_one_still_loads(empty_corpus, loader_corpus):
    cfg = StageData(stage="s1", corpora=[empty_corpus, loader_corpus.root], t_min=4, t_max=8,
                    num_workers=0, num_samples=2, batch_size=2)
    loader = make_loader(cfg, 0, 1)
    assert len(loader) == 1
    assert len(next(iter(loader))["keys"]) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_a_mixture_that_filters_everything_out_is_refused(loader_corpus, workers):
    longest = max(s.duration for s in loader_corpus.specs)
    mixture = [MixtureComponent(name="very_long", weight=1.0, min_duration=longest + 1)]
    cfg = StageData(stage="s2", corpora=[loader_corpus.root], t_min=4, t_max=8,
                    num_workers=workers, mixture=mixture)
    with pytest.raises(ConfigError, match="stage 's2': mixture component 'very_long' selects no "
                                          "sample"):
        make_loader(cfg, 0, 1)


def test_no_corpora_is_refused():
    with pytest.raises(FormatError, match="the stage's corpora list is empty"):
        make_loader(StageData(stage="s3", corpora=[], t_min=4, t_max=8), 0, 1)


def test_the_trainer_stream_stops_when_epochs_yield_nothing():
    """The trainer walks epochs until it has its steps; epochs that yield no batch used to make
    it spin forever. An iterable with no batch stands for such a loader."""
    stream = batch_stream([])
    t = time.monotonic()
    with pytest.raises(LoaderError, match="yielded no batch in 2 epochs in a row"):
        next(stream)
    assert time.monotonic() - t < 5


@pytest.mark.slow
def test_train_on_an_empty_corpus_exits_with_the_reason(empty_corpus, tmp_path):
    cfg = yaml.safe_load((REPO / "conf" / "train" / "demo.yaml").read_text())
    cfg["data"].update(corpus=[empty_corpus], num_workers=2)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "longvid.cli", "train", str(config), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"the corpora hold no samples (0 samples in {empty_corpus})" in proc.stderr, (
        proc.stderr[-2000:]
    )
