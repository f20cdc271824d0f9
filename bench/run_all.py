"""``make bench``: run every benchmark in ``bench/`` (or the ones named) with its defaults.

Each benchmark measures its peer or physical limit in the same run and prints the ratio; this
runner only sequences them and reports which failed. Results are recorded by hand, with the
machine, in ``bench/RESULTS.md``.

    python -m bench.run_all                 # all of them (tens of minutes on 2 cores)
    python -m bench.run_all decode loader   # bench_decode.py and bench_loader.py only
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {f"bench_{name.removeprefix('bench_').removesuffix('.py')}.py" for name in argv}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            print(f"run_all: no such benchmark: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.name in wanted]
    failed = []
    for script in scripts:
        print(f"\n=== {script.name}", flush=True)
        started = time.monotonic()
        module = f"bench.{script.stem}"
        code = subprocess.run([sys.executable, "-m", module], cwd=HERE.parent).returncode
        print(f"--- {script.name}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
