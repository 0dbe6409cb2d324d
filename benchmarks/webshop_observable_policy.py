"""Does the embedded WebShop need privileged knowledge? Both scripted experts of `WebshopEnv` played on
every goal of each split of a generated benchmark:

    python benchmarks/webshop_observable_policy.py [--benchmark-dir data/benchmarks/webshop]

"reward" picks products by their reward (privileged); "observable" decides only from what the
instruction and the pages show (first affordable result of the right type whose options and description
match; `WebshopEnv._observable_action`). Prints, per expert and split, the share of goals won (score 1.0),
the mean score and the mean turns of the won episodes.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from atod.envs import load_benchmark
from atod.envs.webshop.env import EXPERTS, WebshopEnv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark-dir", default="data/benchmarks/webshop")
    args = ap.parse_args()
    bench = load_benchmark("webshop", Path(args.benchmark_dir))
    for expert in EXPERTS:
        env = WebshopEnv(bench.shop, bench.max_turns, expert)
        for split in bench.splits:
            won, scores, turns = 0, [], []
            for task in bench.tasks(split):
                result = env.reset(task)
                while not result.done:
                    result = env.step(env.expert_action(random.Random(0)))
                won += result.info.won
                scores.append(result.info.score)
                turns += [result.info.turn] if result.info.won else []
            n = len(scores)
            print(f"{expert} expert, {split}: {n} goals, won {won / n:.3f}, mean score {sum(scores) / n:.3f}, "
                  f"mean turns when won {sum(turns) / max(len(turns), 1):.1f}")


if __name__ == "__main__":
    main()
