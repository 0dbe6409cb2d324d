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


def train(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Every method x benchmark x seed of `train`, each from the SFT student, each its own MLflow run."""
    from atod.agent.models import load_tokenizer, resolve_device
    from atod.eval.plots import RunCurves, plot_learning_curves
    from atod.train.trainer import train as train_one

    device = resolve_device(params.models)
    tokenizer = load_tokenizer(root / SFT_DIR)
    benchmarks = _load_benchmarks(root, params.train.benchmarks)
    jobs = [(m, b, s) for m in trained_methods(params) for b in params.train.benchmarks for s in params.train.seeds]
    summary: dict[str, Any] = {}
    curves = []
    fresh_dir(root / RUNS_DIR)
    for method, bench_name, seed in tqdm(jobs, desc="train: runs"):
        out = run_dir(root, method, bench_name, seed)
        bench = benchmarks[bench_name]
        with run.child(f"{method}-{bench_name}-seed{seed}", method=method, benchmark=bench_name, seed=seed) as log:
            result = train_one(method, bench, student_dir=root / SFT_DIR, teacher_dir=root / TEACHER_DIR,
                               params=params, seed=seed, out_dir=out, log=log, resume=False,
                               eval_fn=make_validation_fn(params, bench, tokenizer, device), progress=False)
        shutil.rmtree(out / "checkpoint", ignore_errors=True)  # resume state; final/ and best/ are kept
        shutil.rmtree(out / "checkpoint.old", ignore_errors=True)
        summary.setdefault(method, {}).setdefault(bench_name, {})[f"seed{seed}"] = _train_summary(result)
        curves.append(RunCurves(method=method, benchmark=bench_name, seed=seed, metrics_path=out / "metrics.jsonl"))
    plots = plot_learning_curves(curves, fresh_dir(root / TRAIN_PLOTS_DIR))
    for path in plots.values():
        run.log_artifact(path, "learning_curves")
    write_json(root / METRICS_DIR / "train.json", summary)
    return summary


def _train_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The numeric part of the trainer's summary (what DVC metrics and MLflow show)."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
