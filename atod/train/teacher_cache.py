"""The teacher's own trajectories on training tasks, cached as parquet + a JSON manifest.

One cache directory per benchmark:

    episodes.parquet   one row per episode: task_id, group, sample, reward, won, score, num_turns, ...
    turns.parquet      one row per turn: episode, turn, prompt, response, action, observation, reward,
                       flags, prompt_token_ids, response_token_ids, response_logprobs (the teacher's
                       own temperature-1 log-probs of its sampled tokens)
    manifest.json      benchmark, tasks, samples, temperature, seed, success rate, mean reward, counts

The directory is written atomically (`atod.train.checkpoint.atomic_write_dir`: a temporary sibling, its
COMPLETE marker last, two renames), and `load_teacher_cache` reads only a complete one: the directory, or
its `.old` twin when a write was killed between the renames. Readers: `load_teacher_cache`, whose
`sft_examples()` feeds the `seqkd` baseline and whose `success_rate` is the teacher's train-set success.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from atod.agent.config import AgentConfig
from atod.envs.base import Benchmark
from atod.train.checkpoint import atomic_write_dir
from atod.train.complete import complete_dir
from atod.train.config import CacheTeacherConfig
from atod.train.sft import SFTExample
from atod.train.splits import split_validation
from atod.types import RolloutBatch

MANIFEST = "manifest.json"
CACHE_VERSION = 1


def cache_tasks(benchmark: Benchmark, n: int, seed: int, holdout: int = 0):
    """The first `n` training tasks of a seeded permutation (all of them if there are fewer), never one
    of the last `holdout` (the validation slice `train` holds out: `atod.train.splits.split_validation`)."""
    tasks = benchmark.tasks("train")
    if holdout:
        tasks, _ = split_validation(tasks, holdout)
    order = list(range(len(tasks)))
    random.Random(f"teacher-cache-{benchmark.name}-{seed}").shuffle(order)
    return [tasks[i] for i in order[:n]]


def batch_to_frames(batch: RolloutBatch) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(episodes, turns) tables of a rollout batch with per-turn rows (one row per (episode, turn))."""
    episodes = pd.DataFrame([{
        "episode": e, "benchmark": ep.benchmark, "split": ep.split, "task_id": ep.task_id, "group": ep.group,
        "sample": ep.sample, "reward": ep.reward, "won": ep.won, "score": ep.score, "num_turns": ep.num_turns,
        "invalid_steps": ep.invalid_steps, "format_errors": ep.format_errors,
    } for e, ep in enumerate(batch.episodes)])
    rows = []
    mask_B_T = batch.loss_mask_B_T.bool()
    for b in range(batch.input_ids_B_T.shape[0]):
        e = int(batch.episode_index_B[b])
        gen_T = mask_B_T[b]
        turn_ids = batch.turn_index_B_T[b][gen_T].unique().tolist()
        if len(turn_ids) > 1:
            raise ValueError("teacher cache expects one turn per row (per-turn prompts); got a row with turns "
                             f"{turn_ids}")
        n_real = int(batch.attention_mask_B_T[b].sum())
        first_gen = int(gen_T.nonzero()[0]) if gen_T.any() else n_real
        k = turn_ids[0] if turn_ids else len([r for r in rows if r["episode"] == e])
        turn = batch.episodes[e].turns[k]
        rows.append({
            "episode": e, "turn": k, "prompt": turn.prompt, "response": turn.response, "action": turn.action,
            "observation": turn.observation, "reward": turn.reward, "invalid": turn.invalid,
            "format_error": turn.format_error,
            "prompt_token_ids": batch.input_ids_B_T[b, :first_gen].tolist(),
            "response_token_ids": batch.input_ids_B_T[b][gen_T].tolist(),
            "response_logprobs": batch.old_logprobs_B_T[b][gen_T].float().tolist(),
        })
    return episodes, pd.DataFrame(rows)


def cache_teacher_trajectories(
    teacher,
    tokenizer,
    benchmark: Benchmark,
    *,
    cfg: CacheTeacherConfig,
    agent_cfg: AgentConfig,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    progress: bool = False,
    holdout: int = 0,
) -> dict[str, Any]:
    """Roll the teacher out on `cfg.tasks_per_benchmark` training tasks outside the last `holdout` (the
    validation slice; `cache_tasks`), `cfg.samples_per_task` each, at `cfg.temperature`, seed `cfg.seed`,
    and write the cache to `out_dir` atomically. Returns the manifest."""
    from atod.agent.rollout import collect_rollouts

    tasks = cache_tasks(benchmark, cfg.tasks_per_benchmark, cfg.seed, holdout)
    batch = collect_rollouts(teacher, tokenizer, benchmark, tasks, samples_per_task=cfg.samples_per_task,
                             temperature=cfg.temperature, agent_cfg=agent_cfg, seed=cfg.seed, split="train",
                             device=device, progress=progress)
    episodes, turns = batch_to_frames(batch)
    manifest = {
        "version": CACHE_VERSION,
        "benchmark": benchmark.name,
        "split": "train",
        "num_tasks": len(tasks),
        "samples_per_task": cfg.samples_per_task,
        "temperature": cfg.temperature,
        "seed": cfg.seed,
        "num_episodes": len(episodes),
        "num_turns": len(turns),
        "generated_tokens": int(batch.loss_mask_B_T.sum()),
        "success_rate": float(episodes["won"].mean()),
        "mean_reward": float(episodes["reward"].mean()),
        "mean_score": float(episodes["score"].mean()),
        "mean_turns": float(episodes["num_turns"].mean()),
        "files": ["episodes.parquet", "turns.parquet"],
    }

    def write(tmp: Path) -> None:
        episodes.to_parquet(tmp / "episodes.parquet", index=False)
        turns.to_parquet(tmp / "turns.parquet", index=False)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    atomic_write_dir(Path(out_dir), write)
    return manifest


@dataclass
class TeacherCache:
    """A loaded cache directory (see the module docstring)."""

    manifest: dict[str, Any]
    episodes: pd.DataFrame
    turns: pd.DataFrame

    @property
    def success_rate(self) -> float:
        """The teacher's success rate on the cached training episodes."""
        return float(self.episodes["won"].mean()) if len(self.episodes) else 0.0

    def sft_examples(self, successful_only: bool = True) -> list[SFTExample]:
        """(prompt, teacher response) pairs of every turn, for SeqKD.

        successful_only=True keeps the turns of won episodes only (rejection-sampled SeqKD: imitate the
        teacher where it succeeded); if the teacher won no episode it falls back to all episodes so that
        the baseline still trains."""
        keep = self.episodes
        if successful_only and bool(self.episodes["won"].any()):
            keep = self.episodes[self.episodes["won"]]
        chosen = self.turns[self.turns["episode"].isin(keep["episode"])]
        task_of = dict(zip(self.episodes["episode"], self.episodes["task_id"], strict=True))
        return [SFTExample(r.prompt, r.response, self.manifest["benchmark"], task_of[r.episode])
                for r in chosen.sort_values(["episode", "turn"]).itertuples()]


def load_teacher_cache(directory: str | Path) -> TeacherCache:
    """The complete cache at `directory` (or its `.old` twin: see the module docstring)."""
    requested = Path(directory)
    directory = complete_dir(requested, MANIFEST, "episodes.parquet", "turns.parquet")
    if directory is None:
        raise FileNotFoundError(f"no complete teacher cache at {requested} (its {MANIFEST}, parquet files and "
                                "COMPLETE marker, written last): run the cache_teacher stage")
    manifest = json.loads((directory / MANIFEST).read_text())
    if manifest.get("version") != CACHE_VERSION:
        raise ValueError(f"teacher cache {directory} has version {manifest.get('version')}, expected {CACHE_VERSION}: "
                         "re-run the cache_teacher stage")
    return TeacherCache(manifest, pd.read_parquet(directory / "episodes.parquet"),
                        pd.read_parquet(directory / "turns.parquet"))


def seqkd_examples(cache_dirs: list[str | Path], successful_only: bool = True) -> list[SFTExample]:
    """SeqKD training pairs from several benchmarks' caches (see TeacherCache.sft_examples); feed them
    to `atod.train.sft.train_sft` with `params.cache_teacher.seqkd`."""
    examples: list[SFTExample] = []
    for d in cache_dirs:
        examples += load_teacher_cache(d).sft_examples(successful_only=successful_only)
    return examples
