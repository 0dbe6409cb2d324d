"""Stage `evaluate`: every model (vanilla, sft, seqkd, the teacher, every trained run's final and best
checkpoints) on every evaluation split, with bootstrap CIs.

    data/eval/records.jsonl (per-episode rows), data/eval/transcripts/,
    metrics/eval/<model>.json (success/score/turns/invalid with bootstrap CIs)

`evaluate_benchmark` (pure compute) and `write_evaluation` (files, MLflow) are separate so that
`flows/evaluate.py` can run the benchmarks as concurrent Prefect tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tasks.stages.common import (
    BENCH_DIR,
    EVAL_DATA_DIR,
    EVAL_METRICS_DIR,
    FIXED_MODELS,
    StageRun,
    fresh_dir,
    run_dir,
    trained_methods,
    write_json,
)


@dataclass(frozen=True)
class EvalJob:
    """One model on one benchmark: every evaluation split of it."""

    method: str
    benchmark: str
    seed: int
    checkpoint: str  # "final" or "best"
    model_dir: Path


def evaluation_jobs(params, root: Path) -> list[EvalJob]:
    """vanilla, sft, seqkd, the teacher and every trained run's final and best checkpoints, on every
    benchmark of `train.benchmarks`. A run without a best/ checkpoint (no validation) has only final."""
    jobs = []
    for bench in params.train.benchmarks:
        for method, path in FIXED_MODELS.items():
            jobs.append(EvalJob(method, bench, 0, "final", root / path))
        for method in trained_methods(params):
            for seed in params.train.seeds:
                d = run_dir(root, method, bench, seed)
                for kind in ("final", "best"):
                    if kind == "final" or (d / kind).is_dir():
                        jobs.append(EvalJob(method, bench, seed, kind, d / kind))
    return jobs


def evaluate_job(params, job: EvalJob, device, progress: bool = False) -> list[dict[str, Any]]:
    """Evaluate one model on every evaluation split of one benchmark (loads what it needs)."""
    from atod.agent.models import load_model, load_tokenizer
    from atod.envs import EVAL_SPLITS

    if not job.model_dir.is_dir():
        raise FileNotFoundError(f"model for {job.method}/{job.benchmark}/seed{job.seed}/{job.checkpoint} not found "
                                f"at {job.model_dir}: run the earlier stages first")
    bench = _cached_benchmark(job.model_dir, job.benchmark)
    spec = params.models.teacher if job.method == "teacher" else params.models.student
    model = load_model(job.model_dir, spec, device=device)
    tokenizer = load_tokenizer(job.model_dir)
    from atod.eval.evaluate import evaluate_policy

    return [evaluate_policy(model, tokenizer, bench, split, cfg=params.evaluate, agent=params.agent, device=device,
                            progress=progress)
            for split in EVAL_SPLITS[job.benchmark]]


_BENCH_CACHE: dict[tuple[str, str], Any] = {}


def _cached_benchmark(model_dir: Path, name: str):
    """Benchmarks are loaded once per process (evaluation touches each many times)."""
    from atod.envs import load_benchmark

    root = _project_root_of(model_dir)
    key = (str(root), name)
    if key not in _BENCH_CACHE:
        _BENCH_CACHE[key] = load_benchmark(name, root / BENCH_DIR / name)
    return _BENCH_CACHE[key]


def _project_root_of(path: Path) -> Path:
    for d in (path, *path.parents):
        if (d / BENCH_DIR).is_dir():
            return d
    raise FileNotFoundError(f"no {BENCH_DIR} above {path}: run the prepare stage first")


def evaluate_benchmark(params, root: Path, benchmark: str, device=None,
                       progress: bool = True) -> list[tuple[EvalJob, list[dict[str, Any]]]]:
    """Every model's evaluation on one benchmark: [(job, one result per evaluation split)]. Pure compute
    (no files, no MLflow), so benchmarks can run concurrently (see flows/evaluate.py)."""
    from atod.agent.models import resolve_device

    device = device if device is not None else resolve_device(params.models)
    jobs = [j for j in evaluation_jobs(params, root) if j.benchmark == benchmark]
    return [(job, evaluate_job(params, job, device)) for job in tqdm(jobs, desc=f"evaluate {benchmark}",
                                                                      disable=not progress)]


def write_evaluation(params, root: Path, run: StageRun,
                     results: list[tuple[EvalJob, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Write the evaluate stage's outputs from `evaluate_benchmark` results and log them to MLflow: one
    nested run per (model, benchmark) with per-split metrics and CIs, sample transcripts as artifacts."""
    from atod.eval.compare import EvalRecord, save_records
    from atod.eval.evaluate import flat_metrics

    fresh_dir(root / EVAL_DATA_DIR)
    fresh_dir(root / EVAL_METRICS_DIR)
    transcripts_dir = fresh_dir(root / EVAL_DATA_DIR / "transcripts")
    records, per_method = [], {}
    for job, split_results in results:
        name = f"{job.method}-{job.benchmark}-seed{job.seed}-{job.checkpoint}"
        with run.child(f"eval-{name}", method=job.method, benchmark=job.benchmark, seed=job.seed,
                       checkpoint=job.checkpoint) as log:
            for res in split_results:
                log(flat_metrics(res, prefix=f"{res['split']}/"), 0)
                records.append(EvalRecord.from_result(res, method=job.method, seed=job.seed, checkpoint=job.checkpoint))
                cell = per_method.setdefault(job.method, {}).setdefault(job.benchmark, {}).setdefault(res["split"], {})
                cell.setdefault(job.checkpoint, {})[f"seed{job.seed}"] = flat_metrics(res)
                if res.get("transcripts"):
                    (transcripts_dir / f"{name}-{res['split']}.txt").write_text("\n\n".join(res["transcripts"]))
        # a sample of rendered trajectories per model in the stage run's artifacts
        for res in split_results[:1]:
            if res.get("transcripts"):
                run.log_text("\n\n".join(res["transcripts"]), f"transcripts/{name}-{res['split']}.txt")
    save_records(records, root / EVAL_DATA_DIR / "records.jsonl")
    for method, data in per_method.items():
        write_json(root / EVAL_METRICS_DIR / f"{method}.json", data)
    return {"models": len({(r.method, r.seed, r.checkpoint, r.benchmark) for r in records}), "records": len(records)}


def _evaluate_in_worker(params, job: EvalJob) -> list[dict[str, Any]]:
    from atod.agent.models import resolve_device

    return evaluate_job(params, job, resolve_device(params.models))


def evaluate(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Every model of `evaluation_jobs` on every evaluation split, with bootstrap CIs; `evaluate.parallel_jobs`
    models at a time (tasks.parallel; `flows/evaluate.py` runs the benchmarks as concurrent Prefect tasks)."""
    from tasks.parallel import run_jobs, worker_threads

    jobs = evaluation_jobs(params, root)
    workers = params.evaluate.parallel_jobs
    results: list[Any] = [None] * len(jobs)
    done = run_jobs(_evaluate_in_worker, [(params, job) for job in jobs], workers,
                    worker_threads(params.models.torch_threads, workers))
    for i, split_results in tqdm(done, total=len(jobs), desc="evaluate: models"):
        results[i] = (jobs[i], split_results)
    return write_evaluation(params, root, run, results)
