"""Can a model copy what its actions need from the prompt? Per benchmark, on TRAINING tasks only (the
held-out slice of the train split, `train.eval_tasks`):

    python benchmarks/diagnose_copying.py [data/models/teacher] [--benchmarks alfworld webshop searchqa]
        [--tasks 32] [--samples 1] [--temperature 0.4] [--threads 1]

Every action an agent takes names something it read: an admissible action (ALFWorld), a product id or
button shown on the page (WebShop), an entity from the question or a retrieved passage (Search-QA). For
each action verb (go, take, click, search, answer, ...) this prints how often the action's argument was
copied from the prompt: every word of it occurs in the prompt text (case-insensitive), next to the
invalid rate and success. The scripted expert's own actions on the same tasks are the reference (its
arguments always come from what it was shown, so its rate is 1 up to paraphrased search queries). One
JSON line per model and benchmark.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict

import torch

from atod.agent.models import load_model, load_tokenizer
from atod.agent.rollout import collect_rollouts
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.splits import split_validation

WORD = re.compile(r"[a-z0-9]+")
ACTION = re.compile(r"^\s*([a-z]+)\s*(?:\[(.*)\]|(.*))$", re.DOTALL)


def verb_and_argument(action: str) -> tuple[str, str]:
    """('click', 'b07c5unug6') for 'click[b07c5unug6]', ('go', 'to countertop 2') for 'go to countertop 2'."""
    text = action.strip().lower()
    for tag in ("search", "answer"):  # Search-QA's <search>q</search> / <answer>a</answer>, as the agent sends them
        if text.startswith(f"<{tag}>"):
            return tag, re.sub(rf"</?{tag}>", "", text).strip()
    match = ACTION.match(text)
    if match is None:
        return "other", text
    return match.group(1), (match.group(2) if match.group(2) is not None else match.group(3) or "").strip()


def copied(argument: str, prompt: str) -> bool:
    """Every word of the argument occurs in the prompt (case-insensitive); an empty argument is not a copy."""
    words = WORD.findall(argument.lower())
    seen = set(WORD.findall(prompt.lower()))
    return bool(words) and all(w in seen for w in words)


def summarise(turns: list[tuple[str, str]], episodes: list[tuple[bool, int, int]]) -> dict:
    """turns: (action or '', prompt); episodes: (won, turns, invalid steps)."""
    per_verb: dict[str, list[bool]] = defaultdict(list)
    for action, prompt in turns:
        if not action:
            per_verb["(no action)"].append(False)
            continue
        verb, argument = verb_and_argument(action)
        per_verb[verb].append(copied(argument, prompt))
    n_turns = sum(t for _, t, _ in episodes)
    return {"episodes": len(episodes), "success": round(sum(w for w, _, _ in episodes) / len(episodes), 3),
            "invalid_rate": round(sum(i for _, _, i in episodes) / max(n_turns, 1), 3),
            "copied_by_verb": {v: {"actions": len(c), "copied": round(sum(c) / len(c), 3)}
                               for v, c in sorted(per_verb.items(), key=lambda kv: -len(kv[1]))}}


def expert_turns(bench, tasks, seed: int) -> tuple[list[tuple[str, str]], list[tuple[bool, int, int]]]:
    """The scripted expert (no noise) on the tasks: its actions against the observation text it saw."""
    rng = random.Random(seed)
    turns, episodes = [], []
    for task in tasks:
        env = bench.make_env()
        result = env.reset(task)
        seen = [task.goal, result.observation, " | ".join(result.admissible_actions)]
        invalid = n = 0
        while not result.done:
            action = env.expert_action(rng, 0.0)
            if not action:
                break
            turns.append((action, "\n".join(seen)))
            result = env.step(action)
            n += 1
            invalid += int(result.info.invalid)
            seen += [result.observation, " | ".join(result.admissible_actions)]
        episodes.append((bool(result.info.won), n, invalid))
    return turns, episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["data/models/teacher"])
    ap.add_argument("--benchmarks", nargs="+", default=["alfworld", "webshop", "searchqa"])
    ap.add_argument("--tasks", type=int, help="validation tasks (default: train.eval_tasks)")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = load_params("params.yaml")
    for name in args.benchmarks:
        bench = load_benchmark(name, f"data/benchmarks/{name}")
        _, tasks = split_validation(bench.tasks("train"), args.tasks or p.train.eval_tasks)
        print(json.dumps({"model": "expert", "benchmark": name, **summarise(*expert_turns(bench, tasks, args.seed))}),
              flush=True)
        for path in args.models:
            spec = p.models.teacher if "teacher" in path else p.models.student
            model, tokenizer = load_model(path, spec), load_tokenizer(path)
            batch = collect_rollouts(model, tokenizer, bench, tasks, samples_per_task=args.samples,
                                     temperature=args.temperature, agent_cfg=p.agent, seed=args.seed, split="train",
                                     device="cpu")
            turns = [(t.action or "", t.prompt) for e in batch.episodes for t in e.turns]
            episodes = [(e.won, e.num_turns, e.invalid_steps) for e in batch.episodes]
            print(json.dumps({"model": path, "benchmark": name, "temperature": args.temperature,
                              **summarise(turns, episodes)}), flush=True)


if __name__ == "__main__":
    main()
