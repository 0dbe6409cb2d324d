"""Where a long `train` stage stands: every run its params ask for (method x benchmark x seed), finished,
running, stopped or not started, with its step, median step time, the time it still needs and its best
validation success so far (`best_val_%`, at `best_val_step`).

    python benchmarks/train_progress.py [--root .] [--params params.yaml] [--trends 15]

The `train` stage prints one bar over runs; a run itself can take an hour on 2 cores. A run trains in
.atod/resume/train/<digest>/<method>/<bench>/seed<k> (tasks/stages/train.py; the digest covers the code,
data and config the run depends on, one per benchmark) and appends a line per step to metrics.jsonl;
summary.json marks it finished. This computes the digests with the code of the checkout at `--root`
(so run it with that checkout's Python environment) and reads those files only: safe from another shell
while the stage runs. A run not started yet is estimated at the median step time of the benchmark's
other runs of the same method (else of any method); the total divides by `train.parallel_runs`.

`--trends N` adds a table of how each started run moved: the means of its training success, task score,
sampled-token entropy, sampled KL to the teacher and turns over its first and its last N steps (at the
training temperature), and its first and last validation success; then their means over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

RUNNING_WITHIN_MIN = 10  # a run whose metrics were written this recently counts as running
TREND_KEYS = ("success", "score", "entropy", "kl_teacher", "turns")  # per-step training metrics


def run_row(work: Path, steps: int, now: float, published: bool = False, window: int = 0,
            finished: Path | None = None) -> dict:
    """The state of the run in work directory `work` (which may not exist yet); `published`: finished and
    in data/runs with the same inputs (its work directory may be gone; its metrics are then read from
    `finished`). `window` > 0 adds the `trend_columns` of its metrics."""
    if published and finished is not None and not (work / "metrics.jsonl").exists():
        work = finished
    metrics = work / "metrics.jsonl"
    lines = _records(metrics) if metrics.exists() else []
    step_times = [r["step_time_s"] for r in lines if "step_time_s" in r]
    step = max((r["step"] for r in lines if "step_time_s" in r), default=0)
    idle_min = (now - metrics.stat().st_mtime) / 60 if metrics.exists() else float("nan")
    if published or (work / "summary.json").exists():
        state = "done"
    elif not metrics.exists():
        state = "not started"
    else:
        state = "running" if idle_min < RUNNING_WITHIN_MIN else "stopped"
    step_s = statistics.median(step_times) if step_times else float("nan")
    checks = [(r["val_success"], -r["step"]) for r in lines if "val_success" in r]
    best, best_step = max(checks) if checks else (float("nan"), float("nan"))  # the first step at the best
    return {"state": state, "step": step, "median_step_s": round(step_s, 1),
            "left_min": 0.0 if state == "done" else round(max(steps - step, 0) * step_s / 60, 1),
            "last_write_min_ago": round(idle_min, 1), "best_val_%": round(100 * best, 1), "best_val_step": -best_step,
            **(trend_columns(lines, window) if window else {})}


def trend_columns(lines: list[dict], window: int) -> dict:
    """`<key>_first` / `<key>_last`: the mean of each TREND_KEYS metric over the first / last `window`
    training steps (NaN when absent: grpo logs no KL); `val_first` / `val_last`: the first and last
    validation success. All NaN for a run without metrics."""
    train = [r for r in lines if "step_time_s" in r]
    out = {}
    for key in TREND_KEYS:
        vals = [r[key] for r in train if key in r]
        out[f"{key}_first"] = statistics.mean(vals[:window]) if vals else float("nan")
        out[f"{key}_last"] = statistics.mean(vals[-window:]) if vals else float("nan")
    checks = [r["val_success"] for r in lines if "val_success" in r]
    out["val_first"], out["val_last"] = (checks[0], checks[-1]) if checks else (float("nan"), float("nan"))
    return out


def _records(metrics: Path) -> list[dict]:
    """The lines of a metrics.jsonl that parse: the run may be appending one as this reads (the checkout at
    --root may predate atod.train.metrics_log, so this does not import it)."""
    records = []
    for line in metrics.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def fill_estimates(table: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Runs without a step time yet: the median of the same method on the benchmark, else of the benchmark."""
    for i in table.index[table["median_step_s"].isna()]:
        same = table[(table.benchmark == table.at[i, "benchmark"]) & table.median_step_s.notna()]
        pool = same[same.method == table.at[i, "method"]]
        pool = pool if len(pool) else same
        if len(pool):
            table.at[i, "left_min"] = round((steps - table.at[i, "step"]) * pool.median_step_s.median() / 60, 1)
    return table


def progress(root: Path, params_path: Path, now: float, window: int = 0) -> tuple[pd.DataFrame, int]:
    """(one row per run of the stage's params, train.parallel_runs); `window` > 0 adds trend columns."""
    # the digests must be computed with the code of the checkout at `root` (else this script's)
    sys.path[:0] = [str(root), str(Path(__file__).resolve().parents[1])]
    from atod.config import load_params
    from tasks.stages.common import run_dir, trained_methods
    from tasks.stages.train import run_inputs_digest, run_state, work_dir

    params = load_params(params_path)
    steps = params.train.steps
    digests = {b: run_inputs_digest(params, root, b) for b in params.train.benchmarks}  # hashes code and data
    # the order the stage starts them (tasks.stages.common.trained_runs, spelt out: checkouts before
    # 2026-12-04 do not have it, and the code imported here is the checkout's)
    runs = [(m, b, s) for m in trained_methods(params) for b in params.train.benchmarks for s in params.train.seeds]
    rows = []
    for method, bench, seed in runs:
        published = run_state(run_dir(root, method, bench, seed), digests[bench]) == "done"
        rows.append({"method": method, "benchmark": bench, "seed": seed,
                     **run_row(work_dir(root, method, bench, seed, digests[bench]), steps, now, published, window,
                               run_dir(root, method, bench, seed))})
    return fill_estimates(pd.DataFrame(rows), steps), params.train.parallel_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout the stage runs in")
    parser.add_argument("--params", type=Path, default=None, help="default: params.yaml in --root")
    parser.add_argument("--trends", type=int, default=0, metavar="N",
                        help="also each started run's first-N-step and last-N-step means (see above)")
    args = parser.parse_args()
    root = args.root.resolve()
    table, workers = progress(root, args.params or root / "params.yaml", time.time(), args.trends)
    trend_cols = [c for c in table.columns if c.endswith(("_first", "_last"))]
    print(table.drop(columns=trend_cols).to_string(index=False))
    counts = table["state"].value_counts().to_dict()
    left = table["left_min"].sum()
    unknown = int(table["left_min"].isna().sum())
    print(f"{len(table)} runs: {counts}; about {left / 60:.1f} h of one core left, {left / 60 / workers:.1f} h "
          f"with {workers} at once" + (f" ({unknown} runs with no estimate yet)" if unknown else ""))
    if args.trends:
        started = table[table.step > 0]
        print(f"\nfirst and last {args.trends} training steps (means), first and last validation success:")
        print(started[["method", "benchmark", "seed", "step", *trend_cols]].round(3).to_string(index=False))
        print("\nmeans over seeds:")
        print(started.groupby(["method", "benchmark"], sort=False)[trend_cols].mean().round(3).to_string())


if __name__ == "__main__":
    main()
