"""Speed and policy baselines of the embedded Search-QA (Search-R1 protocol), on one core.

    .venv/bin/python benchmarks/bench_env_searchqa.py [--profile default] [--seed 0] [--http]

Prints, per split: the scripted expert's exact-match success (clean and noisy), a random policy's
(random searches and random answers among entity names, years, occupations and yes/no), mean turns,
and environment steps per second with the expert choosing actions (expert time included). The first
expert pass runs on a cold retrieval cache (every query scored by BM25), the later ones may hit it.
`--http` also plays the expert through `serve_retriever` in a subprocess (the real HTTP protocol).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import yaml

from atod.config import resolve
from atod.envs.searchqa import build
from atod.envs.searchqa.benchmark import SearchQABenchmark
from atod.envs.searchqa.env import SearchQAEnv
from atod.envs.searchqa.remote import make_remote_env

ROOT = Path(__file__).resolve().parent.parent


def run_policy(
    bench: SearchQABenchmark, env: SearchQAEnv, split: str, policy: str, noise: float = 0.0, seed: int = 0
) -> dict:
    """Play every task of `split` once with `policy` ("expert" or "random"); returns summary numbers."""
    rng = random.Random(seed)
    tasks = bench.tasks(split)
    won = steps = 0
    start = time.perf_counter()
    for task in tasks:
        result = env.reset(task)
        while not result.done:
            if policy == "expert":
                action = env.expert_action(rng, noise)
            else:
                value = rng.choice(bench.distractors)
                action = f"<search>{value}</search>" if rng.random() < 0.5 else f"<answer>{value}</answer>"
            result = env.step(action)
            steps += 1
        won += result.info.won
    elapsed = time.perf_counter() - start
    n = len(tasks)
    return {"success": won / n, "turns": steps / n, "steps_per_s": steps / elapsed, "episodes": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["smoke", "default", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--http", action="store_true", help="also run the expert through serve_retriever")
    args = parser.parse_args()
    config = resolve(
        yaml.safe_load((ROOT / "params.yaml").read_text()), profile=args.profile
    ).prepare.searchqa
    start = time.perf_counter()
    bench = build(config, args.seed)
    built = time.perf_counter() - start
    start = time.perf_counter()
    env = bench.make_env()  # builds the BM25 index
    print(
        f"searchqa profile={args.profile} {len(bench.kb.entities())} entities, "
        f"{len(bench.kb.passages)} passages, built in {built:.2f} s, "
        f"BM25 index in {time.perf_counter() - start:.2f} s"
    )
    print(f"{'split':<19} {'policy':<20} {'episodes':>8} {'success':>8} {'turns':>6} {'steps/s':>8}")
    runs = [
        ("expert (cold cache)", "expert", 0.0),
        ("expert (warm cache)", "expert", 0.0),
        ("expert n=0.1", "expert", 0.1),
        ("expert n=0.3", "expert", 0.3),
        ("random", "random", 0.0),
    ]
    for split in bench.splits:
        bench.index.clear_cache()
        for name, policy, noise in runs:
            r = run_policy(bench, env, split, policy, noise, args.seed)
            print(
                f"{split:<19} {name:<20} {r['episodes']:>8} {r['success']:>8.3f} {r['turns']:>6.2f} "
                f"{r['steps_per_s']:>8.0f}"
            )
    if args.http:
        with tempfile.TemporaryDirectory() as tmp:
            bench.save(Path(tmp))
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "atod.envs.searchqa.serve_retriever",
                    "--corpus",
                    str(Path(tmp) / "corpus.jsonl"),
                    "--port",
                    "0",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                url = proc.stdout.readline().split()[-1]
                remote = make_remote_env(
                    url, max_turns=bench.max_turns, topk=bench.topk, distractors=bench.distractors
                )
                for split in bench.splits:
                    r = run_policy(bench, remote, split, "expert", 0.0, args.seed)
                    print(
                        f"{split:<19} {'expert over HTTP':<20} {r['episodes']:>8} {r['success']:>8.3f} "
                        f"{r['turns']:>6.2f} {r['steps_per_s']:>8.0f}"
                    )
            finally:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
