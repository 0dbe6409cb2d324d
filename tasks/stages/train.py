"""Stage `train`: every trained method (`train.methods` minus seqkd, which `cache_teacher` makes) x
benchmark x seed of `train`, each from the SFT student.

    data/runs/<method>/<bench>/seed<k>/{final,best,metrics.jsonl,inputs.json,summary.json},
    metrics/train.json, plots/train/*.png (learning curves)

The stage picks up where an interrupted execution stopped, whether it ran under `dvc repro`, `dvc exp
run` or a Prefect flow. Each run has a digest of everything it depends on (`run_inputs_digest`: the code,
the data it reads, the resolved config) and is trained in its work directory
.atod/resume/train/<digest>/<method>/<bench>/seed<k> (untracked, outside every DVC output: `dvc exp run`
deletes half-written outputs before it starts), which holds inputs.json from the start, its checkpoint
while it trains and summary.json when it ends. A finished run is then published to data/runs (hard links
where possible). A later execution reuses a finished run with the same digest (from data/runs or the work
directory: so also across experiments that share the run) and resumes an unfinished one from its last
checkpoint (bitwise the same result on CPU, see atod.train.trainer); any other directory under data/runs
is removed, so the output is what a run from scratch would leave.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tasks.parallel import run_jobs, worker_threads
from tasks.stages.common import (
    BENCH_DIR,
    METRICS_DIR,
    RESUME_DIR,
    RUNS_DIR,
    SFT_DIR,
    TEACHER_DIR,
    TRAIN_PLOTS_DIR,
    StageRun,
    _load_benchmarks,
    fresh_dir,
    inputs_digest,
    publish_dir,
    read_json,
    remove_path,
    require_inputs,
    run_dir,
    trained_methods,
    trained_runs,
    write_json,
)


def make_validation_fn(params, benchmark, tokenizer) -> Callable[[Any, int], dict[str, float]]:
    """eval_fn(model, step) for the trainer: success etc. on the validation slice of the train split
    (its last `train.eval_tasks` tasks, which training never samples: `atod.train.splits.split_validation`),
    so best-checkpoint selection never looks at an evaluation split. It plays on the model's own device."""
    from atod.eval.config import EvaluateConfig
    from atod.eval.evaluate import evaluate_policy
    from atod.train.splits import split_validation

    # Built from `train` alone (not the `evaluate` section), so that evaluation settings do not rerun training.
    cfg = EvaluateConfig(tasks_per_split=params.train.eval_tasks, bootstrap_samples=10, num_transcripts=0)
    _, valid_tasks = split_validation(benchmark.tasks("train"), params.train.eval_tasks)

    def eval_fn(model, step: int) -> dict[str, float]:
        result = evaluate_policy(model, tokenizer, benchmark, "train", cfg=cfg, agent=params.agent,
                                 device=model.device, tasks=valid_tasks)
        return {"success": result["success"]["mean"], "score": result["score"]["mean"],
                "turns": result["turns"]["mean"], "invalid_rate": result["invalid_rate"]["mean"]}

    return eval_fn


# The code a training run executes: the library and this stage (dvc.yaml's deps of `train`, and more).
RUN_CODE = ("atod", "tasks/stages/common.py", "tasks/stages/train.py")
# Knobs of `train` that choose which runs exist or how they are scheduled, not what one run computes; and
# the two that change only its speed or memory (how often it checkpoints, how a batch is cut into
# forward/backward chunks, whose losses sum to the same update up to rounding), which the trainer's resume
# check ignores too: lowering `microbatch_tokens` after running out of GPU memory resumes the run.
SCHEDULING_KEYS = {"methods", "benchmarks", "seeds", "parallel_runs", "checkpoint_every", "microbatch_tokens"}


def run_inputs_digest(params, root: Path, bench_name: str) -> str:
    """md5 of everything a training run on `bench_name` depends on: the code (RUN_CODE), the task set,
    SFT student and teacher it reads, and the resolved config (`train` minus SCHEDULING_KEYS, `models`,
    `agent`). Method and seed are the run directory's name. A finished run with the same digest is reused."""
    return inputs_digest(RUN_CODE, {str(p): root / p for p in (BENCH_DIR / bench_name, SFT_DIR, TEACHER_DIR)},
                         {"train": params.train.model_dump(mode="json", exclude=SCHEDULING_KEYS),
                          "models": params.models.model_dump(mode="json"), "agent": params.agent.model_dump(mode="json")})


def work_dir(root: Path, method: str, bench_name: str, seed: int, digest: str) -> Path:
    """Where a run with inputs `digest` trains (see the module docstring)."""
    return root / RESUME_DIR / "train" / digest / method / bench_name / f"seed{seed}"


# What the work directory holds only while the run trains (and hidden temporaries): never published.
RESUME_STATE = ("checkpoint", "checkpoint.old")


def publish_run(work: Path, out: Path) -> None:
    """data/runs/...: the finished run in `work` without its resume state."""
    publish_dir(work, out, ignore=lambda _dir, names: {n for n in names if n in RESUME_STATE or n.startswith(".")})


def run_state(out: Path, digest: str) -> str:
    """"done" (finished with these inputs: reuse), "resume" (started with these inputs: continue from its
    checkpoint, if any) or "fresh" (absent, or made from other inputs: start over)."""
    recorded = read_json(out / "inputs.json")
    if not isinstance(recorded, dict) or recorded.get("digest") != digest:
        return "fresh"
    return "done" if isinstance(read_json(out / "summary.json"), dict) else "resume"


def _saved_metrics(path: Path, upto_step: int | None = None) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (`read_metrics_log`: a torn last line is dropped), up to step
    `upto_step` when given."""
    from atod.train.metrics_log import read_metrics_log

    records = read_metrics_log(path)
    return [r for r in records if upto_step is None or r["step"] <= upto_step]


def train_job(params, root: Path, method: str, bench_name: str, seed: int, child_run_id: str,
              digest: str) -> dict[str, Any]:
    """One training run (method x benchmark x seed) from the SFT student into data/runs/..., logging its
    per-step metrics to the MLflow run `child_run_id`. Runs in the stage's process or in a worker process
    (`train.parallel_runs` > 1, see tasks.parallel), so it loads everything it needs itself; with
    `train.processes_per_run` > 1 the run itself is trained by that many processes (`_launch_processes`).
    Continues from the run's checkpoint when one was written with the same inputs (`digest`)."""
    from atod.train.checkpoint import find_checkpoint, load_trainer_state
    from tasks import tracking

    work = work_dir(root, method, bench_name, seed, digest)
    if run_state(work, digest) == "fresh":
        shutil.rmtree(work, ignore_errors=True)
        write_json(work / "inputs.json", {"digest": digest, "method": method, "benchmark": bench_name, "seed": seed})
    else:  # resume: show the steps already done in this execution's MLflow run
        found = find_checkpoint(work / "checkpoint")
        if found is not None:
            tracking.log_metric_history(_saved_metrics(work / "metrics.jsonl", load_trainer_state(found)["step"]),
                                        child_run_id)
    if params.train.processes_per_run > 1:
        result = _launch_processes(params, root, method, bench_name, seed, child_run_id, work)
    else:
        result = _train_run(params, root, method, bench_name, seed, child_run_id, work)
    summary = _train_summary(result)
    write_json(work / "summary.json", summary)  # the run is finished: a later execution reuses it
    for name in RESUME_STATE:  # final/ and best/ are kept
        shutil.rmtree(work / name, ignore_errors=True)
    publish_run(work, run_dir(root, method, bench_name, seed))
    return summary


def _train_run(params, root: Path, method: str, bench_name: str, seed: int, child_run_id: str,
               work: Path) -> dict[str, Any]:
    """The trainer on one run, in this process; under torchrun, in each of the run's processes (the
    trainer finds its place from the environment, and process 0 alone validates and logs)."""
    from atod.agent.models import load_tokenizer
    from atod.train.trainer import train as train_one
    from tasks import tracking

    tokenizer = load_tokenizer(root / SFT_DIR)
    bench = _load_benchmarks(root, [bench_name])[bench_name]
    return train_one(method, bench, student_dir=root / SFT_DIR, teacher_dir=root / TEACHER_DIR,
                     params=params, seed=seed, out_dir=work, resume=True,
                     log=lambda metrics, step: tracking.log_metrics(metrics, step=step, run_id=child_run_id),
                     eval_fn=make_validation_fn(params, bench, tokenizer), progress=False)


# what each process runs (a module run with -m would be imported twice: tasks.stages imports this one)
PROCESS_MAIN = "import sys; from tasks.stages.train import process_main; process_main(sys.argv[1])"


def _launch_processes(params, root: Path, method: str, bench_name: str, seed: int, child_run_id: str,
                      work: Path) -> dict[str, Any]:
    """Train one run with `train.processes_per_run` data-parallel processes: `torchrun --standalone`
    (torch's launcher, on this machine) runs `process_main` (PROCESS_MAIN) in each, with the run's
    arguments in work/.launch.json; process 0 writes the trainer's summary to work/.result.json. On CPU
    each process gets cores / (parallel_runs x processes_per_run) torch threads unless
    models.torch_threads is set. Their output goes to this process's stdout/stderr."""
    import torch

    n = params.train.processes_per_run
    gpus = torch.cuda.device_count() if params.models.device != "cpu" else 0
    if gpus and n > gpus:  # checked here, before the processes load anything (DataParallel.from_env also does)
        raise ValueError(f"train.processes_per_run is {n} but torch sees {gpus} CUDA device(s): one process per GPU")
    if gpus and params.train.parallel_runs > 1:  # each run's processes use cuda:0..n-1: runs would share GPUs
        raise ValueError(f"train.parallel_runs is {params.train.parallel_runs} with train.processes_per_run {n} on "
                         "GPUs: the runs would share the same GPUs; set train.parallel_runs: 1")
    threads = worker_threads(params.models.torch_threads, params.train.parallel_runs * n)
    spec, result = work / ".launch.json", work / ".result.json"
    result.unlink(missing_ok=True)
    for stale in work.glob(".error.*.json"):
        stale.unlink()
    write_json(spec, {"params": params.model_dump(mode="json"), "root": str(root), "method": method,
                      "benchmark": bench_name, "seed": seed, "child_run_id": child_run_id, "work": str(work),
                      "threads": threads, "result": str(result)})
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(max(threads, 1))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "--no-python",
           sys.executable, "-c", PROCESS_MAIN, str(spec)]
    launcher = subprocess.Popen(cmd, env=env)
    try:
        rc = launcher.wait()
    except BaseException:  # e.g. Ctrl-C: torchrun stops its processes (SIGTERM, then SIGKILL after 30 s)
        launcher.terminate()
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
        raise
    summary = read_json(result)
    if rc != 0 or not isinstance(summary, dict):
        raise RuntimeError(f"training run {method} / {bench_name} / seed {seed}: its {n} data-parallel processes "
                           f"(torchrun) exited with code {rc}{'' if rc else ' without a result'}"
                           f"{_first_process_error(work)}; their output is above. A rerun resumes from the "
                           f"run's last checkpoint in {work}")
    return summary


def _first_process_error(work: Path) -> str:
    """The earliest exception a process recorded (`process_main` writes work/.error.RANK.json), as a clause
    of the launcher's error: the others usually fail because of it (a collective with a missing peer). A
    process killed by a signal (out of memory, a crash) records nothing."""
    errors = [e for e in map(read_json, work.glob(".error.*.json")) if isinstance(e, dict)]
    if not errors:
        return ""
    first = min(errors, key=lambda e: e["time_ns"])
    others = f" ({len(errors) - 1} other process(es) recorded one later)" if len(errors) > 1 else ""
    return f"; the first error a process recorded was process {first['rank']}'s{others}: {first['error']}"


def process_main(spec_path: str) -> None:
    """One process of a data-parallel run (see `_launch_processes`)."""
    import torch

    from atod.config import Params

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    try:
        if spec["threads"] > 0:
            torch.set_num_threads(spec["threads"])
        params = Params.model_validate(spec["params"])
        result = _train_run(params, Path(spec["root"]), spec["method"], spec["benchmark"], spec["seed"],
                            spec["child_run_id"], Path(spec["work"]))
    except Exception as exc:  # for the launcher's error message (torchrun reports only exit codes)
        write_json(Path(spec["work"]) / f".error.{rank}.json",
                   {"rank": rank, "time_ns": time.time_ns(), "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if rank == 0:
        write_json(Path(spec["result"]), result)


def _remove_other_runs(root: Path, jobs: list[tuple[str, str, int]]) -> None:
    """Delete everything under data/runs that is not the directory of one of `jobs` (or above one)."""
    runs = root / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    keep = {run_dir(root, *job) for job in jobs}
    keep |= {path.parent for path in keep} | {path.parent.parent for path in keep}
    for pattern in ("*/*/*", "*/*", "*"):  # deepest first
        for path in list(runs.glob(pattern)):
            if path not in keep:
                remove_path(path)


def train(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Every method x benchmark x seed of `train`, each from the SFT student, each its own MLflow run
    (nested under the stage's). `train.parallel_runs` > 1 runs that many at once, each in its own process
    (tasks.parallel: spawned, CPU cores shared out); the results do not depend on the order."""
    from atod.eval.plots import RunCurves, plot_learning_curves
    from atod.train.trainer import METHODS, needs_teacher, schedule_notes
    from tasks import tracking

    cfg = params.train
    needs = {BENCH_DIR / b: "prepare" for b in cfg.benchmarks} | {SFT_DIR: "sft_student"}
    with_teacher = [m for m in trained_methods(params) if needs_teacher(METHODS[m], cfg)]
    if with_teacher:
        needs[TEACHER_DIR] = f"sft_teacher; {', '.join(with_teacher)} distill from it"
    require_inputs("train", root, needs)  # before any run starts: otherwise the runs without a teacher train first
    for note in schedule_notes(cfg.methods, cfg):
        tqdm.write(f"train: note: {note}")
    jobs = trained_runs(params)
    workers = params.train.parallel_runs
    _remove_other_runs(root, jobs)
    digests = {b: run_inputs_digest(params, root, b) for b in params.train.benchmarks}
    states = {}
    for job in jobs:
        out, work = run_dir(root, *job), work_dir(root, *job, digests[job[1]])
        states[job] = run_state(out, digests[job[1]])
        if states[job] != "done":
            states[job] = run_state(work, digests[job[1]])
            if states[job] == "done":  # finished by an execution whose outputs DVC did not keep
                publish_run(work, out)
    children = {job: tracking.open_child_run(f"{job[0]}-{job[1]}-seed{job[2]}",
                                             {"method": job[0], "benchmark": job[1], "seed": job[2],
                                              "run_state": states[job]})
                for job in jobs}
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    for job in jobs:  # finished earlier with the same inputs: reuse (its MLflow run shows the saved metrics)
        if states[job] == "done":
            out = run_dir(root, *job)
            tracking.log_metric_history(_saved_metrics(out / "metrics.jsonl"), children[job])
            results[job] = read_json(out / "summary.json")
            tracking.end_run(children[job], "FINISHED")
    todo = [job for job in jobs if job not in results]
    if len(todo) < len(jobs):
        tqdm.write(f"train: {len(jobs) - len(todo)} of {len(jobs)} runs already finished with the same inputs "
                   f"(reused); {sum(states[j] == 'resume' for j in todo)} resume from their checkpoints")
    try:
        done = run_jobs(train_job, [(params, root, *job, children[job], digests[job[1]]) for job in todo],
                        workers, worker_threads(params.models.torch_threads, workers))
        for i, result in tqdm(done, total=len(todo), desc="train: runs"):
            results[todo[i]] = result
            tracking.end_run(children[todo[i]], "FINISHED")
    finally:
        for job in jobs:
            if job not in results:
                tracking.end_run(children[job], "FAILED")
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
