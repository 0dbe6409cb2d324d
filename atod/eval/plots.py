"""Report figures (matplotlib, object API on the Agg canvas: no pyplot, no global backend state).

- `plot_success_bars(comparison, path)`: the main table as grouped bars with CI error bars.
- `plot_learning_curves(runs, out_dir)`: from the training runs' `metrics.jsonl` (one JSON object per
  rollout step, and separate `val_*` rows at validation steps, written by `atod.train.trainer`): success vs step (training rollouts, and validation
  where logged; training success as a 5-step moving mean), kappa/rho vs step, mean T-DUR weight vs
  step, KL to teacher vs step, mean turns vs step. One column per benchmark, one line per method (the
  mean over seeds, with a min-max band when there are several seeds). A metric no run logged is left out.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from atod.envs import BENCHMARKS

if TYPE_CHECKING:
    from atod.eval.compare import Comparison

# figure name -> (title, ((metrics.jsonl keys, axis label), ...)): one row of panels per entry that has
# data; the first of an entry's keys present in a row is used (the trainer's name first, then aliases).
CURVES: dict[str, tuple[str, tuple[tuple[tuple[str, ...], str], ...]]] = {
    "success": ("Success vs step", ((("success",), "training success (5-step mean)"),
                                    (("val_success",), "validation success"))),
    "schedule": ("Annealing coefficients vs step", ((("kappa",), "kappa (OPD weight)"),
                                                    (("rho",), "rho (GRPO weight)"))),
    "tdur": ("Mean T-DUR weight vs step", ((("tdur_weight_mean", "tdur_mean"), "mean T-DUR weight"),)),
    "kl": ("KL to teacher vs step", ((("kl_teacher", "kl"), "KL to teacher, sampled tokens"),
                                     (("kl_full",), "exact KL (*_full runs)"))),
    "turns": ("Trajectory length vs step", ((("turns",), "mean turns (training rollouts)"),)),
}
# Per-step metrics too noisy to read raw (one step samples a few tasks): a trailing moving mean over this
# many steps (fewer at the start) is plotted instead.
SMOOTH_STEPS = {"success": 5}
_METHOD_COLORS = ("vanilla", "sft", "seqkd", "grpo", "opd", "atod", "atod_no_anneal", "atod_uniform", "atod_token",
                  "teacher", "opd_full", "atod_full")


@dataclass(frozen=True)
class RunCurves:
    """One training run: which method, benchmark and seed it is, and its metrics.jsonl."""

    method: str
    benchmark: str
    seed: int
    metrics_path: Path


def _color(method: str) -> str:
    palette = [f"C{i}" for i in range(10)] + ["k", "#b15928"]  # one colour per known method
    if method in _METHOD_COLORS:
        return palette[_METHOD_COLORS.index(method)]
    return palette[sum(map(ord, method)) % len(palette)]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The per-step rows of a metrics.jsonl. Blank lines and lines that are not a JSON object (a
    half-written last line after a crash) are skipped; a missing file is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training metrics not found: {path}")
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def series(rows: Sequence[dict[str, Any]], keys: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the first of `keys` a row has, where it is a finite number; the step is the
    row's `step` (else its index)."""
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    steps, values = [], []
    for i, row in enumerate(rows):
        v = next((row[k] for k in keys if row.get(k) is not None), None)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        step = row.get("step", i)
        steps.append(float(step) if isinstance(step, (int, float)) else float(i))
        values.append(float(v))
    return np.asarray(steps), np.asarray(values)


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving mean: element i is the mean of values[max(0, i - window + 1) : i + 1]."""
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    i = np.arange(1, values.size + 1)
    start = np.maximum(i - window, 0)
    return (csum[i] - csum[start]) / (i - start)


def _mean_over_seeds(per_seed: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Align seeds by step: (steps, mean, min, max) over the seeds that logged each step."""
    by_step: dict[float, list[float]] = defaultdict(list)
    for steps, values in per_seed:
        for s, v in zip(steps, values, strict=True):
            by_step[s].append(v)
    steps = np.array(sorted(by_step))
    vals = [by_step[s] for s in steps]
    return steps, np.array([np.mean(v) for v in vals]), np.array([min(v) for v in vals]), np.array([max(v) for v in vals])


def _ordered(items: set[str], order: Sequence[str]) -> list[str]:
    return [x for x in order if x in items] + sorted(items - set(order))


def plot_curves(runs: Sequence[RunCurves], keys: Sequence[tuple[tuple[str, ...], str]], path: Path,
                title: str) -> Path | None:
    """A grid of panels (rows: entries of `keys` with data, columns: benchmarks), one line per method.
    Returns the PNG path, or None when no run logged any of the keys."""
    data: dict[tuple[tuple[str, ...], str, str], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for run in runs:
        rows = read_metrics(run.metrics_path)
        for key, _ in keys:
            steps, values = series(rows, key)
            if key[0] in SMOOTH_STEPS:
                values = moving_mean(values, SMOOTH_STEPS[key[0]])
            if steps.size:
                data[(key, run.benchmark, run.method)].append((steps, values))
    rows_keys = [(k, label) for k, label in keys if any(d[0] == k for d in data)]
    if not rows_keys:
        return None
    benchmarks = _ordered({r.benchmark for r in runs}, BENCHMARKS)
    methods = _ordered({r.method for r in runs}, _METHOD_COLORS)

    fig = Figure(figsize=(4.2 * len(benchmarks), 3.0 * len(rows_keys)), layout="constrained")
    axes = fig.subplots(len(rows_keys), len(benchmarks), squeeze=False)
    for i, (key, label) in enumerate(rows_keys):
        for j, bench in enumerate(benchmarks):
            ax = axes[i][j]
            for method in methods:
                per_seed = data.get((key, bench, method))
                if not per_seed:
                    continue
                steps, mean, low, high = _mean_over_seeds(per_seed)
                n = len(per_seed)
                ax.plot(steps, mean, color=_color(method), label=f"{method}" + (f" ({n} seeds)" if n > 1 else ""))
                if n > 1:
                    ax.fill_between(steps, low, high, color=_color(method), alpha=0.2, linewidth=0)
            if i == 0:
                ax.set_title(bench)
            if j == 0:
                ax.set_ylabel(label)
            if i == len(rows_keys) - 1:
                ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_learning_curves(runs: Sequence[RunCurves], out_dir: str | Path) -> dict[str, Path]:
    """Every figure of `CURVES` that has data, as `out_dir/curves_<name>.png`; {name: path}."""
    out_dir = Path(out_dir)
    out: dict[str, Path] = {}
    if not runs:
        return out
    for name, (title, keys) in CURVES.items():
        p = plot_curves(runs, keys, out_dir / f"curves_{name}.png", title)
        if p is not None:
            out[f"curves_{name}"] = p
    return out


def plot_success_bars(comparison: Comparison, path: str | Path) -> Path:
    """The main table as grouped bars (percent) with CI error bars; benchmarks and `average` on x."""
    from atod.eval.compare import AVERAGE

    path = Path(path)
    cols = [*comparison.benchmarks, AVERAGE]
    methods = comparison.methods
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(cols))
    fig = Figure(figsize=(max(6.0, 1.6 * len(cols) + 0.25 * len(methods)), 4.0), layout="constrained")
    ax = fig.subplots()
    for k, method in enumerate(methods):
        cells = [comparison.success.get(c, {}).get(method) for c in cols]
        means = np.array([100 * c.mean if c else np.nan for c in cells])
        err_2_C = np.array([[100 * (c.mean - c.ci[0]) if c else 0.0 for c in cells],
                            [100 * (c.ci[1] - c.mean) if c else 0.0 for c in cells]])
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, means, width, yerr=np.clip(err_2_C, 0, None),
               color=_color(method), label=method, capsize=2,
               hatch="//" if method == "teacher" else None, edgecolor="black" if method == "teacher" else None)
    ax.set_xticks(x, cols)
    ax.set_ylabel(f"success (%), {comparison.checkpoint} checkpoint")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncols=min(len(methods), 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
