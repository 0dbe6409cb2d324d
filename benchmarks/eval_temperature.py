"""Held-out success of the pipeline's models at another sampling temperature than `agent.eval_temperature`.

    python benchmarks/eval_temperature.py --temperature 1.0 [--benchmark alfworld] [--methods sft opd atod grpo]
                                          [--seeds 0 1 2] [--out results.jsonl]

Run in a project checkout after `evaluate` (it reads params.yaml and the models under data/). It plays the
same evaluation tasks as the `evaluate` stage (`evaluate.tasks_per_split` of every evaluation split, one
episode each, the same seed) with only the temperature changed, final checkpoints, and prints each model's
success pooled over splits with its 95% bootstrap CI, per seed, and the share of invalid steps. A
question this answers: do the trained methods differ at the temperature they were trained at
(`agent.train_temperature`) as they do at the sharper evaluation temperature? Uses torch and the atod
library only.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from atod.agent.models import load_model, load_tokenizer
from atod.config import load_params
from atod.envs import EVAL_SPLITS, load_benchmark
from atod.eval.compare import EvalRecord, save_records
from atod.eval.evaluate import evaluate_policy
from atod.eval.stats import bootstrap_ci

# The stage layout (tasks/stages/common.py; importing tasks/ would pull in MLflow and Prefect).
FIXED = {"vanilla": Path("data/models/init/student"), "sft": Path("data/models/student_sft"),
         "seqkd": Path("data/models/student_seqkd"), "teacher": Path("data/models/teacher")}


def model_dirs(method: str, benchmark: str, seeds: list[int]) -> list[tuple[int, Path]]:
    if method in FIXED:
        return [(0, FIXED[method])]
    return [(seed, Path("data/runs") / method / benchmark / f"seed{seed}" / "final") for seed in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--benchmark", default="alfworld")
    parser.add_argument("--methods", nargs="+", default=["sft", "opd", "atod", "grpo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", help="write the episodes as evaluation records (atod.eval.compare.save_records, the "
                                      "evaluate stage's format), which benchmarks/per_seed_success.py reads")
    args = parser.parse_args()
    if args.temperature <= 0:
        raise SystemExit(f"--temperature must be > 0, got {args.temperature}")

    params = load_params()
    agent = params.agent.model_copy(update={"eval_temperature": args.temperature})
    bench = load_benchmark(args.benchmark, Path("data/benchmarks") / args.benchmark)
    torch.set_num_threads(params.models.torch_threads or torch.get_num_threads())
    records: list[EvalRecord] = []
    print(f"{args.benchmark}, T = {args.temperature}, {params.evaluate.tasks_per_split} tasks per split, final checkpoints")
    for method in args.methods:
        spec = params.models.teacher if method == "teacher" else params.models.student
        per_seed = []
        mine: list[EvalRecord] = []
        for seed, path in model_dirs(method, args.benchmark, args.seeds):
            if not path.is_dir():
                raise SystemExit(f"no model for {method} seed {seed} at {path}: run the pipeline first")
            model, tokenizer = load_model(path, spec, device="cpu"), load_tokenizer(path)
            seed_records = [EvalRecord.from_result(evaluate_policy(model, tokenizer, bench, split, cfg=params.evaluate,
                                                                   agent=agent, device="cpu"),
                                                   method=method, seed=seed, checkpoint="final")
                            for split in EVAL_SPLITS[args.benchmark]]
            per_seed.append(100 * np.concatenate([r.won_E for r in seed_records]).mean())
            mine += seed_records
        won = np.concatenate([r.won_E for r in mine])
        invalid = sum(r.invalid_E.sum() for r in mine) / sum(r.turns_E.sum() for r in mine)
        low, high = bootstrap_ci(won)
        print(f"{method:10s} {100 * won.mean():5.1f} [{100 * low:.1f}, {100 * high:.1f}]   seeds "
              + " / ".join(f"{s:.1f}" for s in per_seed) + f"   invalid steps {100 * invalid:.1f}%")
        records += mine
    if args.out:
        save_records(records, args.out)


if __name__ == "__main__":
    main()
