"""Speed and policy baselines of the embedded ALFWorld, on one core.

    .venv/bin/python benchmarks/bench_env_alfworld.py [--profile default] [--seed 0] [--real N]

Prints, per split: the scripted expert's success and mean turns (clean and noisy), the uniformly
random admissible-action policy's, and environment steps per second with the expert choosing actions
(expert time included). `--real N` also times N episodes of the real engine (needs `atod[alfworld]`).
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
from atod.envs.alfworld import build
from atod.envs.alfworld.benchmark import AlfworldBenchmark

ROOT = Path(__file__).resolve().parent.parent


def run_policy(bench: AlfworldBenchmark, env, split: str, policy: str, noise: float = 0.0, seed: int = 0,
               limit: int | None = None) -> dict:
    """Play the tasks of `split` once with `policy` ("expert" or "random"); returns summary numbers."""
    rng = random.Random(seed)
    tasks = bench.tasks(split)[:limit]
    won = steps = invalid = 0
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
            invalid += result.info.invalid
        won += result.info.won
    elapsed = time.perf_counter() - start
    n = len(tasks)
    return {"episodes": n, "success": won / n, "turns": steps / n, "steps_per_s": steps / elapsed,
            "invalid": invalid / max(steps, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["smoke", "default", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=int, default=0, help="also time N expert episodes in the real engine")
    args = parser.parse_args()
    config = resolve(yaml.safe_load((ROOT / "params.yaml").read_text()), profile=args.profile).prepare.alfworld
    start = time.perf_counter()
    bench = build(config, args.seed)
    print(f"alfworld profile={args.profile} {config.train_tasks}/{config.valid_seen_tasks}/"
          f"{config.valid_unseen_tasks} tasks, built in {time.perf_counter() - start:.2f} s")
    print(f"{'split':<13} {'policy':<13} {'episodes':>8} {'success':>8} {'turns':>6} {'steps/s':>8}")
    env = bench.make_env()
    for split in bench.splits:
        for name, policy, noise in [("expert", "expert", 0.0), ("expert n=0.1", "expert", 0.1),
                                    ("expert n=0.3", "expert", 0.3), ("random", "random", 0.0)]:
            r = run_policy(bench, env, split, policy, noise, args.seed)
            print(f"{split:<13} {name:<13} {r['episodes']:>8} {r['success']:>8.3f} {r['turns']:>6.2f} "
                  f"{r['steps_per_s']:>8.0f}")
    if args.real:
        from atod.envs.alfworld.real import RealAlfworldEnv

        r = run_policy(bench, RealAlfworldEnv(max_turns=bench.max_turns), "train", "expert", 0.0, args.seed,
                       limit=args.real)
        print(f"{'train':<13} {'real engine':<13} {r['episodes']:>8} {r['success']:>8.3f} {r['turns']:>6.2f} "
              f"{r['steps_per_s']:>8.0f}")


if __name__ == "__main__":
    main()
