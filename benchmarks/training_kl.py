"""Did a run move towards its teacher? The KL to the teacher on the run's own rollouts, early against late,
and its validation curve, per training run, from the trainer's metrics.jsonl files.

    python benchmarks/training_kl.py data/runs [more/data/runs ...] [--methods opd opd_full] [--window 5]

For every <runs>/<method>/<benchmark>/seed<k>/metrics.jsonl (first folder first when a run appears twice):
the mean over the first and the last `--window` steps of `kl_teacher` (the sampled-token estimate every
teacher-scored run logs) and of `kl_full` (the exact KL over the vocabulary, logged by the `*_full`
ablation only), their relative change, the mean gradient norm, and the validation success at each
validation step. Training tasks only: nothing here touches an evaluation split.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_records import find_runs

from atod.eval.plots import read_metrics


def early_late(values: list[float], window: int) -> tuple[float, float]:
    """Mean of the first and of the last `window` values (nan for an empty list)."""
    if not values:
        return math.nan, math.nan
    head, tail = values[:window], values[-window:]
    return sum(head) / len(head), sum(tail) / len(tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="data/runs folders")
    ap.add_argument("--methods", nargs="*")
    ap.add_argument("--window", type=int, default=5)
    args = ap.parse_args()
    runs = find_runs(args.runs, set(args.methods) if args.methods else None)
    if not runs:
        raise SystemExit(f"no <method>/<benchmark>/seed<k>/metrics.jsonl under {', '.join(map(str, args.runs))}")
    print(f"{'run':32s} {'steps':>5s}  {'kl_teacher first/last':>22s}  {'kl_full first/last':>20s}  "
          f"{'grad_norm':>9s}  validation success")
    for run in runs:
        rows = read_metrics(run.metrics_path)
        train = [r for r in rows if "reward" in r]
        cells = []
        for key in ("kl_teacher", "kl_full"):
            first, last = early_late([r[key] for r in train if key in r], args.window)
            cells.append("-" if math.isnan(first) else f"{first:.3f} / {last:.3f} ({100 * (last / first - 1):+.0f}%)")
        grad = sum(r["grad_norm"] for r in train) / max(len(train), 1)
        val = " ".join(f"{int(r['step'])}:{r['val_success']:.2f}" for r in rows if "val_success" in r)
        name = f"{run.method}/{run.benchmark}/seed{run.seed}"
        print(f"{name:32s} {len(train):5d}  {cells[0]:>22s}  {cells[1]:>20s}  {grad:9.2f}  {val}")


if __name__ == "__main__":
    main()
