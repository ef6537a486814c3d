"""`make bench`: the default performance run, then retrieval quality on a sample, in under 20 minutes on 2 cores.

Each benchmark runs in its own process (memory returns between them; one failing does not hide the
other's results). Results: bench/results/perf.json + perf.md and bench/results/quality.json.

Run: `.venv/bin/python -m bench.run_all [--quick] [--skip perf|quality] [--quality-sample N]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUALITY_SAMPLE = 200
"""Questions per language for the default quality run (the full run takes all 1,190)."""


def _run(name: str, cmd: list[str]) -> tuple[int, float]:
    print(f"==> {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    secs = time.perf_counter() - t0
    print(f"<== {name}: exit {rc} after {secs:.0f}s", file=sys.stderr, flush=True)
    return rc, secs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke run: perf --quick and a small quality sample")
    ap.add_argument("--skip", default="", help="comma-separated: perf, quality")
    ap.add_argument("--quality-sample", type=int, default=None, help="questions per language for quality")
    args = ap.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    py = sys.executable
    status: dict[str, tuple[int, float]] = {}
    if "perf" not in skip:
        status["perf"] = _run("perf", [py, "-m", "bench.perf", *(["--quick"] if args.quick else [])])
    if "quality" not in skip:
        sample = args.quality_sample or (20 if args.quick else QUALITY_SAMPLE)
        status["quality"] = _run("quality", [py, "-m", "bench.quality", "--sample", str(sample)])
    total = sum(s for _, s in status.values())
    for name, (rc, secs) in status.items():
        print(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {secs:.0f}s", file=sys.stderr)
    print(f"total {total:.0f}s; results in bench/results/", file=sys.stderr)
    return 0 if all(rc == 0 for rc, _ in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
