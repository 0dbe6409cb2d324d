"""Stage `evaluate`: every model (vanilla, sft, seqkd, the teacher, every trained run's final and best
checkpoints) on every evaluation split, with bootstrap CIs.

    data/eval/records.jsonl (per-episode rows), data/eval/transcripts/,
    data/eval/jobs/<model>.json (each model's results with the digest of its inputs),
    metrics/eval/<method>.json (success/score/turns/invalid with bootstrap CIs, every benchmark, split, seed
    and checkpoint of the method)

The stage picks up where an interrupted execution stopped: each model's results are saved as soon as it
is evaluated, with the digest of what they depend on (the model, the task set, the code, the
`evaluate`/`agent`/`models` config: `eval_inputs_digest`), in data/eval/jobs/ and in
.atod/resume/evaluate/<digest>.json (untracked, outside every DVC output: `dvc exp run` deletes
half-written outputs before it starts), and a later execution reuses them while the digest matches
(evaluation is deterministic given these inputs), also across experiments that share the model.

`evaluate_benchmark` (one benchmark's models) and `write_evaluation` (the outputs, MLflow) are separate
so that `flows/evaluate.py` can run the benchmarks as concurrent Prefect tasks; both paths save and
reuse the per-model results the same way.
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
    RESUME_DIR,
    StageRun,
    fresh_dir,
    inputs_digest,
    read_json,
    remove_path,
    require_inputs,
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


JOBS_DIR = EVAL_DATA_DIR / "jobs"
EVAL_CODE = ("atod", "tasks/stages/common.py", "tasks/stages/evaluate.py")


def job_name(job: EvalJob) -> str:
    return f"{job.method}-{job.benchmark}-seed{job.seed}-{job.checkpoint}"


def eval_inputs_digest(params, root: Path, job: EvalJob) -> str:
    """md5 of what one model's evaluation depends on: the code (EVAL_CODE), the model, the task set and
    the config (`evaluate` minus parallel_jobs, `agent`, `models`)."""
    return inputs_digest(EVAL_CODE, {"model": job.model_dir, "benchmark": root / BENCH_DIR / job.benchmark},
                         {"evaluate": params.evaluate.model_dump(mode="json", exclude={"parallel_jobs"}),
                          "agent": params.agent.model_dump(mode="json"), "models": params.models.model_dump(mode="json"),
                          "role": "teacher" if job.method == "teacher" else "student"})


# the stage that makes each fixed model (for the error when one is missing)
_MADE_BY = {"vanilla": "prepare", "sft": "sft_student", "seqkd": "cache_teacher", "teacher": "sft_teacher"}


def evaluation_jobs(params, root: Path) -> list[EvalJob]:
    """vanilla, sft, seqkd, the teacher and every trained run's final and best checkpoints, on every
    benchmark of `train.benchmarks`. A run without a best/ checkpoint (no validation) has only final.
    Raises FileNotFoundError naming every missing model and task set, and the stage that makes it, before
    anything is evaluated."""
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
    needs = {BENCH_DIR / b: "prepare" for b in params.train.benchmarks}
    needs |= {job.model_dir.relative_to(root): _MADE_BY.get(job.method, "train") for job in jobs}
    require_inputs("evaluate", root, needs)
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


def saved_results(params, root: Path, job: EvalJob) -> tuple[str, list[dict[str, Any]] | None]:
    """(digest of the job's inputs, its results saved by an earlier execution with that digest, under
    data/eval/jobs/ or .atod/resume/evaluate/ (then copied to the former), or None)."""
    digest = eval_inputs_digest(params, root, job)
    saved = read_json(root / JOBS_DIR / f"{job_name(job)}.json")
    if isinstance(saved, dict) and saved.get("digest") == digest:
        return digest, saved["results"]
    saved = read_json(root / RESUME_DIR / "evaluate" / f"{digest}.json")
    if isinstance(saved, dict) and saved.get("digest") == digest:
        write_json(root / JOBS_DIR / f"{job_name(job)}.json", saved)
        return digest, saved["results"]
    return digest, None


def save_results(root: Path, job: EvalJob, digest: str, results: list[dict[str, Any]]) -> None:
    saved = {"digest": digest, "results": results}
    write_json(root / RESUME_DIR / "evaluate" / f"{digest}.json", saved)
    write_json(root / JOBS_DIR / f"{job_name(job)}.json", saved)


def evaluate_benchmark(params, root: Path, benchmark: str, device=None,
                       progress: bool = True) -> list[tuple[EvalJob, list[dict[str, Any]]]]:
    """Every model's evaluation on one benchmark: [(job, one result per evaluation split)], one model after
    another, each saved under data/eval/jobs/ (and reused from there when its inputs are unchanged). No
    other files and no MLflow, so benchmarks can run concurrently (see flows/evaluate.py)."""
    from atod.agent.models import resolve_device

    device = device if device is not None else resolve_device(params.models)
    out = []
    for job in tqdm([j for j in evaluation_jobs(params, root) if j.benchmark == benchmark],
                    desc=f"evaluate {benchmark}", disable=not progress):
        digest, results = saved_results(params, root, job)
        if results is None:
            results = evaluate_job(params, job, device)
            save_results(root, job, digest, results)
        out.append((job, results))
    return out


def write_evaluation(params, root: Path, run: StageRun,
                     results: list[tuple[EvalJob, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Write the evaluate stage's outputs from `evaluate_benchmark` results and log them to MLflow: one
    nested run per (model, benchmark) with per-split metrics and CIs, sample transcripts as artifacts."""
    from atod.eval.compare import EvalRecord, save_records
    from atod.eval.evaluate import flat_metrics

    (root / JOBS_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (root / EVAL_DATA_DIR).iterdir():  # all but the per-model results (see `evaluate`)
        if stale.name != JOBS_DIR.name:
            remove_path(stale)
    evaluated = {f"{job_name(job)}.json" for job, _ in results}
    for stale in (root / JOBS_DIR).iterdir():  # models this configuration no longer evaluates
        if stale.name not in evaluated:
            remove_path(stale)
    fresh_dir(root / EVAL_METRICS_DIR)
    transcripts_dir = fresh_dir(root / EVAL_DATA_DIR / "transcripts")
    records, per_method = [], {}
    for job, split_results in results:
        name = job_name(job)
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
    models at a time (tasks.parallel; `flows/evaluate.py` runs the benchmarks as concurrent Prefect tasks).
    Results saved by an earlier execution with the same inputs are reused (see the module docstring)."""
    from tasks.parallel import run_jobs, worker_threads

    jobs = evaluation_jobs(params, root)
    workers = params.evaluate.parallel_jobs
    saved = [saved_results(params, root, job) for job in jobs]
    results: list[Any] = [(job, res) if res is not None else None for job, (_, res) in zip(jobs, saved)]
    todo = [i for i in range(len(jobs)) if results[i] is None]
    if len(todo) < len(jobs):
        tqdm.write(f"evaluate: {len(jobs) - len(todo)} of {len(jobs)} models already evaluated with the same "
                   "inputs (reused)")
    done = run_jobs(_evaluate_in_worker, [(params, jobs[i]) for i in todo], workers,
                    worker_threads(params.models.torch_threads, workers))
    for k, split_results in tqdm(done, total=len(todo), desc="evaluate: models"):
        i = todo[k]
        save_results(root, jobs[i], saved[i][0], split_results)
        results[i] = (jobs[i], split_results)
    return write_evaluation(params, root, run, results)
