"""Where a long `train` stage stands: every run in its work directories, finished or not, with its step,
its median step time and the time it still needs.

    python benchmarks/train_progress.py [--root .] [--steps 90] [--all]

The `train` stage prints one bar over runs; a run itself can take an hour on 2 cores. Each run trains in
.atod/resume/train/<digest>/<method>/<bench>/seed<k> (see tasks/stages/train.py) and appends one line per
step to its metrics.jsonl, and writes summary.json when it ends; this reads those files only (safe while
the stage runs, from another shell). Without `--all`, only the most recently written digest (the inputs of
the execution running now or last). `--steps` defaults to `train.steps` of params.yaml in `--root`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd

from atod.config import load_params


def run_rows(digest_dir: Path, steps: int, now: float) -> list[dict]:
    """One row per run directory under `digest_dir` (<method>/<bench>/seed<k>)."""
    rows = []
    for run in sorted(digest_dir.glob("*/*/seed*")):
        metrics = run / "metrics.jsonl"
        lines = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
        train_lines = [r for r in lines if "step_time_s" in r]
        step = max((r["step"] for r in train_lines), default=0)
        step_s = statistics.median(r["step_time_s"] for r in train_lines) if train_lines else float("nan")
        done = (run / "summary.json").exists()
        idle_min = (now - metrics.stat().st_mtime) / 60 if metrics.exists() else float("nan")
        rows.append({
            "method": run.parts[-3], "benchmark": run.parts[-2], "seed": int(run.name.removeprefix("seed")),
            "state": "done" if done else "running" if idle_min < 10 else "stopped",
            "step": step, "median_step_s": round(step_s, 1),
            "left_min": 0.0 if done else round(max(steps - step, 0) * step_s / 60, 1),
            "last_write_min_ago": round(idle_min, 1),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout the stage runs in")
    parser.add_argument("--steps", type=int, default=None, help="steps a run trains for (default: params.yaml)")
    parser.add_argument("--all", action="store_true", help="every digest, not only the latest")
    args = parser.parse_args()
    steps = args.steps or load_params(args.root / "params.yaml").train.steps
    work = args.root / ".atod" / "resume" / "train"
    digests = sorted((d for d in work.glob("*") if d.is_dir()), key=lambda d: max(
        (p.stat().st_mtime for p in d.rglob("metrics.jsonl")), default=d.stat().st_mtime))
    if not digests:
        raise SystemExit(f"no training runs under {work}")
    now = time.time()
    for digest_dir in digests if args.all else digests[-1:]:
        table = pd.DataFrame(run_rows(digest_dir, steps, now))
        print(f"{digest_dir} ({steps} steps a run)")
        print(table.to_string(index=False) if len(table) else "  no runs yet")
        if len(table):
            counts = table["state"].value_counts().to_dict()
            print(f"  {len(table)} runs started: {counts}; the started ones need about "
                  f"{table['left_min'].sum():.0f} min more of one core each (runs not yet started are not listed)")


if __name__ == "__main__":
    main()
