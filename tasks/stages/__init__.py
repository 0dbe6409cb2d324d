"""The pipeline's stages: one plain function per stage, each in its own module, reading its params,
calling the `atod` library, writing its outputs and logging one MLflow run.

    prepare        (prepare.py)        data/benchmarks/<bench>/, data/tokenizer/,
                                       data/models/init/{student,teacher}/, metrics/prepare.json
    sft_teacher    (sft.py)            data/models/teacher/, metrics/sft_teacher.json
    sft_student    (sft.py)            data/models/student_sft/, metrics/sft_student.json
    cache_teacher  (cache_teacher.py)  data/teacher_cache/, data/models/student_seqkd/,
                                       metrics/cache_teacher.json
    train          (train.py)          data/runs/<method>/<bench>/seed<k>/{final,best,metrics.jsonl,...},
                                       metrics/train.json, plots/train/*.png (learning curves)
    evaluate       (evaluate.py)       data/eval/records.jsonl (per-episode rows), data/eval/transcripts/,
                                       data/eval/jobs/ (per-model results),
                                       metrics/eval/<method>.json (success/score/turns/invalid, bootstrap CIs)
    compare        (compare.py)        reports/ (report.md, report.html, plots/), metrics/comparison.json

`common.py` holds what they share (paths, file helpers, `StageRun`). In dvc.yaml each stage depends on
`tasks/stages/common.py`, its own module and the parts of `atod/` it runs, so editing one stage's code
leaves the others (the expensive teacher above all) up to date.

`train`, `evaluate` and the two warm-ups are resumable: each training run, each model's evaluation and
each warm-up works under `.atod/resume/` keyed by the digest of its inputs
(`tasks.stages.common.inputs_digest`), so an interrupted `dvc repro` (or `dvc exp run`) started again
reuses what finished and continues the rest from its last checkpoint; `train` and `evaluate` outputs are
`persist` in dvc.yaml.

`run_stage(name, params_path, profile)` is what `atod stage NAME` (and so dvc.yaml and the Prefect flows,
through DVC) calls. Paths are relative to the project root; each
function takes `root` so tests can run the pipeline in a copy of the project.

Every stage function has the signature `(params, root, run) -> dict` where `run` is a `StageRun` (the
MLflow side: child runs, metrics, artifacts) and the returned dict is the stage's metrics summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.params_keys import STAGE_PARAMS, check_dvc_params, dvc_params
from tasks.stages import cache_teacher, compare, evaluate, prepare, sft, train
from tasks.stages.common import (
    BENCH_DIR,
    CACHE_DIR,
    EVAL_DATA_DIR,
    EVAL_METRICS_DIR,
    FIXED_MODELS,
    INIT_DIR,
    METRICS_DIR,
    REPORTS_DIR,
    RESUME_DIR,
    RUNS_DIR,
    SEQKD_DIR,
    SFT_DIR,
    TEACHER_DIR,
    TIMING_DIR,
    TOKENIZER_DIR,
    TRAIN_PLOTS_DIR,
    UNTRAINED_METHODS,
    StageRun,
    fresh_dir,
    run_dir,
    trained_methods,
    trained_runs,
    write_json,
)
from tasks.stages.evaluate import EvalJob, evaluate_benchmark, evaluate_job, evaluation_jobs, write_evaluation
from tasks.stages.sft import sft_student, sft_teacher
from tasks.stages.train import make_validation_fn

STAGES = ("prepare", "sft_teacher", "sft_student", "cache_teacher", "train", "evaluate", "compare")

# The stage modules keep their own names here (`tasks.stages.train` is the module, its function is
# `tasks.stages.train.train`), so that they can be imported and patched as modules.
STAGE_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "prepare": prepare.prepare,
    "sft_teacher": sft_teacher,
    "sft_student": sft_student,
    "cache_teacher": cache_teacher.cache_teacher,
    "train": train.train,
    "evaluate": evaluate.evaluate,
    "compare": compare.compare,
}


# ---------------------------------------------------------------- entry point
def run_stage(name: str, params_path: Path = Path("params.yaml"), profile: str | None = None,
              root: Path | None = None) -> dict[str, Any]:
    """Run stage `name` with the resolved params of `profile` inside an MLflow run nested under the
    pipeline's parent run (see tasks.tracking). Returns the stage's summary dict.

    Also writes `.atod/timing/<name>.json`: wall seconds of the stage function and the seconds of it
    spent in MLflow calls, from which `flows.overhead` computes the pipeline's own overhead."""
    t_process = time.perf_counter()
    from atod.config import load_params
    from atod.project_env import configure_environment

    root = configure_environment(root)
    if name not in STAGE_FUNCTIONS:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    params_path = Path(params_path)
    params_path = params_path if params_path.is_absolute() else root / params_path
    params = load_params(params_path, profile=profile)
    check_dvc_params(params_path)  # a key DVC does not track would leave this stage's outputs stale

    from tasks import tracking

    with tracking.stage_run(root, name, params) as run_id:
        mlflow_before = tracking.TrackingClock.seconds
        t0 = time.perf_counter()
        summary = STAGE_FUNCTIONS[name](params, root, StageRun(run_id=run_id, root=root))
        body_s = time.perf_counter() - t0
        mlflow_in_body = tracking.TrackingClock.seconds - mlflow_before
        tracking.log_metrics({"stage/body_s": body_s, "stage/mlflow_in_body_s": mlflow_in_body})
    write_json(root / TIMING_DIR / f"{name}.json", {
        "stage": name, "compute_s": body_s - mlflow_in_body, "mlflow_s": tracking.TrackingClock.seconds,
        "process_s": time.perf_counter() - t_process, "finished_at": time.time()})
    return summary


# re-exports (the names other code imports from tasks.stages) and the stage modules
__all__ = [
    "BENCH_DIR",
    "CACHE_DIR",
    "EVAL_DATA_DIR",
    "EVAL_METRICS_DIR",
    "FIXED_MODELS",
    "INIT_DIR",
    "METRICS_DIR",
    "REPORTS_DIR",
    "RESUME_DIR",
    "RUNS_DIR",
    "SEQKD_DIR",
    "SFT_DIR",
    "STAGES",
    "STAGE_FUNCTIONS",
    "STAGE_PARAMS",
    "TEACHER_DIR",
    "TIMING_DIR",
    "TOKENIZER_DIR",
    "TRAIN_PLOTS_DIR",
    "UNTRAINED_METHODS",
    "EvalJob",
    "StageRun",
    "cache_teacher",
    "compare",
    "dvc_params",
    "evaluate",
    "evaluate_benchmark",
    "evaluate_job",
    "evaluation_jobs",
    "fresh_dir",
    "make_validation_fn",
    "prepare",
    "run_dir",
    "run_stage",
    "sft",
    "sft_student",
    "sft_teacher",
    "train",
    "trained_methods",
    "trained_runs",
    "write_evaluation",
    "write_json",
]
