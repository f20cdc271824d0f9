"""End-to-end build of hours of generated video (`python bench/bench_build_e2e.py --hours 2`):
source-hours per hour of ``longvid build`` on a local Ray and on a 2-node local Ray, against
one plain decode pass of the same videos.

1. A few distinct videos are rendered once (640×360 25 fps h264 + AAC, shot changes on
   keyframes, as bench_build.py; cached under --work) and a manifest lists them under many
   record ids until the total reaches --hours.
2. Peer (the physical floor): one plain PyAV decode of every listed video to 64×36 (the
   detection size), every frame, one process per core, one decoder thread each.
3. ``longvid build`` (the CLI, default CPU stages: probe, scan = one decode pass feeding shot
   detection + scores + kept frames, segment, cut = stream copy; shards, parts, markers) on a
   local Ray with all cores.
4. The same build on a 2-node local Ray: a head and one more node started with ``ray start`` on
   this machine, the cores split between them (1 CPU each on 2 cores); the commit markers record
   which node committed each unit.

Each round brackets the two builds (their order alternates) with a decode pass before and after
them, as the machine is shared; medians are printed.
Ray's start is reported on its own (the 2-node cluster's start is not in the build's wall).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.bench_build

from bench.bench_build import make_videos  # noqa: E402

RAY = str(Path(sys.executable).parent / "ray")


def _decode_one(path: str) -> tuple[int, float]:
    from longvid.media.decode import iter_frames

    cpu = time.process_time()
    frames = sum(1 for _ in iter_frames(path, size=(64, 36), threads=1))
    return frames, time.process_time() - cpu


def plain_decode(paths: list[Path], workers: int) -> tuple[float, int, float]:
    """Every frame of every path decoded to 64×36, ``workers`` processes with one decoder thread
    each: (wall, frames, CPU seconds of the decoding processes)."""
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(_decode_one, [str(p) for p in paths]))
    return time.perf_counter() - t, sum(f for f, _ in done), sum(c for _, c in done)


def write_manifest(paths: list[Path], hours: float, root: Path) -> tuple[Path, list[Path], float]:
    """Records ``e2e0000``, ``e2e0001``, ... cycling over ``paths`` until ``hours`` of video;
    returns the manifest folder, the video of each record and the total seconds."""
    from longvid.media.probe import probe
    from longvid.schema import MANIFEST_SCHEMA, VideoRecord
    from longvid.shards import write_table

    durations = {p: probe(p).duration for p in paths}
    rows, listed, total, i = [], [], 0.0, 0
    while total < hours * 3600:
        p = paths[i % len(paths)]
        rows.append(VideoRecord(source="generic", video_id=f"e2e{i:04d}", video_uri=str(p),
                                locator=f"bench:{i}", licence="generated",
                                declared_duration=durations[p]).as_row())
        listed.append(p)
        total += durations[p]
        i += 1
    root.mkdir(parents=True, exist_ok=True)
    write_table(str(root / "manifest.parquet"), rows, MANIFEST_SCHEMA)
    return root, listed, total


def build(manifest: Path, out: Path, extra: list[str], env: dict | None = None) -> dict:
    """``longvid build`` in its own process; its summary.json plus the wall seen from here."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "longvid.cli", "build", "--manifest", str(manifest),
           "--out", str(out), "progress=false", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"build failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["process_wall"] = wall
    nodes: dict[str, int] = {}
    for p in sorted((out / "ledger").glob("*.json")):
        node = json.loads(p.read_text())["stats"].get("node_id") or "?"
        nodes[node] = nodes.get(node, 0) + 1
    summary["units_by_node"] = nodes
    return summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwoNodeRay:
    """A head and one more node on this machine (``ray start --block``, each its own process
    group), ``cpus`` CPUs each."""

    def __init__(self, cpus: int, logs: Path):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path("/tmp") / f"lvray-e2e-{self.port}"  # short: socket paths ≤ 107 bytes
        token = logs / "ray_auth_token"  # Ray refuses a multi-node start without auth
        token.write_text(secrets.token_hex(32))
        self.env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.cpus, self.logs = cpus, logs
        self.procs: list[subprocess.Popen] = []

    def _start(self, args: list[str], log: Path) -> None:
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block",
                  f"--num-cpus={self.cpus}"]
        with open(log, "wb") as fh:
            self.procs.append(subprocess.Popen([RAY, "start", *args, *common], env=self.env,
                                               stdout=fh, stderr=subprocess.STDOUT,
                                               start_new_session=True))
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                raise RuntimeError(f"ray start failed: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def __enter__(self) -> TwoNodeRay:
        t = time.perf_counter()
        try:
            self._start(["--head", f"--port={self.port}", f"--temp-dir={self.temp}",
                         "--include-dashboard=false"], self.logs / "head.log")
            self._start([f"--address={self.address}"], self.logs / "worker.log")
            self._wait_alive(2)
        except BaseException:
            self.__exit__()
            raise
        self.start_s = time.perf_counter() - t
        return self

    def _wait_alive(self, n: int) -> None:
        code = (f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                "print(json.dumps(sum(x['Alive'] for x in ray.nodes())))")
        for _ in range(60):
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=self.env, timeout=120, check=False)
            if proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1]) >= n:
                return
            time.sleep(1)
        raise RuntimeError("the two Ray nodes did not come up")

    def __exit__(self, *_exc) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the node and every process it started
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)


def row(name: str, s: dict, source_s: float) -> dict:
    d = s["run"]["driver_seconds"]
    wall = s["process_wall"]
    return {"run": name, "wall_s": wall, "ray_start_s": d.get("ray_start", 0.0),
            "ray_stop_s": d.get("ray_stop", 0.0), "job_s": d["units"],
            "plan_s": d.get("plan", 0.0), "finalize_s": d.get("finalize", 0.0),
            "unit_task_s": s["unit_task_seconds"],
            "unit_task_cpu_s": s.get("unit_task_cpu_seconds", 0.0),
            "stage_seconds": s["stage_seconds"],
            "samples": s["samples"], "units_by_node": s["units_by_node"],
            "source_h_per_h": source_s / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0, help="source hours in the manifest")
    ap.add_argument("--work", default="/tmp/longvid-bench-e2e", help="videos (cached), outputs")
    ap.add_argument("--videos", type=int, default=4, help="distinct videos rendered")
    ap.add_argument("--seconds", type=int, default=300, help="length of each distinct video")
    ap.add_argument("--unit-seconds", type=float, default=1800.0,
                    help="units.max_unit_seconds of the build (source seconds per unit)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of decode + both builds")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="cores to use")
    ap.add_argument("--skip-two-node", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths, _truth = make_videos(work, args.videos, args.seconds)
    manifest, listed, total_s = write_manifest(paths, args.hours, work / "ingest")
    print(f"machine: {args.cpus}-core shared CPU box, load average {os.getloadavg()[0]:.1f}")
    print(f"corpus: {len(listed)} records over {len(paths)} distinct 640×360 25 fps h264 videos "
          f"of {args.seconds} s = {total_s / 3600:.2f} h; units of ≤ {args.unit_seconds:.0f} s")
    common = [f"units.max_unit_seconds={args.unit_seconds}"]
    local = [f"ray.num_cpus={args.cpus}", *common]
    half = max(1, args.cpus // 2)
    results: dict = {"records": len(listed), "source_s": total_s, "rounds": []}
    cluster = None
    if not args.skip_two_node:
        cluster = TwoNodeRay(half, work).__enter__()
        print(f"2-node Ray ({half} CPU each) started in {cluster.start_s:.1f} s "
              f"(not in the builds' walls)")
        results["two_node_start_s"] = cluster.start_s
    try:
        for r in range(args.rounds):
            # each round brackets the builds with a decode pass before and after them (the
            # machine is shared: its load moves within minutes); the builds alternate order
            builds = ["local", "two_node"] if r % 2 == 0 else ["two_node", "local"]
            rnd: dict = {"load_avg": [os.getloadavg()[0]], "decode": []}
            for what in ["decode", *builds, "decode"]:
                if what == "decode":
                    secs, frames, cpu = plain_decode(listed, workers=args.cpus)
                    rnd["decode"].append({"wall_s": secs, "frames": frames, "cpu_s": cpu})
                    rnd["load_avg"].append(os.getloadavg()[0])
                    print(f"round {r}: plain decode {secs:.1f} s, {cpu:.0f} CPU-s "
                          f"({frames / secs:.0f} fps, {total_s / secs:.0f} source-h/h)",
                          flush=True)
                elif what == "local":
                    s = build(manifest, work / "out-local", local)
                    rnd["local"] = row("local", s, total_s)
                    print(f"round {r}: local Ray build {json.dumps(rnd['local'])}", flush=True)
                elif cluster is not None:
                    s = build(manifest, work / "out-two-node",
                              [f"ray.address={cluster.address}", *common], env=cluster.env)
                    rnd["two_node"] = row("two_node", s, total_s)
                    print(f"round {r}: 2-node build {json.dumps(rnd['two_node'])}", flush=True)
            results["rounds"].append(rnd)
    finally:
        if cluster is not None:
            cluster.__exit__()
    report(results, total_s)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {work / 'results.json'}")
    return 0


def report(results: dict, total_s: float) -> None:
    rounds = results["rounds"]
    decode = statistics.median(d["wall_s"] for r in rounds for d in r["decode"])
    decode_cpu = statistics.median(d["cpu_s"] for r in rounds for d in r["decode"])
    print(f"\nmedians over {len(rounds)} round(s); plain decode {decode:.1f} s, "
          f"{decode_cpu:.0f} CPU-s ({total_s / decode:.0f} source-h/h; the passes before and "
          "after the builds)")
    print("| run | wall | Ray start | Ray job | source-h/h | wall ÷ decode | "
          "(wall − Ray start/stop) ÷ decode | unit tasks' CPU-s ÷ decode's | units by node |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name in ("local", "two_node"):
        rows = [r[name] for r in rounds if name in r]
        if not rows:
            continue

        def med(key: str, rows: list[dict] = rows) -> float:
            return statistics.median(x[key] for x in rows)

        wall, start, stop = med("wall_s"), med("ray_start_s"), med("ray_stop_s")
        print(f"| {name} | {wall:.1f} s | {start:.1f} s | {med('job_s'):.1f} s | "
              f"{total_s / wall:.0f} | {wall / decode:.2f} | {(wall - start - stop) / decode:.2f}"
              f" | {med('unit_task_cpu_s') / decode_cpu:.2f}"
              f" | {sorted(rows[-1]['units_by_node'].values())} |")


if __name__ == "__main__":
    sys.exit(main())
