"""``make demo``: the whole tool once, end to end, on a generated sample corpus.

Runs each step as the ``longvid`` command a user would type (a subprocess each, so what the demo
shows is exactly what the CLI does) and stops at the first failure with its exit code.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from longvid.cli import COMMANDS


def step(title: str, args: list[str]) -> None:
    print(f"\n=== {title}\n$ longvid {' '.join(args)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "longvid.cli", *args], check=False)
    if proc.returncode != 0:
        print(f"demo: step '{title}' failed with exit code {proc.returncode}", file=sys.stderr)
        sys.exit(proc.returncode)
    print(f"--- {title}: done in {time.monotonic() - started:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longvid.demo", description=__doc__)
    parser.add_argument("--out", default="demo-out", help="where everything is written")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "sample-corpus"
    built = out / "corpus"
    outputs = {"sample corpus": corpus}

    step(
        "1. sample corpus in all five official formats",
        ["sample-corpus", str(corpus), "--scale", "demo"],
    )
    if "build" in COMMANDS:
        step(
            "2. ingest + build WebDataset shards with Ray",
            ["build", "conf/build/demo.yaml", f"sources_root={corpus}", f"output.root={built}"],
        )
        outputs["built corpus"] = built
    if "audit" in COMMANDS:
        report = out / "audit"
        step("3. audit the corpus", ["audit", str(built), "--out", str(report)])
        outputs["audit report"] = report / "index.html"
    if "train" in COMMANDS:
        train = out / "train"
        # a fresh run refuses a folder that holds checkpoints: a rerun of the demo starts over
        shutil.rmtree(train, ignore_errors=True)
        step(
            "4a. train the demo curriculum, interrupted mid-way",
            ["train", "conf/train/demo.yaml", "--out", str(train), f"data.corpus={built}",
             "--stop-after", "half"],
        )
        step(
            "4b. resume from the newest checkpoint and finish all four stages",
            ["train", "conf/train/demo.yaml", "--out", str(train), f"data.corpus={built}",
             "--resume", "auto"],
        )
        outputs["training run"] = train

    # The audit report is what a newcomer opens first: list it last, where the eye lands.
    if "audit report" in outputs:
        outputs["audit report"] = outputs.pop("audit report")
    print("\nDemo finished. Outputs:")
    for name, path in outputs.items():
        print(f"  {name:>14}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
