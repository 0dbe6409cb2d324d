"""The evaluate stage with one Prefect task per benchmark, run concurrently (thread task runner).

    evaluate_flow(force=False)

Where concurrency helps (a GPU, or several CPU cores per benchmark), evaluating the benchmarks at the
same time shortens the stage. The flow does what `dvc repro --single-item evaluate` would, but in
parallel: it refuses a params.yaml key that dvc.yaml does not list (as `atod stage` does); if `dvc status
evaluate` reports no change (and not `force`), it does nothing; otherwise one
`evaluate_benchmark_task` per benchmark computes the results (`tasks.stages.evaluate_benchmark`), the
main thread writes the stage's outputs and MLflow runs (`tasks.stages.write_evaluation`, the same code
as the DVC stage), and `dvc commit --force evaluate` records them in dvc.lock, so the outputs are DVC
tracked exactly as after `dvc repro`. `pipeline_flow(parallel_evaluate=True)` uses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.params_keys import check_dvc_params
from tasks.prefect_tasks import dvc_commit, dvc_stage_changed, evaluate_benchmark_task


@flow(name="atod-evaluate-parallel", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=3))
def evaluate_flow(force: bool = False) -> dict[str, Any]:
    from atod.config import load_params
    from atod.project_env import configure_environment
    from tasks import tracking
    from tasks.stages import StageRun, write_evaluation

    root = configure_environment()
    # as `atod stage` does: a key dvc.yaml does not list would make `dvc status` below say "up to date"
    check_dvc_params(root / "params.yaml")
    if not force and not dvc_stage_changed(str(root), "evaluate"):
        print("evaluate: up to date")
        return {"stage": "evaluate", "ran": False, "restored_from_run_cache": False}
    params = load_params(root / "params.yaml")
    futures = [evaluate_benchmark_task.submit(str(root), bench) for bench in params.train.benchmarks]
    results = [pair for f in futures for pair in f.result()]
    with tracking.stage_run(Path(root), "evaluate", params) as run_id:
        summary = write_evaluation(params, Path(root), StageRun(run_id=run_id, root=Path(root)), results)
    dvc_commit(str(root), "evaluate")
    return {"stage": "evaluate", "ran": True, "restored_from_run_cache": False, **summary}
