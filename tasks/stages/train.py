"""Stage `train`: every method x benchmark x seed of `train`, each from the SFT student.

    data/runs/<method>/<bench>/seed<k>/{final,best,metrics.jsonl}, metrics/train.json,
    plots/train/*.png (learning curves)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tasks.parallel import run_jobs, worker_threads
from tasks.stages.common import (
    METRICS_DIR,
    RUNS_DIR,
    SFT_DIR,
    TEACHER_DIR,
    TRAIN_PLOTS_DIR,
    StageRun,
    _load_benchmarks,
    fresh_dir,
    run_dir,
    trained_methods,
    write_json,
)


def make_validation_fn(params, benchmark, tokenizer, device) -> Callable[[Any, int], dict[str, float]]:
    """eval_fn(model, step) for the trainer: success etc. on the validation slice of the train split
    (its last `train.eval_tasks` tasks, which training never samples: `atod.train.trainer.split_validation`),
    so best-checkpoint selection never looks at an evaluation split."""
    from atod.eval.config import EvaluateConfig
    from atod.eval.evaluate import evaluate_policy
    from atod.train.trainer import split_validation

    # Built from `train` alone (not the `evaluate` section), so that evaluation settings do not rerun training.
    cfg = EvaluateConfig(tasks_per_split=params.train.eval_tasks, bootstrap_samples=10, num_transcripts=0)
    _, valid_tasks = split_validation(benchmark.tasks("train"), params.train.eval_tasks)

    def eval_fn(model, step: int) -> dict[str, float]:
        result = evaluate_policy(model, tokenizer, benchmark, "train", cfg=cfg, agent=params.agent, device=device,
                                 tasks=valid_tasks)
        return {"success": result["success"]["mean"], "score": result["score"]["mean"],
                "turns": result["turns"]["mean"], "invalid_rate": result["invalid_rate"]["mean"]}

    return eval_fn


def train_job(params, root: Path, method: str, bench_name: str, seed: int, child_run_id: str) -> dict[str, Any]:
    """One training run (method x benchmark x seed) from the SFT student into data/runs/..., logging its
    per-step metrics to the MLflow run `child_run_id`. Runs in the stage's process or in a worker process
    (`train.parallel_runs` > 1, see tasks.parallel), so it loads everything it needs itself."""
    from atod.agent.models import load_tokenizer, resolve_device
    from atod.train.trainer import train as train_one
    from tasks import tracking

    device = resolve_device(params.models)
    tokenizer = load_tokenizer(root / SFT_DIR)
    bench = _load_benchmarks(root, [bench_name])[bench_name]
    out = run_dir(root, method, bench_name, seed)
    result = train_one(method, bench, student_dir=root / SFT_DIR, teacher_dir=root / TEACHER_DIR,
                       params=params, seed=seed, out_dir=out, resume=False,
                       log=lambda metrics, step: tracking.log_metrics(metrics, step=step, run_id=child_run_id),
                       eval_fn=make_validation_fn(params, bench, tokenizer, device), progress=False)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)  # resume state; final/ and best/ are kept
    shutil.rmtree(out / "checkpoint.old", ignore_errors=True)
    return _train_summary(result)


def train(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Every method x benchmark x seed of `train`, each from the SFT student, each its own MLflow run
    (nested under the stage's). `train.parallel_runs` > 1 runs that many at once, each in its own process
    (tasks.parallel: spawned, CPU cores shared out); the results do not depend on the order."""
    from atod.eval.plots import RunCurves, plot_learning_curves
    from tasks import tracking

    jobs = [(m, b, s) for m in trained_methods(params) for b in params.train.benchmarks for s in params.train.seeds]
    workers = params.train.parallel_runs
    fresh_dir(root / RUNS_DIR)
    children = [tracking.open_child_run(f"{m}-{b}-seed{s}", {"method": m, "benchmark": b, "seed": s})
                for m, b, s in jobs]
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    try:
        done = run_jobs(train_job, [(params, root, *job, children[i]) for i, job in enumerate(jobs)], workers,
                        worker_threads(params.models.torch_threads, workers))
        for i, result in tqdm(done, total=len(jobs), desc="train: runs"):
            results[jobs[i]] = result
            tracking.end_run(children[i], "FINISHED")
    finally:
        for i, job in enumerate(jobs):
            if job not in results:
                tracking.end_run(children[i], "FAILED")
    summary: dict[str, Any] = {}
    curves = []
    for method, bench_name, seed in jobs:
        summary.setdefault(method, {}).setdefault(bench_name, {})[f"seed{seed}"] = results[(method, bench_name, seed)]
        curves.append(RunCurves(method=method, benchmark=bench_name, seed=seed,
                                metrics_path=run_dir(root, method, bench_name, seed) / "metrics.jsonl"))
    plots = plot_learning_curves(curves, fresh_dir(root / TRAIN_PLOTS_DIR))
    for path in plots.values():
        run.log_artifact(path, "learning_curves")
    write_json(root / METRICS_DIR / "train.json", summary)
    return summary


def _train_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The numeric part of the trainer's summary (what DVC metrics and MLflow show)."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
