"""Speed and policy baselines of the embedded WebShop, on one core.

    .venv/bin/python benchmarks/bench_env_webshop.py [--profile default] [--seed 0]

Prints, per split: the scripted expert's success and mean score (clean and noisy), the uniformly
random admissible-action policy's (the `search[<your query>]` placeholder sent literally), mean
turns, and environment steps per second with the expert choosing actions (expert time included).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import yaml

from atod.config import resolve
from atod.envs.webshop import build
from atod.envs.webshop.benchmark import WebshopBenchmark

ROOT = Path(__file__).resolve().parent.parent


def run_policy(bench: WebshopBenchmark, split: str, policy: str, noise: float = 0.0, seed: int = 0) -> dict:
    """Play every task of `split` once with `policy` ("expert" or "random"); returns summary numbers."""
    env = bench.make_env()
    rng = random.Random(seed)
    tasks = bench.tasks(split)
    won = score = steps = 0.0
    start = time.perf_counter()
    for task in tasks:
        result = env.reset(task)
        while not result.done:
            if policy == "expert":
                action = env.expert_action(rng, noise)
            else:
                action = rng.choice(result.admissible_actions)
            result = env.step(action)
            steps += 1
        won += result.info.won
        score += result.info.score
    elapsed = time.perf_counter() - start
    n = len(tasks)
    return {
        "success": won / n,
        "score": score / n,
        "turns": steps / n,
        "steps_per_s": steps / elapsed,
        "episodes": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["smoke", "default", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = resolve(yaml.safe_load((ROOT / "params.yaml").read_text()), profile=args.profile).prepare.webshop
    start = time.perf_counter()
    bench = build(config, args.seed)
    print(
        f"webshop profile={args.profile} {config.num_products} products, built in "
        f"{time.perf_counter() - start:.2f} s"
    )
    print(
        f"{'split':<6} {'policy':<13} {'episodes':>8} {'success':>8} {'score':>6} {'turns':>6} {'steps/s':>8}"
    )
    for split in bench.splits:
        for name, policy, noise in [
            ("expert", "expert", 0.0),
            ("expert n=0.1", "expert", 0.1),
            ("expert n=0.3", "expert", 0.3),
            ("random", "random", 0.0),
        ]:
            r = run_policy(bench, split, policy, noise, args.seed)
            print(
                f"{split:<6} {name:<13} {r['episodes']:>8} {r['success']:>8.3f} {r['score']:>6.3f} "
                f"{r['turns']:>6.2f} {r['steps_per_s']:>8.0f}"
            )


if __name__ == "__main__":
    main()
