"""Play a benchmark with its scripted expert (clean or noisy) or a random policy; no model involved.

Used by `atod envs play|show`, `atod bench envs` and benchmarks/bench_envs.py.

A policy is "expert" (the env's scripted expert; with probability `noise` it takes one of its own
random admissible or plausible actions instead, so noise=1.0 is the expert's idea of a random
policy), "random" (`random_action`: uniform over the step's `admissible_actions`, see there) or any
function `(env, result, rng) -> action`, `result` being the last StepResult.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tqdm import tqdm

from atod.envs.base import Benchmark, Env, StepResult, Task

PolicyFn = Callable[[Env, StepResult, random.Random], str]


def random_action(env: Env, result: StepResult, rng: random.Random) -> str:
    """The "random" policy: an action drawn uniformly from the current `result.admissible_actions`,
    taken literally (e.g. WebShop's `search[<your query>]` placeholder is sent as is). Unlike the
    expert's noise=1.0 it never uses privileged state. Benchmarks with free-form actions (Search-QA:
    no admissible actions) need a policy function of their own."""
    if not result.admissible_actions:
        raise ValueError(
            f"{env.benchmark} has free-form actions (no admissible_actions): the random policy cannot "
            "choose one; pass a policy function (env, result, rng) -> action instead"
        )
    return rng.choice(result.admissible_actions)


def _policy_fn(policy: str | PolicyFn, noise: float) -> PolicyFn:
    if callable(policy):
        return policy
    if policy == "expert":
        return lambda env, result, rng: env.expert_action(rng, noise)
    if policy == "random":
        return random_action
    raise ValueError(f"unknown policy {policy!r}; use 'expert', 'random' or a function (env, result, rng)")


def _run_episode(env: Env, task: Task, rng: random.Random, noise: float,
                 policy: str | PolicyFn = "expert") -> tuple[list[tuple[str, str]], dict]:
    """One episode; returns the (action, observation) steps and the final info."""
    act = _policy_fn(policy, noise)
    result = env.reset(task)
    steps: list[tuple[str, str]] = [("", result.observation)]
    invalid = 0
    while not result.done:
        action = act(env, result, rng)
        result = env.step(action)
        invalid += int(result.info.invalid)
        steps.append((action, result.observation))
    info = {"won": result.info.won, "score": result.info.score, "turns": result.info.turn, "invalid": invalid}
    return steps, info


def play_episodes(benchmark: Benchmark, split: str, *, n: int, seed: int = 0, noise: float = 0.0,
                  policy: str | PolicyFn = "expert", env: Env | None = None, progress: bool = False) -> dict:
    """Play the first `n` tasks of `split` (cycling if the split is smaller) and summarise.

    `policy`/`noise`: see the module docstring. `env`: play in this env (e.g. a real-engine or remote
    one over the same tasks) instead of a fresh `benchmark.make_env()`. `steps_per_s` is env steps
    per second over the whole run, resets and the policy's time included.
    """
    tasks = benchmark.tasks(split)
    if not tasks:
        raise ValueError(f"{benchmark.name}/{split} has no tasks")
    rng = random.Random(seed)
    env = env if env is not None else benchmark.make_env()
    won = score = turns = invalid = 0.0
    start = time.perf_counter()
    for i in tqdm(range(n), desc=f"{benchmark.name}/{split}", disable=not progress, leave=False):
        _, info = _run_episode(env, tasks[i % len(tasks)], rng, noise, policy)
        won += info["won"]
        score += info["score"]
        turns += info["turns"]
        invalid += info["invalid"]
    elapsed = time.perf_counter() - start
    return {
        "success_rate": won / n,
        "mean_score": score / n,
        "mean_turns": turns / n,
        "invalid_rate": invalid / max(turns, 1.0),
        "episodes": n,
        "steps_per_s": turns / elapsed if elapsed > 0 else 0.0,
    }


def expert_transcript(benchmark: Benchmark, task: Task, *, seed: int = 0, noise: float = 0.0) -> str:
    """A readable transcript of one expert episode."""
    env = benchmark.make_env()
    steps, info = _run_episode(env, task, random.Random(seed), noise)
    lines = [f"# {benchmark.name} / {task.split} / {task.task_id}", f"# goal: {task.goal}", "", steps[0][1]]
    for k, (action, obs) in enumerate(steps[1:], start=1):
        lines += ["", f"> {action}", obs]
    lines += ["", f"# won={info['won']} score={info['score']:.3f} turns={info['turns']} invalid={info['invalid']}"]
    return "\n".join(lines)


def steps_per_second(benchmark: Benchmark, *, seconds: float = 3.0, split: str = "train") -> dict:
    """Expert environment steps per second on this core (env work only, expert included)."""
    tasks = benchmark.tasks(split)
    env = benchmark.make_env()
    rng = random.Random(0)
    steps = episodes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        result = env.reset(tasks[episodes % len(tasks)])
        while not result.done:
            result = env.step(env.expert_action(rng, 0.0))
            steps += 1
        episodes += 1
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed, "steps": steps, "episodes": episodes, "seconds": elapsed}
