"""The pipeline's stages: one plain function per stage, each reading its params sections, calling the
`atod` library, writing its outputs and logging one MLflow run.

    prepare        data/benchmarks/<bench>/, data/tokenizer/, data/models/init/{student,teacher}/,
                   metrics/prepare.json
    sft_warmup     data/models/teacher/, data/models/student_sft/, metrics/sft_warmup.json
    cache_teacher  data/teacher_cache/, data/models/student_seqkd/, metrics/cache_teacher.json
    train          data/runs/<method>/<bench>/seed<k>/{final,best,metrics.jsonl}, metrics/train.json,
                   plots/train/*.png (learning curves)
    evaluate       data/eval/records.jsonl (per-episode rows), data/eval/transcripts/,
                   metrics/eval/<model>.json (success/score/turns/invalid with bootstrap CIs)
    compare        reports/ (report.md, report.html, plots/), metrics/comparison.json

`run_stage(name, params_path, profile)` is what `atod stage NAME` (and so dvc.yaml) calls; the Prefect
tasks in `tasks.prefect_tasks` wrap the same functions. Paths are relative to the project root; each
function takes `root` so tests can run the pipeline in a copy of the project.

Every stage function has the signature `(params, root, run) -> dict` where `run` is a `StageRun` (the
MLflow side: child runs, metrics, artifacts) and the returned dict is the stage's metrics summary.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

STAGES = ("prepare", "sft_warmup", "cache_teacher", "train", "evaluate", "compare")

# Output locations (relative to the project root). dvc.yaml declares the same paths.
BENCH_DIR = Path("data/benchmarks")
TOKENIZER_DIR = Path("data/tokenizer")
INIT_DIR = Path("data/models/init")
TEACHER_DIR = Path("data/models/teacher")
SFT_DIR = Path("data/models/student_sft")
SEQKD_DIR = Path("data/models/student_seqkd")
CACHE_DIR = Path("data/teacher_cache")
RUNS_DIR = Path("data/runs")
EVAL_DATA_DIR = Path("data/eval")
METRICS_DIR = Path("metrics")
EVAL_METRICS_DIR = METRICS_DIR / "eval"
TRAIN_PLOTS_DIR = Path("plots/train")
REPORTS_DIR = Path("reports")
TIMING_DIR = Path(".atod/timing")  # untracked: compute vs. wall seconds per stage (overhead measurement)

# The params.yaml keys each stage reads (besides `profile`). dvc.yaml lists these and the matching
# `profiles.<name>.<key>` overrides that exist; `dvc_params` computes that list (tests compare).
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare", "models"),
    "sft_warmup": ("prepare.benchmarks", "sft_warmup", "models", "agent"),
    "cache_teacher": ("prepare.benchmarks", "cache_teacher", "models", "agent"),
    "train": ("train", "models", "agent"),
    "evaluate": ("evaluate", "models", "agent", "train.methods", "train.benchmarks", "train.seeds"),
    "compare": ("compare", "train.methods", "train.benchmarks", "train.seeds"),
}

# Models evaluated besides the trained methods, and where they live.
FIXED_MODELS = {"vanilla": INIT_DIR / "student", "sft": SFT_DIR, "seqkd": SEQKD_DIR, "teacher": TEACHER_DIR}
UNTRAINED_METHODS = ("seqkd",)  # may be listed in train.methods, but cache_teacher makes it (always)


# ---------------------------------------------------------------- small helpers
def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically (tmp file + rename), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (a stage owns its outputs: stale files from an earlier run go)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def dvc_params(stage: str, raw_params: dict[str, Any]) -> list[str]:
    """The params a DVC stage must depend on: `profile`, the keys it reads, and every profile's override
    of those keys that exists in the parsed params.yaml `raw_params` (DVC refuses missing keys)."""

    def has(tree: Any, dotted: str) -> bool:
        for part in dotted.split("."):
            if not isinstance(tree, dict) or part not in tree:
                return False
            tree = tree[part]
        return True

    keys = STAGE_PARAMS[stage]
    profiles = raw_params.get("profiles") or {}
    overrides = [f"profiles.{p}.{k}" for p in profiles for k in keys if has(profiles[p], k)]
    return ["profile", *keys, *overrides]


def run_dir(root: Path, method: str, benchmark: str, seed: int) -> Path:
    return root / RUNS_DIR / method / benchmark / f"seed{seed}"


def trained_methods(params) -> list[str]:
    return [m for m in params.train.methods if m not in UNTRAINED_METHODS]


def _count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class StageRun:
    """The MLflow side of a running stage, handed to the stage function (keeps `atod` free of MLflow)."""

    run_id: str
    root: Path

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        from tasks import tracking

        tracking.log_metrics(metrics, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        from tasks import tracking

        tracking.log_artifact(path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        from tasks import tracking

        tracking.log_text(text, artifact_file)

    @contextmanager
    def child(self, name: str, **tags: Any) -> Iterator[Callable[[dict[str, Any], int], None]]:
        """A nested run (tags such as method, benchmark, seed); yields a `log(metrics, step)` callback."""
        from tasks import tracking

        with tracking.child_run(name, tags) as child_id:
            yield lambda metrics, step: tracking.log_metrics(metrics, step=step, run_id=child_id)


# ---------------------------------------------------------------- stage 0: prepare
def prepare(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Generate every benchmark's task sets, build the tokenizer and the initial student/teacher."""
    from atod.agent.models import build_tiny_model, load_model, load_tokenizer
    from atod.agent.tokenizer import build_tokenizer
    from atod.envs import build_benchmark

    summary: dict[str, Any] = {"benchmarks": {}}
    corpus: list[str] = []
    for name in tqdm(params.prepare.benchmarks, desc="prepare: benchmarks"):
        bench = build_benchmark(name, params.prepare)
        bench.save(fresh_dir(root / BENCH_DIR / name))
        summary["benchmarks"][name] = {split: len(bench.tasks(split)) for split in bench.splits}
        corpus.extend(bench.corpus_texts())
        run.log_metrics({f"tasks/{name}/{split}": n for split, n in summary["benchmarks"][name].items()})

    spec = params.models.tokenizer
    if spec.source == "embedded":
        tokenizer = build_tokenizer(corpus, spec)
    else:
        tokenizer = load_tokenizer(params.models.student.name_or_path)
    tokenizer.save_pretrained(fresh_dir(root / TOKENIZER_DIR))
    summary["tokenizer"] = {"vocab_size": len(tokenizer)}

    for offset, role in enumerate(("student", "teacher")):
        model_spec = getattr(params.models, role)
        if model_spec.source == "tiny":
            model = build_tiny_model(model_spec, tokenizer, seed=params.prepare.seed + offset)
        else:
            model = load_model(model_spec.name_or_path, model_spec)
        out = fresh_dir(root / INIT_DIR / role)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        summary[role] = {"parameters": _count_parameters(model)}
    run.log_metrics({"tokenizer/vocab_size": summary["tokenizer"]["vocab_size"],
                     "student/parameters": summary["student"]["parameters"],
                     "teacher/parameters": summary["teacher"]["parameters"]})
    write_json(root / METRICS_DIR / "prepare.json", summary)
    return summary


# ---------------------------------------------------------------- stage 1: SFT warm-up
def _load_benchmarks(root: Path, names) -> dict[str, Any]:
    from atod.envs import load_benchmark

    return {name: load_benchmark(name, root / BENCH_DIR / name) for name in names}


class _LastMetrics:
    """A `log(metrics, step)` callback that forwards to MLflow and remembers the last values."""

    def __init__(self, log: Callable[[dict[str, Any], int], None]):
        self.log, self.last = log, {}

    def __call__(self, metrics: dict[str, Any], step: int) -> None:
        self.last = dict(metrics)
        self.log(metrics, step)


def _save_model(model, tokenizer, out: Path) -> None:
    model.save_pretrained(fresh_dir(out))
    tokenizer.save_pretrained(out)


def sft_warmup(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Warm up the teacher (many, cleaner demonstrations) and the student (few, noisy ones) with SFT on
    expert demonstrations of every benchmark's train split."""
    from atod.agent.models import load_model, load_tokenizer, resolve_device
    from atod.train.sft import sft_on_benchmarks

    device = resolve_device(params.models)
    benchmarks = list(_load_benchmarks(root, params.prepare.benchmarks).values())
    summary: dict[str, Any] = {}
    for offset, (role, out) in enumerate((("teacher", TEACHER_DIR), ("student", SFT_DIR))):
        cfg = getattr(params.sft_warmup, role)
        init = root / INIT_DIR / role
        tokenizer = load_tokenizer(init)
        model = load_model(init, getattr(params.models, role), device=device)
        with run.child(f"sft-{role}", role=role) as log:
            log_last = _LastMetrics(log)
            model, stats = sft_on_benchmarks(model, tokenizer, benchmarks, cfg, params.sft_warmup.seed + offset,
                                             agent_cfg=params.agent, log=log_last, device=device)
            log({f"demo/{k}": v for k, v in stats.items()}, cfg.steps)
        _save_model(model, tokenizer, root / out)
        summary[role] = {"demo": stats, "final": log_last.last, "steps": cfg.steps}
    write_json(root / METRICS_DIR / "sft_warmup.json", summary)
    return summary


# ---------------------------------------------------------------- stage 2: teacher cache + SeqKD
def cache_teacher(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Roll the warmed-up teacher out on training tasks (the cache, one directory per benchmark) and
    fine-tune the SeqKD student (from the SFT student) on the teacher's successful trajectories."""
    from atod.agent.models import load_model, load_tokenizer, resolve_device
    from atod.train.sft import train_sft
    from atod.train.teacher_cache import cache_teacher_trajectories, load_teacher_cache

    device = resolve_device(params.models)
    benchmarks = _load_benchmarks(root, params.prepare.benchmarks)
    cfg = params.cache_teacher
    teacher_tok = load_tokenizer(root / TEACHER_DIR)
    teacher = load_model(root / TEACHER_DIR, params.models.teacher, device=device)
    fresh_dir(root / CACHE_DIR)
    summary: dict[str, Any] = {"cache": {}}
    examples = []
    for name, bench in tqdm(benchmarks.items(), desc="cache_teacher: benchmarks"):
        manifest = cache_teacher_trajectories(teacher, teacher_tok, bench, cfg=cfg, agent_cfg=params.agent,
                                              out_dir=root / CACHE_DIR / name, device=device)
        summary["cache"][name] = {k: manifest[k] for k in ("success_rate", "mean_reward", "mean_turns",
                                                            "num_episodes", "generated_tokens")}
        run.log_metrics({f"teacher_train/{name}/{k}": v for k, v in summary["cache"][name].items()})
        examples += load_teacher_cache(root / CACHE_DIR / name).sft_examples()
    del teacher

    tokenizer = load_tokenizer(root / SFT_DIR)
    student = load_model(root / SFT_DIR, params.models.student, device=device)
    with run.child("seqkd", method="seqkd") as log:
        log_last = _LastMetrics(log)
        student = train_sft(student, tokenizer, examples, cfg.seqkd, cfg.seed, agent_cfg=params.agent,
                            log=log_last, device=device)
    _save_model(student, tokenizer, root / SEQKD_DIR)
    summary["seqkd"] = {"examples": len(examples), "final": log_last.last, "steps": cfg.seqkd.steps}
    write_json(root / METRICS_DIR / "cache_teacher.json", summary)
    return summary


# ---------------------------------------------------------------- stage 3: train every method
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


# ---------------------------------------------------------------- stage 4: held-out evaluation
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


def evaluate(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Every model of `evaluation_jobs` on every evaluation split, with bootstrap CIs (benchmarks one
    after the other; `flows/evaluate.py` runs them as concurrent Prefect tasks)."""
    from atod.agent.models import resolve_device

    device = resolve_device(params.models)
    results = []
    for bench in params.train.benchmarks:
        results += evaluate_benchmark(params, root, bench, device)
    return write_evaluation(params, root, run, results)


# ---------------------------------------------------------------- stage 5: comparison report
def compare(params, root: Path, run: StageRun) -> dict[str, Any]:
    """The teacher-vs-student report (tables with CIs, deltas, plots) and metrics/comparison.json."""
    from atod.eval.compare import build_comparison, load_records, write_report
    from atod.eval.plots import RunCurves

    records = load_records(root / EVAL_DATA_DIR / "records.jsonl")
    comparison = build_comparison(records, params.compare)
    curves = [RunCurves(method=m, benchmark=b, seed=s, metrics_path=run_dir(root, m, b, s) / "metrics.jsonl")
              for m in trained_methods(params) for b in params.train.benchmarks for s in params.train.seeds
              if (run_dir(root, m, b, s) / "metrics.jsonl").is_file()]
    fresh_dir(root / REPORTS_DIR)
    paths = write_report(comparison, root / REPORTS_DIR, root / METRICS_DIR / "comparison.json", runs=curves)
    table = json.loads((root / METRICS_DIR / "comparison.json").read_text())
    flat = {}
    for bench, methods in table.items():
        for method, cell in methods.items():
            if isinstance(cell, dict) and isinstance(cell.get("success"), (int, float)):
                flat[f"{bench}/{method}/success"] = cell["success"]
    run.log_metrics(flat)
    run.log_artifact(root / REPORTS_DIR, "report")
    run.log_artifact(root / METRICS_DIR / "comparison.json", "report")
    return {"files": {k: str(Path(p).relative_to(root)) for k, p in paths.items()}}


STAGE_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "prepare": prepare,
    "sft_warmup": sft_warmup,
    "cache_teacher": cache_teacher,
    "train": train,
    "evaluate": evaluate,
    "compare": compare,
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
    params = load_params(params_path if params_path.is_absolute() else root / params_path, profile=profile)

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
