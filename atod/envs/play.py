"""Play a benchmark with its scripted expert (optionally noisy, noise=1.0 is a random policy).

Used by `atod envs play|show` and `atod bench envs`; no model involved.
"""

from __future__ import annotations

import random
import time

from tqdm import tqdm

from atod.envs.base import Benchmark, Env, Task


def _run_episode(env: Env, task: Task, rng: random.Random, noise: float) -> tuple[list[tuple[str, str]], dict]:
    """One episode; returns the (action, observation) steps and the final info."""
    result = env.reset(task)
    steps: list[tuple[str, str]] = [("", result.observation)]
    invalid = 0
    while not result.done:
        action = env.expert_action(rng, noise)
        result = env.step(action)
        invalid += int(result.info.invalid)
        steps.append((action, result.observation))
    info = {"won": result.info.won, "score": result.info.score, "turns": result.info.turn, "invalid": invalid}
    return steps, info


def play_episodes(benchmark: Benchmark, split: str, *, n: int, seed: int = 0, noise: float = 0.0,
                  progress: bool = False) -> dict:
    """Play the first `n` tasks of `split` (cycling if the split is smaller) and summarise."""
    tasks = benchmark.tasks(split)
    if not tasks:
        raise ValueError(f"{benchmark.name}/{split} has no tasks")
    rng = random.Random(seed)
    env = benchmark.make_env()
    won = score = turns = invalid = 0.0
    for i in tqdm(range(n), desc=f"{benchmark.name}/{split}", disable=not progress, leave=False):
        _, info = _run_episode(env, tasks[i % len(tasks)], rng, noise)
        won += info["won"]
        score += info["score"]
        turns += info["turns"]
        invalid += info["invalid"]
    return {
        "success_rate": won / n,
        "mean_score": score / n,
        "mean_turns": turns / n,
        "invalid_rate": invalid / max(turns, 1.0),
        "episodes": n,
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
