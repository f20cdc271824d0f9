"""LongVid QA: items per sample-hour, counting by meaning against counting identical texts, and
the llm_qa stage's cost per sample with the tiny random Qwen2 on CPU against the template
generator on the same timelines.

    .venv/bin/python bench/bench_llm_qa.py [--samples 6] [--repeats 3] [--threads 1]

Inputs (nothing is downloaded):

* the **sample corpus** (demo scale, metadata only: its release files are read by the real
  ingest adapters): every Ego4D, HowTo100M, HD-VILA and MiraData video as one long sample, its
  texts re-timed and turned into a timeline with the ground-truth cuts, as the events stage does;
* **kitchen videos**: Ego4D-shaped narration timelines (two passes, paraphrases, tenses) of
  5-10 min drawn from a seed, where actions repeat as they do in real egocentric video.

Measured:

* template QA items per sample-hour (all tasks);
* on the kitchen videos, whose true counts are known: the share of counting answers equal to
  the true count, grouping by meaning (verb-object keys, the default) against identical
  normalised text (the previous rule);
* the llm_qa stage (prompt, schema-constrained greedy decoding with xgrammar, validation) per
  sample, best of ``--repeats``, against the template generator on the same timelines (ratio);
  parse rate and the share of generated items rejected by validation, with the reasons. The
  model has random weights: its items are all expected to fail validation; the cost of decoding
  does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from longvid.annotate.captions import source_captions
from longvid.annotate.config import EventsConfig, LLMQAConfig, QAConfig
from longvid.annotate.counting import verb_object_groups
from longvid.annotate.llm_qa import LLMQAWriter, Stats
from longvid.annotate.qa import make_qa
from longvid.annotate.timeline import Timeline, build_timeline, normalise
from longvid.annotate.tiny_lm import save_random_qwen2
from longvid.samples.corpus import write_sample_corpus
from longvid.segment.policy import retime_texts

ACTIONS = [  # (paraphrases of one action)
    ("opens the fridge", "opens the refrigerator", "opened the fridge door"),
    ("closes the fridge", "shuts the fridge", "closes the refrigerator"),
    ("picks up a knife", "grabs the knife", "takes the knife"),
    ("puts down the knife", "places the knife", "puts the knife down"),
    ("cuts the onion", "slices the onion", "chops the onion"),
    ("washes the cup", "rinses the cup", "cleans the cup"),
    ("pours water into the pot", "pours water in the pot", "pours the water into a pot"),
    ("stirs the soup", "mixes the soup", "stirs the soup with a spoon"),
    ("picks up the phone", "takes the phone", "grabs his phone"),
    ("wipes the table", "wipes the table with a cloth", "wipes the kitchen table"),
]


def kitchen_timeline(rng: random.Random, cfg: EventsConfig) -> tuple[Timeline, dict[str, int]]:
    """An Ego4D-shaped narration timeline (a narration every 3-9 s, a few actions repeating) and
    the true count of each action's phrasing: its runs in the narration sequence (consecutive
    narrations of one action are one occurrence, as the counting rule says)."""
    duration = rng.uniform(300, 600)
    caps, t = [], rng.uniform(1, 4)
    active = rng.sample(ACTIONS, 6)
    runs: Counter = Counter()
    last = None
    while t < duration - 2:
        action = rng.choice(active)
        runs[action] += action != last
        last = action
        caps.append({"start": round(t, 2), "end": None, "text": f"#C C {rng.choice(action)}",
                     "kind": "narration", "origin": "narration_pass_1", "clipped": False})
        if rng.random() < 0.3:  # the second pass narrates the same moment in other words
            caps.append({"start": round(t + rng.uniform(0.1, 0.8), 2), "end": None,
                         "text": f"#C C {rng.choice(action)}", "kind": "narration",
                         "origin": "narration_pass_2", "clipped": False})
        t += rng.uniform(3, 9)
    truth = {normalise(f"#C C {p}"): runs[a] for a in active for p in a}
    return build_timeline(caps, duration, [], [], cfg), truth


def counting_accuracy(kitchens: list[tuple[Timeline, dict[str, int]]]) -> None:
    """Share of counting answers equal to the true count: by meaning against identical text."""
    right = total = right_old = total_old = 0
    for tl, truth in kitchens:
        for g in verb_object_groups(tl.events, 10.0):
            true = {truth[normalise(tl.events[i].text)] for i in g.events}
            total += 1
            right += true == {g.count}
        for text, n in Counter(normalise(e.text) for e in tl.events).items():
            total_old += 1
            right_old += truth[text] == n
    print(f"  counting answers equal to the true count: by meaning {right}/{total} "
          f"({100 * right / total:.0f} %), identical text {right_old}/{total_old} "
          f"({100 * right_old / total_old:.0f} %)")


def corpus_timelines(root: Path, cfg: EventsConfig) -> list[Timeline]:
    from longvid.ingest.base import get_adapter
    from longvid.ingest.config import source_from_dict
    from longvid.schema import VideoRecord

    write_sample_corpus(root, scale="demo", render=False)
    truth = {(v["source"], v["id"]): v
             for v in json.loads((root / "ground_truth.json").read_text())["videos"]}
    out = []
    for source in ("ego4d", "howto100m", "hdvila", "miradata"):
        src = source_from_dict({"name": source, "root": str(root / source)}, "bench")
        for item in get_adapter(source).iter_items(src):
            if not isinstance(item, VideoRecord):
                continue
            row = item.as_row()
            video = truth[(source, row["video_id"])]
            dur = float(video["duration"])
            caps = source_captions(retime_texts(row["texts"], 0.0, dur), dur)
            out.append(build_timeline(caps, dur, video["cut_times"], [], cfg))
    return out


def identical_text_repeats(tl: Timeline) -> int:
    """Counting questions the previous rule could ask with a count >= 2: identical texts."""
    counts = Counter(normalise(e.text) for e in tl.events)
    return sum(n >= 2 for n in counts.values())


def qa_stats(name: str, timelines: list[Timeline], cfg: QAConfig) -> dict[str, float]:
    hours = sum(tl.duration for tl in timelines) / 3600
    items = [it for n, tl in enumerate(timelines) for it in make_qa(tl, f"{name}{n}", 0, cfg)]
    by_meaning = sum(sum(g.count >= 2 for g in verb_object_groups(tl.events, 10.0))
                     for tl in timelines)
    identical = sum(identical_text_repeats(tl) for tl in timelines)
    row = {"samples": len(timelines), "hours": hours, "items": len(items),
           "items_per_hour": len(items) / hours, "repeated_by_meaning": by_meaning,
           "repeated_identical": identical,
           "per_task": dict(Counter(it.task for it in items))}
    print(f"{name}: {len(timelines)} samples, {hours:.2f} h, {len(items)} template items = "
          f"{row['items_per_hour']:.0f} per sample-hour; {row['per_task']}")
    print(f"  groups that happen >= 2 times: actions by meaning {by_meaning}, identical texts "
          f"{identical}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=6, help="timelines the LLM stage writes for")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a Ray task's CPU)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ev_cfg, qa_cfg = EventsConfig(), QAConfig()
    rng = random.Random(0)
    labelled = [kitchen_timeline(rng, ev_cfg) for _ in range(20)]
    kitchens = [tl for tl, _ in labelled]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = corpus_timelines(Path(tmp) / "corpus", ev_cfg)
        qa_stats("sample corpus", corpus, qa_cfg)
        qa_stats("kitchen narrations", kitchens, qa_cfg)
        counting_accuracy(labelled)

        model = save_random_qwen2(Path(tmp) / "qwen2", seed=0, max_positions=32768)
        cfg = LLMQAConfig(model_path=str(model), device="cpu")
        writer = LLMQAWriter(cfg)
        chosen = (kitchens[: args.samples // 2] + corpus[: args.samples - args.samples // 2])
        llm_s, tpl_s, totals = [], [], Stats()
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for n, tl in enumerate(chosen):
                _, stats, _ = writer.write(tl, [], f"s{n}", 0)
                if r == 0:
                    totals.add(stats)
            llm_s.append((time.perf_counter() - t0) / len(chosen))
            t0 = time.perf_counter()
            for n, tl in enumerate(chosen):
                make_qa(tl, f"s{n}", 0, qa_cfg)
            tpl_s.append((time.perf_counter() - t0) / len(chosen))
    llm, tpl = min(llm_s), min(tpl_s)
    rejected = sum(totals.rejected.values())
    print(f"llm_qa, tiny random Qwen2 on CPU ({args.threads} thread), {len(cfg.tasks)} tasks per "
          f"sample: {llm:.2f} s per sample (median {statistics.median(llm_s):.2f}); template "
          f"generator {tpl * 1000:.2f} ms per sample; ratio {llm / tpl:.0f}x")
    print(f"  outputs {totals.generated}, parsed {totals.parsed} "
          f"({100 * totals.parsed / totals.generated:.0f} %), accepted {totals.accepted}, "
          f"rejected {rejected} ({100 * rejected / totals.generated:.0f} %): "
          f"{dict(totals.rejected.most_common())}")


if __name__ == "__main__":
    main()
