"""A training pilot on TRAINING tasks only: one method on one benchmark, validated every 10 steps on the
held-out slice of the train split (`train.eval_tasks`), never on an evaluation split. How the settings of
the embedded default and of the reproduction were chosen (README, "Choosing the training settings").

    python benchmarks/pilot_train.py opd --lr 1e-4 --steps 30 --anneal-steps 16 --updates-per-step 4 \\
        --out /tmp/pilot/opd_k4 [--benchmark alfworld] [--student data/models/student_sft] [--threads 1]
        [--max-grad-norm 1.0] [--tasks-per-step 2]

Other settings come from params.yaml (the default profile). Prints one JSON line per step and per
validation; the run resumes from its checkpoint in --out when started again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from atod.agent.models import load_model, load_tokenizer
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the stages' package `tasks`
from tasks.stages import make_validation_fn

SHOWN = ("reward", "success", "turns", "kappa", "rho", "kl_teacher", "kl_full", "entropy", "tdur_weight_mean", "grad_norm",
         "clip_fraction", "approx_kl_old", "step_time_s", "val_success", "val_invalid_rate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("--benchmark", default="alfworld")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--anneal-steps", type=int)
    ap.add_argument("--updates-per-step", type=int)
    ap.add_argument("--tasks-per-step", type=int)
    ap.add_argument("--max-grad-norm", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--student", default="data/models/student_sft")
    ap.add_argument("--teacher", default="data/models/teacher")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    p = load_params("params.yaml")
    raw = p.train.model_dump()
    raw.update({k: v for k, v in {"lr": args.lr, "steps": args.steps, "updates_per_step": args.updates_per_step,
                                 "tasks_per_step": args.tasks_per_step, "max_grad_norm": args.max_grad_norm}.items()
                if v is not None})
    if args.anneal_steps is not None:
        raw["anneal"]["anneal_steps"] = args.anneal_steps
    # validated like params.yaml; --threads wins over models.torch_threads (which the trainer applies)
    p = p.model_copy(update={"train": type(p.train)(**raw),
                             "models": p.models.model_copy(update={"torch_threads": args.threads})})
    bench = load_benchmark(args.benchmark, f"data/benchmarks/{args.benchmark}")
    tok = load_tokenizer(args.student)
    eval_fn = make_validation_fn(p, bench, tok)
    t0 = time.time()

    def log(metrics: dict[str, float], step: int) -> None:
        shown = {k: round(v, 3) for k, v in metrics.items() if k in SHOWN}
        print(json.dumps({"step": step, "elapsed_s": round(time.time() - t0), **shown}), flush=True)

    log({f"val_{k}": v for k, v in eval_fn(load_model(args.student, p.models.student), 0).items()}, 0)
    train(args.method, bench, student_dir=args.student, teacher_dir=args.teacher, params=p, seed=args.seed,
          out_dir=args.out, log=log, eval_fn=eval_fn, progress=False, resume=True)


if __name__ == "__main__":
    main()
