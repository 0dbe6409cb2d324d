"""Speed and policy baselines of the embedded benchmarks, on one core.

    .venv/bin/python benchmarks/bench_envs.py alfworld [--profile default] [--seed 0] [--real N]
    .venv/bin/python benchmarks/bench_envs.py webshop  [--profile default] [--seed 0]
    .venv/bin/python benchmarks/bench_envs.py searchqa [--profile default] [--seed 0] [--http]

Prints, per split and policy: episodes (every task of the split once), success rate, mean score,
mean turns, invalid-step rate, and environment steps per second with the policy choosing actions
(policy time included). The policies (atod.envs.play): the scripted expert, clean and noisy (n = the
probability of a random step), and a random policy: for ALFWorld and WebShop uniform over the
admissible actions (WebShop's `search[<your query>]` placeholder sent literally), for Search-QA, whose
actions are free-form, random searches and random answers among entity names, years, occupations
and yes/no.

Extras: `alfworld --real N` also times N expert episodes of the real engine (needs `atod[alfworld]`).
Search-QA's first expert pass per split runs on a cold retrieval cache (every query scored by BM25),
the later ones may hit it; `searchqa --http` also plays the expert through `serve_retriever` in a
subprocess (the real HTTP protocol).
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
from atod.envs import build_benchmark
from atod.envs.base import Benchmark, Env, StepResult
from atod.envs.play import play_episodes

ROOT = Path(__file__).resolve().parent.parent
EXPERT_RUNS = [("expert", "expert", 0.0), ("expert n=0.1", "expert", 0.1), ("expert n=0.3", "expert", 0.3)]
RANDOM_RUN = ("random", "random", 0.0)


def build(name: str, args: argparse.Namespace):
    """Benchmark `name` from params.yaml's `prepare.<name>` under `--profile`, with `--seed`; returns the
    config section, the benchmark and the build time in seconds."""
    prepare = resolve(yaml.safe_load((ROOT / "params.yaml").read_text()), profile=args.profile).prepare
    start = time.perf_counter()
    bench = build_benchmark(name, prepare, seed=args.seed)
    return getattr(prepare, name), bench, time.perf_counter() - start


def print_header() -> None:
    print(
        f"{'split':<19} {'policy':<20} {'episodes':>8} {'success':>8} {'score':>6} {'turns':>6} "
        f"{'invalid':>7} {'steps/s':>8}"
    )


def print_row(split: str, policy: str, r: dict) -> None:
    print(
        f"{split:<19} {policy:<20} {r['episodes']:>8} {r['success_rate']:>8.3f} {r['mean_score']:>6.3f} "
        f"{r['mean_turns']:>6.2f} {r['invalid_rate']:>7.3f} {r['steps_per_s']:>8.0f}"
    )


def play_split(
    bench: Benchmark,
    split: str,
    policy="expert",
    noise: float = 0.0,
    seed: int = 0,
    env: Env | None = None,
    limit: int | None = None,
) -> dict:
    """Play every task of `split` once (the first `limit` of them if given)."""
    n = len(bench.tasks(split))
    return play_episodes(bench, split, n=min(n, limit or n), seed=seed, noise=noise, policy=policy, env=env)


def print_table(bench: Benchmark, runs: list, seed: int, before_split=None) -> None:
    """One row per split and (label, policy, noise) run; `before_split(split)` is called first."""
    for split in bench.splits:
        if before_split is not None:
            before_split(split)
        for label, policy, noise in runs:
            print_row(split, label, play_split(bench, split, policy, noise, seed))


# ---- ALFWorld ----------------------------------------------------------------------------------------


def bench_alfworld(args: argparse.Namespace) -> None:
    config, bench, seconds = build("alfworld", args)
    print(
        f"alfworld profile={args.profile} {config.train_tasks}/{config.valid_seen_tasks}/"
        f"{config.valid_unseen_tasks} tasks, built in {seconds:.2f} s"
    )
    print_header()
    print_table(bench, [*EXPERT_RUNS, RANDOM_RUN], args.seed)
    if args.real:
        from atod.envs.alfworld.real import RealAlfworldEnv

        real = RealAlfworldEnv(max_turns=bench.max_turns)
        print_row(
            "train", "real engine", play_split(bench, "train", seed=args.seed, env=real, limit=args.real)
        )


# ---- WebShop -----------------------------------------------------------------------------------------


def bench_webshop(args: argparse.Namespace) -> None:
    config, bench, seconds = build("webshop", args)
    print(f"webshop profile={args.profile} {config.num_products} products, built in {seconds:.2f} s")
    print_header()
    print_table(bench, [*EXPERT_RUNS, RANDOM_RUN], args.seed)


# ---- Search-QA ---------------------------------------------------------------------------------------


def searchqa_random(env: Env, result: StepResult, rng: random.Random) -> str:
    """Search-QA's random policy: a random search or a random answer (even odds) among the env's
    distractors (entity names, years, occupations, yes/no)."""
    value = rng.choice(env.distractors)
    return f"<search>{value}</search>" if rng.random() < 0.5 else f"<answer>{value}</answer>"


def bench_searchqa(args: argparse.Namespace) -> None:
    from atod.envs.searchqa.remote import make_remote_env

    _, bench, built = build("searchqa", args)
    start = time.perf_counter()
    bench.make_env()  # builds the BM25 index (shared by every env of the benchmark)
    print(
        f"searchqa profile={args.profile} {len(bench.kb.entities())} entities, {len(bench.kb.passages)} "
        f"passages, built in {built:.2f} s, BM25 index in {time.perf_counter() - start:.2f} s"
    )
    print_header()
    runs = [
        ("expert (cold cache)", "expert", 0.0),
        ("expert (warm cache)", "expert", 0.0),
        *EXPERT_RUNS[1:],
        ("random", searchqa_random, 0.0),
    ]
    print_table(bench, runs, args.seed, before_split=lambda split: bench.index.clear_cache())
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
                    print_row(split, "expert over HTTP", play_split(bench, split, seed=args.seed, env=remote))
            finally:
                proc.terminate()
                proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="benchmark", required=True)
    for name, run, help_ in [
        ("alfworld", bench_alfworld, "embedded ALFWorld"),
        ("webshop", bench_webshop, "embedded WebShop"),
        ("searchqa", bench_searchqa, "embedded Search-QA (Search-R1 protocol)"),
    ]:
        sub = subparsers.add_parser(name, help=help_)
        sub.add_argument("--profile", default="default", choices=["smoke", "default", "gpu"])
        sub.add_argument("--seed", type=int, default=0)
        sub.set_defaults(run=run)
        if name == "alfworld":
            sub.add_argument(
                "--real", type=int, default=0, help="also time N expert episodes in the real engine"
            )
        if name == "searchqa":
            sub.add_argument(
                "--http", action="store_true", help="also run the expert through serve_retriever"
            )
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
