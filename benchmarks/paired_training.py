"""Training success of two methods compared step by step on the same tasks: the learning curves, paired.

    python benchmarks/paired_training.py RUNS [RUNS ...] [--split 49] [--pairs atod:opd,atod:grpo] [--plot F.png]

RUNS is a directory of training runs laid out as the train stage's work directories
(`.atod/resume/train/<digest>/<method>/<benchmark>/seed<k>/metrics.jsonl`, i.e. one `<digest>` folder;
several may be given, e.g. one per benchmark). Runs of the same seed draw the same training tasks at every
step, whatever the method (`atod.train.trainer.TaskSampler` is seeded by the run's seed alone), and start
from the same model with the same random state, so their step-1 rollouts are identical (checked and
printed). A step's success (the fraction of its `tasks_per_step` x `samples_per_task` training episodes,
temperature 1) can therefore be compared method against method on the same tasks, which removes the
tasks' difficulty from the difference: the learning curves of the paper's claim "ATOD tracks OPD early,
then rises above it", with an interval.

For each benchmark and pair A:B, the mean over steps and seeds of success(A) - success(B) (percentage
points) in the annealing phase (from step 2 to the step before `--split`; step 1's rollouts precede any
update and are the same for every method), after it, and over all those steps; each seed's own
mean; and a 95% moving-block bootstrap interval that resamples blocks of BLOCK_STEPS consecutive steps
within each seed (consecutive steps share a policy, so their differences need not be independent; the
blocks keep such short-range dependence). The interval says how surely these runs differ on training
tasks; with 3 seeds it does not cover how much another seed's run would differ: the per-seed means show
that spread. `--split` defaults to the end of annealing: the first step at which the longest `atod` run
of the benchmark logged its final kappa, once it has logged it twice (so a run still annealing does not
set it); else the middle of the longest run, and the output says which.

`--plot F.png` also draws the differences against the step (one row per pair, one column per benchmark): each
seed's 10-step trailing mean as a thin line, their mean as a thick one, the end of annealing dashed.

Reads metrics.jsonl only (safe while runs are still writing; a step logged twice, before and after a
resume, counts once, the last time).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
BLOCK_STEPS = 5  # consecutive steps resampled together by the interval's bootstrap
PLOT_WINDOW = 10  # steps of the trailing mean drawn by --plot
DEFAULT_PAIRS = ("atod:opd", "atod:grpo", "opd:grpo", "atod:atod_no_anneal", "atod:atod_uniform",
                 "atod:atod_token")


def read_steps(metrics: Path) -> dict[int, dict]:
    """step -> that step's training record (the last one written; validation lines are skipped, and so is a
    last line being appended as this reads: `atod.train.metrics_log.read_metrics_log`)."""
    from atod.train.metrics_log import read_metrics_log

    return {int(rec["step"]): rec for rec in read_metrics_log(metrics) if "step_time_s" in rec and "success" in rec}


def load_runs(dirs: list[Path]) -> dict[tuple[str, str, int], dict[int, dict]]:
    """(benchmark, method, seed) -> its steps, for every `<method>/<benchmark>/seed<k>/metrics.jsonl`."""
    runs = {}
    for root in dirs:
        if not root.is_dir():
            raise SystemExit(f"{root} is not a directory of training runs")
        for metrics in sorted(root.glob("*/*/seed*/metrics.jsonl")):
            seed_dir = metrics.parent
            key = (seed_dir.parent.name, seed_dir.parent.parent.name, int(seed_dir.name.removeprefix("seed")))
            if key in runs:
                raise SystemExit(f"two runs of {key} among {', '.join(map(str, dirs))}: give one digest folder each")
            runs[key] = read_steps(metrics)
    if not runs:
        raise SystemExit(f"no <method>/<benchmark>/seed<k>/metrics.jsonl under {', '.join(map(str, dirs))}")
    return runs


def anneal_end(runs: dict[tuple[str, str, int], dict[int, dict]], bench: str) -> tuple[int, str]:
    """(first step of the second phase, where it comes from): the first step at which the longest atod
    run of `bench` logged its final kappa, if it logged it at two steps or more after step 1 (a run still
    annealing, or a constant schedule, does not count); else the middle of the longest run."""
    atod = [(len(steps), seed, steps) for (b, method, seed), steps in runs.items()
            if b == bench and method == "atod" and steps]
    if atod:
        _, seed, steps = max(atod)
        kappas = [(s, steps[s].get("kappa")) for s in sorted(steps)]
        final = kappas[-1][1]
        at_final = [s for s, k in kappas if k == final and s >= 2]
        if final is not None and kappas[0][1] != final and len(at_final) >= 2:  # it moved, then settled
            return at_final[0], f"the end of annealing: atod seed {seed}'s kappa reached {final:g} at step {at_final[0]}"
    last = max(max(steps, default=0) for (b, _, _), steps in runs.items() if b == bench)
    return max(last // 2 + 1, 2), "the middle of the run (no atod run has finished annealing)"


def paired_differences(a: dict[int, dict], b: dict[int, dict], key: str = "success") -> dict[int, float]:
    """step -> a's value minus b's at that step, over the steps both logged."""
    return {s: float(a[s][key]) - float(b[s][key]) for s in sorted(set(a) & set(b))}


def block_bootstrap(per_seed: list[np.ndarray], samples: int, rng: np.random.Generator,
                    block: int = BLOCK_STEPS) -> np.ndarray:
    """(samples,) means of the pooled differences. Each resample rebuilds every seed's (n,) series, in
    step order, from ceil(n / L) blocks of L = min(block, n) consecutive steps starting anywhere in it
    (moving blocks), cut to n: each seed keeps its number of steps. block=1 is the plain bootstrap."""
    pooled = np.zeros((samples,))
    total = sum(len(d) for d in per_seed)
    for d in per_seed:
        n = len(d)
        if n:
            length = min(block, n)
            starts = rng.integers(0, n - length + 1, size=(samples, -(-n // length)))
            idx = (starts[:, :, None] + np.arange(length)).reshape(samples, -1)[:, :n]
            pooled += d[idx].sum(axis=1)
    return pooled / total


def phase_row(diffs_by_seed: dict[int, dict[int, float]], lo: int, hi: int, rng: np.random.Generator) -> dict:
    """Mean difference (pp) over steps lo..hi of every seed, each seed's mean, and the 95% interval."""
    per_seed = {seed: np.array([v for s, v in d.items() if lo <= s <= hi]) for seed, d in diffs_by_seed.items()}
    per_seed = {seed: d for seed, d in per_seed.items() if len(d)}
    if not per_seed:
        return {"steps": 0}
    pooled = np.concatenate(list(per_seed.values()))
    dist = block_bootstrap(list(per_seed.values()), BOOTSTRAP_SAMPLES, rng)
    lo_ci, hi_ci = np.percentile(dist, [2.5, 97.5])
    return {"steps": len(pooled), "mean": 100 * pooled.mean(), "ci": (100 * lo_ci, 100 * hi_ci),
            "per_seed": {seed: 100 * d.mean() for seed, d in sorted(per_seed.items())}}


def step_one_check(runs: dict[tuple[str, str, int], dict[int, dict]], bench: str) -> str:
    """Whether the step-1 success and turns of every method agree, seed by seed (they should)."""
    by_seed = defaultdict(set)
    for (b, _, seed), steps in runs.items():
        if b == bench and 1 in steps:
            by_seed[seed].add((steps[1]["success"], steps[1].get("turns")))
    odd = sorted(seed for seed, values in by_seed.items() if len(values) > 1)
    if odd:
        return f"step 1 differs between methods for seed(s) {odd}: the runs do not share their start; pairing is void"
    return f"step 1 identical across methods for seeds {sorted(by_seed)} (same tasks, same start)"


def report(runs: dict[tuple[str, str, int], dict[int, dict]], pairs: list[tuple[str, str]],
           split: int | None, seed: int = 0) -> str:
    lines = []
    rng = np.random.default_rng(seed)
    for bench in sorted({b for b, _, _ in runs}):
        end, why = (split, "--split") if split else anneal_end(runs, bench)
        last = max(max(steps, default=0) for (b, _, _), steps in runs.items() if b == bench)
        lines += [f"## {bench}: training success, A - B in percentage points (steps 2-{end - 1} | {end}-{last} | all)",
                  f"phase 2 starts at step {end}: {why}", step_one_check(runs, bench),
                  f"intervals: 95%, moving-block bootstrap ({BLOCK_STEPS}-step blocks) within each seed", ""]
        header = f"{'A - B':<28}{'seeds':>6}{'steps':>7}  {'phase 1':>22}  {'phase 2':>22}  {'all':>22}  per seed (phase 1|phase 2)"
        lines.append(header)
        for a, b in pairs:
            diffs = {s: paired_differences(runs[(bench, a, s)], runs[(bench, b, s)])
                     for (bb, m, s) in runs if bb == bench and m == a and (bench, b, s) in runs}
            diffs = {s: d for s, d in diffs.items() if d}
            if not diffs:
                continue
            rows = [phase_row(diffs, 2, end - 1, rng), phase_row(diffs, end, last, rng), phase_row(diffs, 2, last, rng)]
            if not rows[2]["steps"]:  # the two share step 1 only: nothing to compare yet
                continue
            cells = [f"{r['mean']:+6.1f} [{r['ci'][0]:+5.1f},{r['ci'][1]:+5.1f}]" if r["steps"] else "-" for r in rows]

            def seed_mean(row: dict, s: int) -> str:
                return f"{row['per_seed'][s]:+.1f}" if s in row.get("per_seed", {}) else "-"

            seeds = " ".join(f"{s}:{seed_mean(rows[0], s)}|{seed_mean(rows[1], s)}" for s in rows[2]["per_seed"])
            lines.append(f"{a + ' - ' + b:<28}{len(diffs):>6}{rows[2]['steps']:>7}  {cells[0]:>22}  {cells[1]:>22}  "
                         f"{cells[2]:>22}  {seeds}")
        lines.append("")
    return "\n".join(lines)


def plot(runs: dict[tuple[str, str, int], dict[int, dict]], pairs: list[tuple[str, str]], split: int | None,
         path: Path) -> Path | None:
    """The paired differences against the step, as a PNG at `path` (see the module docstring); None (and
    nothing written) when no pair of methods has runs of the same benchmark and seed."""
    from matplotlib.figure import Figure

    from atod.eval.plots import moving_mean

    benches = sorted({b for b, _, _ in runs})
    shown = [(a, b) for a, b in pairs if any((bench, a, s) in runs and (bench, b, s) in runs
                                             for bench, _, s in runs)]
    if not shown:
        return None
    fig = Figure(figsize=(4.5 * len(benches), 2.6 * len(shown)), layout="constrained")
    axes = fig.subplots(len(shown), len(benches), squeeze=False)
    for i, (a, b) in enumerate(shown):
        for j, bench in enumerate(benches):
            ax = axes[i][j]
            curves = []
            for s in sorted({s for bb, m, s in runs if bb == bench and m == a and (bench, b, s) in runs}):
                d = paired_differences(runs[(bench, a, s)], runs[(bench, b, s)])
                steps = np.array(sorted(d))
                smooth = 100 * moving_mean(np.array([d[k] for k in steps]), PLOT_WINDOW)
                ax.plot(steps, smooth, linewidth=0.8, alpha=0.6, label=f"seed {s}")
                curves.append(dict(zip(steps.tolist(), smooth.tolist(), strict=True)))
            if curves:
                common = sorted(set.intersection(*(set(c) for c in curves)))
                ax.plot(common, [np.mean([c[k] for c in curves]) for k in common], color="k", linewidth=2,
                        label="mean over seeds")
                ax.axvline(split or anneal_end(runs, bench)[0], color="grey", linestyle="--", linewidth=1)
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(bench)
            if j == 0:
                ax.set_ylabel(f"{a} - {b}\n(points, {PLOT_WINDOW}-step mean)")
            if i == len(shown) - 1:
                ax.set_xlabel("training step (dashed: end of annealing)")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle("Training success, paired by step (same tasks)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def parse_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        a, sep, b = item.strip().partition(":")
        if not sep or not a or not b:
            raise SystemExit(f"--pairs: {item!r} is not METHOD:METHOD (e.g. atod:opd)")
        pairs.append((a, b))
    return pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="a .atod/resume/train/<digest> folder (one or more)")
    ap.add_argument("--split", type=int, default=None,
                    help="first step of the second phase (default: the end of an atod run's annealing)")
    ap.add_argument("--pairs", default=",".join(DEFAULT_PAIRS), help="comma-separated A:B method pairs")
    ap.add_argument("--plot", type=Path, default=None, help="also draw the differences against the step (PNG)")
    args = ap.parse_args(argv)
    if args.split is not None and args.split < 2:
        raise SystemExit(f"--split must be at least 2 (got {args.split})")
    runs, pairs = load_runs(args.runs), parse_pairs(args.pairs)
    print(report(runs, pairs, args.split))
    if args.plot is not None:
        figure = plot(runs, pairs, args.split, args.plot)
        print(f"figure: {figure}" if figure else "--plot: no pair of methods has runs of the same benchmark and "
              "seed; no figure", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
