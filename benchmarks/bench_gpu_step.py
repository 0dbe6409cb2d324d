"""Time per training step on the machine it runs on (an accelerator when there is one): the reproduction's
settings and the `gpu` profile's. Training tasks only; nothing is evaluated.

Runs with torch + transformers alone (no Prefect, MLflow or DVC: the accelerator machine has none), on
the prepare stage's benchmark data and the shipped models (`dvc pull --remote embedded prepare sft_teacher
sft_student` first). Each configuration trains ATOD (`atod.train.trainer.train`, the pipeline's own code)
for `--steps` updates on each benchmark from the shipped student, in a fresh directory (no resume):

    repro       the reproduction's runs: shipped models, default profile, 2 tasks x 8 samples a step
    gpu_batch   the `gpu` profile's training section (16 tasks x 8 samples, bf16 off: the shipped models)
    gpu_models  the `gpu` profile's architectures and dtype (bf16), randomly initialised: an untrained
                student rarely closes an episode, so its episodes run to the turn limit (an upper bound)

The first step of a configuration includes CUDA initialisation and kernel warm-up, so it is reported
apart; `step_s_median` is over the others. `--determinism B` trains on B twice from the same seed and
compares every logged number but times and peak memory (a process-wide high-water mark): same seed, same
machine, same result.

    python benchmarks/bench_gpu_step.py --steps 4 --out /tmp/gpu_step.jsonl [--configs repro,gpu_batch]
        [--benchmarks alfworld,webshop,searchqa] [--threads 4] [--budget-s 400] [--determinism searchqa,alfworld]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from atod.agent.models import build_tiny_model, load_tokenizer
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.trainer import train

KEPT = ("step_time_s", "time_rollout_s", "time_teacher_s", "time_update_s", "turns", "success", "reward",
        "generated_tokens", "tokens_per_s", "peak_mem_mb", "kl_teacher", "loss", "grad_norm")
CONFIGS = ("repro", "gpu_batch", "gpu_models")


def config_params(name: str, steps: int):
    """(params with `steps` updates, annealing over half, no checkpoints; the full run's step count)."""
    default, gpu = load_params("params.yaml", profile="default"), load_params("params.yaml", profile="gpu")
    base = gpu if name == "gpu_models" else default
    train_cfg = (default if name == "repro" else gpu).train
    raw = train_cfg.model_dump()
    raw.update(steps=steps, checkpoint_every=10**6, eval_every=10**6)
    raw["anneal"]["anneal_steps"] = max(1, steps // 2)
    full_steps = 90 if name == "repro" else train_cfg.steps  # the reproduction: 90 (scripts/run.sh repro)
    return base.model_copy(update={"train": type(train_cfg)(**raw)}), full_steps


def random_models(params, work: Path, seed: int) -> tuple[Path, Path]:
    """The `gpu` profile's student and teacher architectures, randomly initialised, over the shipped tokenizer."""
    tok = load_tokenizer("data/models/student_sft")
    dirs = []
    for role, spec, s in (("student", params.models.student, seed), ("teacher", params.models.teacher, seed + 1)):
        d = work / f"{role}_random"
        model = build_tiny_model(spec, tok, s)
        model.save_pretrained(d)
        tok.save_pretrained(d)
        dirs.append(d)
    return dirs[0], dirs[1]


def run_one(config: str, benchmark: str, steps: int, seed: int, work: Path) -> dict:
    params, full_steps = config_params(config, steps)
    student, teacher = Path("data/models/student_sft"), Path("data/models/teacher")
    if config == "gpu_models":
        student, teacher = random_models(params, work / config, seed)
    bench = load_benchmark(benchmark, f"data/benchmarks/{benchmark}")
    rows: list[dict] = []
    t0 = time.perf_counter()
    train("atod", bench, student_dir=student, teacher_dir=teacher, params=params, seed=seed,
          out_dir=work / f"{config}_{benchmark}_{seed}_{len(list(work.iterdir()))}", resume=False, progress=False,
          log=lambda m, step: rows.append({"step": step, **{k: m[k] for k in KEPT if k in m}}))
    wall = time.perf_counter() - t0
    timed = rows[1:] or rows  # the first step includes CUDA initialisation and warm-up
    return {
        "config": config, "benchmark": benchmark, "seed": seed, "steps": steps, "wall_s": round(wall, 2),
        "tasks_per_step": params.train.tasks_per_step, "samples_per_task": params.train.samples_per_task,
        "dtype": params.models.student.dtype,
        "first_step_s": round(rows[0]["step_time_s"], 3),
        **{f"{name}_median": round(statistics.median(r[key] for r in timed), 3)
           for name, key in (("step_s", "step_time_s"), ("rollout_s", "time_rollout_s"),
                             ("teacher_s", "time_teacher_s"), ("update_s", "time_update_s"))},
        "turns_mean": round(statistics.mean(r["turns"] for r in rows), 2),
        "peak_mem_mb": round(max(r["peak_mem_mb"] for r in rows), 1),
        "run_estimate_min": round(full_steps * statistics.median(r["step_time_s"] for r in timed) / 60, 1),
        "run_estimate_steps": full_steps,
        "per_step": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--benchmarks", default="alfworld,webshop,searchqa")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=float("inf"),
                    help="start no new configuration after this many seconds")
    ap.add_argument("--determinism", default="", help="benchmarks to train twice from the same seed, e.g. searchqa")
    ap.add_argument("--out", required=True, help="JSON lines, appended as each result comes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def emit(rec: dict) -> None:
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        shown = {k: v for k, v in rec.items() if k != "per_step"}
        print(json.dumps(shown), flush=True)

    cuda = torch.cuda.is_available()
    emit({"machine": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
          "cuda": torch.version.cuda if cuda else None,
          "device": torch.cuda.get_device_name(0) if cuda else "cpu", "threads": args.threads})
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for bench in [b for b in args.determinism.split(",") if b]:
            runs = [run_one("repro", bench, 3, args.seed, work) for _ in range(2)]
            a, b = ([{k: v for k, v in r.items() if k not in ("step_time_s", "time_rollout_s", "time_teacher_s",
                                                              "time_update_s", "tokens_per_s", "peak_mem_mb")}
                     for r in run["per_step"]] for run in runs)
            emit({"determinism": f"{bench} atod 3 steps, twice, seed {args.seed}", "identical": a == b,
                  "first": a, "second": b})
        for config in configs:
            for bench in [b for b in args.benchmarks.split(",") if b]:
                if time.perf_counter() - t_start > args.budget_s:
                    emit({"skipped": f"{config}/{bench}", "reason": f"budget {args.budget_s:.0f} s spent"})
                    continue
                try:
                    emit(run_one(config, bench, args.steps, args.seed, work))
                except Exception as e:  # noqa: BLE001 - report and go on: one failing configuration must not hide the others
                    emit({"config": config, "benchmark": bench, "error": f"{type(e).__name__}: {e}"})
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
