"""Teacher scoring: log-probs of the generated tokens only (`generated_logprobs`, what LocalTeacher does)
against every position (`token_logprobs`), on one ALFWorld training batch of the embedded default.

    python benchmarks/bench_teacher_scoring.py [--threads 1] [--reps 3]

Needs the default profile's data (data/benchmarks/alfworld, data/models/{teacher,student_sft}: `dvc pull`
or `bash scripts/run.sh`). Prints the median seconds of each (alternated, so background load hits both
alike), the speed-up and the largest difference between the two (float rounding only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from atod.agent.models import generated_logprobs, load_model, load_tokenizer, token_logprobs
from atod.agent.rollout import collect_rollouts
from atod.config import load_params
from atod.envs import load_benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=16, help="rows per forward pass (LocalTeacher's micro_batch_rows)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = load_params("params.yaml")
    bench = load_benchmark("alfworld", "data/benchmarks/alfworld")
    tok = load_tokenizer("data/models/student_sft")
    student = load_model("data/models/student_sft", p.models.student, device="cpu")
    teacher = load_model("data/models/teacher", p.models.teacher, device="cpu").eval()
    tasks = bench.tasks("train")[: p.train.tasks_per_step]
    batch = collect_rollouts(student, tok, bench, tasks, samples_per_task=p.train.samples_per_task,
                             temperature=p.agent.train_temperature, agent_cfg=p.agent, seed=0, split="train",
                             device="cpu")
    B = batch.input_ids_B_T.shape[0]
    print(f"batch: {len(batch.episodes)} episodes, {B} rows, {batch.num_generated_tokens} generated tokens, "
          f"{int(batch.attention_mask_B_T.sum())} tokens in all")

    def score(fn) -> torch.Tensor:
        out = torch.zeros(batch.input_ids_B_T.shape)
        with torch.inference_mode():
            for s in range(0, B, args.rows):
                r = slice(s, min(s + args.rows, B))
                L = int(batch.attention_mask_B_T[r].sum(-1).max())
                ids, attn, mask = batch.input_ids_B_T[r, :L], batch.attention_mask_B_T[r, :L], batch.loss_mask_B_T[r, :L]
                lp = fn(ids, attn, mask)
                out[r, :L] = torch.where(mask, lp, torch.zeros_like(lp))
        return out

    variants = {"all positions (token_logprobs)": lambda i, a, m: token_logprobs(teacher, i, a),
                "generated only (generated_logprobs)": lambda i, a, m: generated_logprobs(teacher, i, a, m)}
    times = {k: [] for k in variants}
    outs = {}
    for _ in range(args.reps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            outs[name] = score(fn)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.2f} s  ({', '.join(f'{t:.2f}' for t in ts)})")
    a, b = (statistics.median(ts) for ts in times.values())
    first, second = outs.values()
    diff = float((first - second).abs().max())
    print(f"speed-up {a / b:.2f}x; largest |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
