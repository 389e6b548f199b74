"""CLI start-up benchmark: process start to exit of the commands a field tech or a script
types all the time, against ``python -c pass`` in the same run.

Each command runs as a new process through its real entry point (the ``storefleet`` and
``fleet`` console scripts next to this interpreter), output discarded; the wall-clock time
from spawning it to its exit is one sample. Rounds interleave the commands (one run of
each per round, the baseline first), so a machine that gets busier or quieter during the
run shifts every command alike. Per command: ``median_ms``, ``p90_ms``, ``min_ms``,
``max_ms`` and ``ratio`` (median over the baseline's median). The goal is every median
under ``target_ms`` (500 ms on an idle box); ``load_avg_1m`` at the start and the end says
how idle the box was. ``cpu_median_ms`` (the child's user + system time) moves much less
than the wall clock when the machine is shared, and is close to it on an idle one.

    python -m bench.cli_startup --json          # human summary, then one JSON line
    storefleet bench cli --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_MS = 500.0  # issue 11: `storefleet --help` and every --help under half a second
BASELINE = "python -c pass"


def commands(bin_dir: Path) -> dict[str, list[str]]:
    """Name -> argv. The console scripts live beside the interpreter (a venv's bin/)."""
    storefleet, fleet = str(bin_dir / "storefleet"), str(bin_dir / "fleet")
    return {
        BASELINE: [sys.executable, "-c", "pass"],
        "storefleet --help": [storefleet, "--help"],
        "storefleet version": [storefleet, "version"],
        "storefleet sim printer --help": [storefleet, "sim", "printer", "--help"],
        "storefleet demo --help": [storefleet, "demo", "--help"],
        "fleet --help": [fleet, "--help"],
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU milliseconds from spawning ``argv`` to its exit (the CPU time is the
    child's: user + system); a failing command is an error."""
    cpu = _children_cpu_s()
    t = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    ms = (time.perf_counter() - t) * 1e3
    cpu_ms = (_children_cpu_s() - cpu) * 1e3
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    return ms, cpu_ms


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def _median(values: list[float]) -> float:
    ordered, n = sorted(values), len(values)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run(*, runs: int = 10, bin_dir: Path | None = None) -> dict[str, Any]:
    cmds = commands(bin_dir or Path(sys.executable).parent)
    # Columns: terminals differ and rich wraps help to them; make every run the same.
    env_before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    load_start = os.getloadavg()[0]
    try:
        for argv in cmds.values():  # warm-up: page cache and .pyc files, not measured
            _once(argv)
        samples: dict[str, list[float]] = {name: [] for name in cmds}
        cpu: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(runs):
            for name, argv in cmds.items():
                wall_ms, cpu_ms = _once(argv)
                samples[name].append(wall_ms)
                cpu[name].append(cpu_ms)
    finally:
        if env_before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = env_before
    base = _median(samples[BASELINE])
    results = {
        name: {
            "median_ms": round(_median(s), 1),
            "p90_ms": round(_pct(s, 0.90), 1),
            "min_ms": round(min(s), 1),
            "max_ms": round(max(s), 1),
            "ratio": round(_median(s) / base, 2),
            "cpu_median_ms": round(_median(cpu[name]), 1),
        }
        for name, s in samples.items()
    }
    slowest = max((n for n in results if n != BASELINE), key=lambda n: results[n]["median_ms"])
    return {
        "commands": results,
        "medians_ms": {n: r["median_ms"] for n, r in results.items()},
        "ratios": {n: r["ratio"] for n, r in results.items() if n != BASELINE},
        "baseline": BASELINE,
        "baseline_median_ms": round(base, 1),
        "slowest": slowest,
        "slowest_median_ms": results[slowest]["median_ms"],
        "target_ms": TARGET_MS,
        "target_met": results[slowest]["median_ms"] < TARGET_MS,
        "runs": runs,
        "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="storefleet bench cli", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line (always printed last)"
    )
    parser.add_argument("--runs", type=int, default=10, help="runs of each command")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    bin_dir = Path(sys.executable).parent
    missing = [n for n in ("storefleet", "fleet") if not (bin_dir / n).exists()]
    if missing:
        parser.error(f"no {' or '.join(missing)} console script beside {sys.executable}: "
                     "run this with the interpreter of the environment storefleet is "
                     "installed in (e.g. .venv/bin/python)")
    r = run(runs=args.runs, bin_dir=bin_dir)
    width = max(len(n) for n in r["commands"])
    print(f"CLI start-up, process start to exit, {r['runs']} runs each "
          f"(load average {r['load_avg_1m'][0]} -> {r['load_avg_1m'][1]}, {r['cpus']} CPUs):")
    for name, c in r["commands"].items():
        print(f"  {name:{width}}  median {c['median_ms']:7.1f} ms  p90 {c['p90_ms']:7.1f}  "
              f"min {c['min_ms']:7.1f}  max {c['max_ms']:7.1f}  x{c['ratio']:<5}  "
              f"cpu {c['cpu_median_ms']:6.1f} ms")
    verdict = "met" if r["target_met"] else "NOT met"
    print(f"slowest: {r['slowest']} {r['slowest_median_ms']} ms; "
          f"target {r['target_ms']:.0f} ms {verdict}")
    if args.json:
        print(json.dumps(r, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
