"""Can the student learn what distillation did not teach it, given many more supervised updates? Continues
the shipped student's warm-up (the `sft_warmup.student` recipe: the same demonstrations, seed, lr
schedule restarted) for `--steps` more updates, on TRAINING tasks only, and saves the model; the warm-up's
own check (success on train tasks no demonstration used, per benchmark) runs every `--eval-every` steps.
Compare the result with `benchmarks/diagnose_distillation.py` (README, "Why nothing moves on Search-QA").

    python benchmarks/pilot_sft_continue.py --steps 6000 --out /tmp/sft_more [--eval-every 3000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atod.agent.models import load_model, load_tokenizer
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.sft import sft_on_benchmarks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--eval-every", type=int, default=3000)
    ap.add_argument("--student", default="data/models/student_sft")
    ap.add_argument("--out", required=True, help="the continued model is saved here (checkpoints under it)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    p = load_params("params.yaml")
    run = p.sft_warmup.student.model_copy(update={"steps": args.steps, "eval_every": args.eval_every})
    benchmarks = [load_benchmark(b, f"data/benchmarks/{b}") for b in p.prepare.benchmarks]
    tokenizer = load_tokenizer(args.student)
    model = load_model(args.student, p.models.student)
    out = Path(args.out)

    def log(metrics: dict[str, float], step: int) -> None:
        shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("check/") or k in ("loss", "lr")}
        if any(k.startswith("check/") for k in shown) or step % 500 == 0:
            print(json.dumps({"step": step, **shown}), flush=True)

    # the student's own seed offset (tasks/stages/sft.py: teacher +0, student +1): the same demonstrations
    model, stats = sft_on_benchmarks(model, tokenizer, benchmarks, run, p.sft_warmup.seed + 1, agent_cfg=p.agent,
                                     holdout=p.train.eval_tasks, log=log, progress=False,
                                     checkpoint_dir=out / "checkpoint")
    model.save_pretrained(out / "final")
    tokenizer.save_pretrained(out / "final")
    print(json.dumps({"demo": stats, "saved": str(out / "final")}), flush=True)


if __name__ == "__main__":
    main()
