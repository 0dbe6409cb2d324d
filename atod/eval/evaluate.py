"""Held-out evaluation of one policy on one benchmark split.

`evaluate_policy` plays the first `cfg.tasks_per_split` tasks of a split (a fixed prefix, so every
model and the teacher see exactly the same tasks), `cfg.samples_per_task` episodes each, at
`agent.eval_temperature`, through `atod.agent.rollout.collect_rollouts`. Tasks are played in chunks
of `cfg.tasks_per_batch`; chunk k is sampled with seed `cfg.seed + k`, so the sampling seeds of a
task do not depend on the model either.

`summarize_episodes` is the pure part: success rate, mean score (WebShop's raw purchase score;
equal to success elsewhere), mean turns and invalid rate (invalid steps / steps, pooled), each with a
percentile bootstrap CI over episodes.

The result is a JSON-serialisable dict (see `evaluate_policy`); it keeps one small row per episode
so that `atod.eval.compare` can pair methods task by task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from atod.agent.config import AgentConfig
from atod.agent.rollout import collect_rollouts
from atod.envs.base import Benchmark, Task
from atod.eval.config import EvaluateConfig
from atod.eval.stats import bootstrap_ci, bootstrap_ratio_ci, derive_seed
from atod.types import EpisodeRecord

__all__ = ["bootstrap_ci", "episode_rows", "evaluate_policy", "flat_metrics", "pick_transcripts",
           "summarize_episodes"]


def _stat(mean: float, ci: tuple[float, float]) -> dict[str, Any]:
    return {"mean": float(mean), "ci": [float(ci[0]), float(ci[1])]}


def summarize_episodes(
    episodes: Sequence[EpisodeRecord], *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Success, score, turns and invalid rate of finished episodes, with bootstrap CIs over episodes.

    Returns `{"n_episodes", "n_tasks", "success", "score", "turns", "invalid_rate"}` where each
    metric is `{"mean": float, "ci": [low, high]}`. `invalid_rate` is total invalid steps over total
    steps (turns); episodes are the resampling unit. Each metric uses its own seed derived from
    `seed`, so adding a metric never changes another's interval.
    """
    if not episodes:
        raise ValueError("summarize_episodes got no episodes: nothing to evaluate")
    won_E = np.array([float(e.won) for e in episodes])
    score_E = np.array([float(e.score) for e in episodes])
    turns_E = np.array([float(e.num_turns) for e in episodes])
    invalid_E = np.array([float(e.invalid_steps) for e in episodes])
    total_turns = turns_E.sum()
    invalid_rate = float(invalid_E.sum() / total_turns) if total_turns > 0 else 0.0

    def ci(name: str, values: np.ndarray) -> tuple[float, float]:
        return bootstrap_ci(values, n_resamples, confidence, derive_seed(seed, name))

    return {
        "n_episodes": len(episodes),
        "n_tasks": len({(e.split, e.task_id) for e in episodes}),
        "success": _stat(won_E.mean(), ci("success", won_E)),
        "score": _stat(score_E.mean(), ci("score", score_E)),
        "turns": _stat(turns_E.mean(), ci("turns", turns_E)),
        "invalid_rate": _stat(
            invalid_rate,
            bootstrap_ratio_ci(invalid_E, turns_E, n_resamples, confidence, derive_seed(seed, "invalid_rate")),
        ),
    }


def episode_rows(episodes: Sequence[EpisodeRecord]) -> list[dict[str, Any]]:
    """One small JSON row per episode (no texts): what the comparison needs to pair tasks."""
    return [
        {
            "task_id": e.task_id,
            "split": e.split,
            "sample": int(e.sample),
            "won": bool(e.won),
            "score": float(e.score),
            "num_turns": int(e.num_turns),
            "invalid_steps": int(e.invalid_steps),
            "format_errors": int(e.format_errors),
        }
        for e in episodes
    ]


def pick_transcripts(episodes: Sequence[EpisodeRecord], k: int) -> list[str]:
    """Up to k rendered transcripts, alternating won and lost episodes (in episode order) so the
    artifact shows both; each starts with a one-line header naming the task and the outcome."""
    won = [e for e in episodes if e.won]
    lost = [e for e in episodes if not e.won]
    picked: list[EpisodeRecord] = []
    while len(picked) < k and (won or lost):
        for pool in (won, lost):
            if pool and len(picked) < k:
                picked.append(pool.pop(0))
    return [
        f"=== {e.benchmark}/{e.split} task {e.task_id} sample {e.sample}: "
        f"{'WON' if e.won else 'lost'}, score {e.score:.3f}, {e.num_turns} turns, "
        f"{e.invalid_steps} invalid ===\n{e.transcript()}"
        for e in picked
    ]


def evaluate_policy(
    model: torch.nn.Module,
    tokenizer: Any,
    benchmark: Benchmark,
    split: str,
    *,
    cfg: EvaluateConfig,
    agent: AgentConfig,
    device: torch.device | str,
    progress: bool = False,
    tasks: Sequence[Task] | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on the first `cfg.tasks_per_split` tasks of `benchmark`'s `split` (or on the
    given `tasks` of that split, e.g. the validation slice of the train split).

    Returns a JSON-serialisable dict:
      benchmark, split, temperature, samples_per_task, seed,
      n_episodes, n_tasks, success / score / turns / invalid_rate: {"mean", "ci": [low, high]},
      episodes: one row per episode (task_id, split, sample, won, score, num_turns, invalid_steps,
                format_errors), transcripts: up to `cfg.num_transcripts` rendered episodes.
    The model is put in eval mode for the call and restored to its previous mode afterwards.
    """
    if split not in benchmark.splits:
        raise ValueError(f"benchmark {benchmark.name!r} has no split {split!r}; splits: {', '.join(benchmark.splits)}")
    tasks = list(tasks) if tasks is not None else benchmark.tasks(split)[: cfg.tasks_per_split]
    if not tasks:
        raise ValueError(f"split {benchmark.name}/{split} has no tasks to evaluate")

    was_training = model.training
    model.eval()
    episodes: list[EpisodeRecord] = []
    try:
        with torch.no_grad():
            for chunk, start in enumerate(range(0, len(tasks), cfg.tasks_per_batch)):
                batch = collect_rollouts(
                    model,
                    tokenizer,
                    benchmark,
                    tasks[start : start + cfg.tasks_per_batch],
                    samples_per_task=cfg.samples_per_task,
                    temperature=agent.eval_temperature,
                    agent_cfg=agent,
                    seed=cfg.seed + chunk,
                    split=split,
                    device=device,
                    progress=progress,
                )
                episodes.extend(batch.episodes)
    finally:
        model.train(was_training)

    summary = summarize_episodes(
        episodes, n_resamples=cfg.bootstrap_samples, confidence=cfg.confidence,
        seed=derive_seed(cfg.seed, benchmark.name, split),
    )
    return {
        "benchmark": benchmark.name,
        "split": split,
        "temperature": agent.eval_temperature,
        "samples_per_task": cfg.samples_per_task,
        "seed": cfg.seed,
        **summary,
        "episodes": episode_rows(episodes),
        "transcripts": pick_transcripts(episodes, cfg.num_transcripts),
    }


def flat_metrics(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`{prefix}success`, `{prefix}success_ci_low`, ... as floats, for MLflow `log_metrics`."""
    out: dict[str, float] = {f"{prefix}n_episodes": float(result["n_episodes"])}
    for name in ("success", "score", "turns", "invalid_rate"):
        out[f"{prefix}{name}"] = float(result[name]["mean"])
        out[f"{prefix}{name}_ci_low"] = float(result[name]["ci"][0])
        out[f"{prefix}{name}_ci_high"] = float(result[name]["ci"][1])
    return out
