"""Which turn of an episode does a warmed-up model get wrong? Teacher-forced, on TRAINING tasks only:

    python benchmarks/diagnose_turns.py [data/models/teacher] [--role teacher] [--benchmarks searchqa webshop]
        [--tasks 150] [--holdout N] [--threads 1]

For each task the noise-free scripted expert plays the episode; at every turn the model is shown the
expert's history (the prompt the rollouts would render) and answers near-greedily (T = 0.05). A turn is
right when the model's action equals the expert's (whitespace around brackets and tags ignored, so the
whole-term tokenizer's `click[b0ae5rru5o ]` counts as `click[b0ae5rru5o]`). One JSON line per benchmark:
accuracy per turn index (turns 6+ pooled), per question template (Search-QA), and the share of episodes
with every turn right. `--seen` plays demonstrated tasks instead: right there but wrong on unseen
tasks means the model memorised its demonstrations.

The tasks are the ones the warm-up stage's own check plays: train tasks outside the validation slice
(`--holdout`, default `train.eval_tasks`; pass 0 for a model warmed up before 2026-11-27, when the
warm-ups still drew on the whole train split) that none of the `sft_warmup.<role>` demonstrations used,
recomputed from params.yaml. Where the model fails on turn 0 it cannot copy from the task text; where it
fails later it cannot find what it needs in the observation (a passage, a results page).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from atod.agent.models import load_model, load_tokenizer
from atod.agent.prompts import extract_action, render_prompt, stop_strings
from atod.agent.rollout import encode_prompt, sample_responses
from atod.agent.tokenizer import stop_token_ids
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.sft import action_response, unused_tasks, warmup_demonstrations

SEED_OFFSET = {"teacher": 0, "student": 1}  # as tasks/stages/sft.py


def normalise(action: str | None) -> str:
    """Action text with whitespace around brackets and tags removed and inner runs collapsed."""
    return " ".join(re.sub(r"\s*([\]\[<>])\s*", r"\1", action or "").split())


def arguments(description: str, tasks: int) -> argparse.ArgumentParser:
    """The command line both diagnoses share: model, --role, --tasks, --holdout, --threads."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("model", nargs="?", default="data/models/teacher")
    ap.add_argument("--role", choices=("teacher", "student"), default="teacher",
                    help="whose demonstrations to leave out (sft_warmup.<role>)")
    ap.add_argument("--tasks", type=int, default=tasks)
    ap.add_argument("--holdout", type=int, default=None, help="validation slice left out (default train.eval_tasks)")
    ap.add_argument("--threads", type=int, default=1)
    return ap


@dataclass
class Diagnosis:
    """A warmed-up model, params.yaml and what the warm-up of `role` demonstrated, for a diagnosis."""

    params: object
    role: str
    holdout: int
    tokenizer: object
    model: object
    generator: torch.Generator
    stop_ids: dict[str, list[int]] = field(default_factory=dict)  # per benchmark, computed on first use

    @classmethod
    def load(cls, args: argparse.Namespace) -> Diagnosis:
        torch.set_num_threads(args.threads)
        p = load_params("params.yaml")
        holdout = p.train.eval_tasks if args.holdout is None else args.holdout
        model = load_model(args.model, getattr(p.models, args.role), device="cpu").eval()
        return cls(p, args.role, holdout, load_tokenizer(args.model), model, torch.Generator().manual_seed(0))

    def demonstrations(self, bench):
        """(the train tasks the warm-up drew on, its demonstrations), recomputed from params.yaml."""
        pool, demos, _ = warmup_demonstrations(bench, getattr(self.params.sft_warmup, self.role),
                                               self.params.sft_warmup.seed + SEED_OFFSET[self.role],
                                               agent_cfg=self.params.agent, holdout=self.holdout)
        return pool, demos

    def act(self, benchmark: str, prompt: str) -> str:
        """The model's action for `prompt`, near-greedy (T = 0.05), normalised."""
        tok, agent = self.tokenizer, self.params.agent
        if benchmark not in self.stop_ids:
            self.stop_ids[benchmark] = stop_token_ids(tok, stop_strings(benchmark))
        response, _ = sample_responses(self.model, [encode_prompt(tok, prompt, agent.max_prompt_tokens)],
                                       stop_ids=self.stop_ids[benchmark],
                                       max_new_tokens=agent.max_new_tokens, temperature=0.05,
                                       generator=self.generator, pad_id=tok.pad_token_id)
        return normalise(extract_action(benchmark, tok.decode(response[0])))


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0], tasks=150)
    ap.add_argument("--benchmarks", nargs="+", default=None)
    ap.add_argument("--seen", action="store_true",
                    help="play demonstrated tasks instead (does the model fit its training set?)")
    args = ap.parse_args()
    d = Diagnosis.load(args)
    p = d.params
    for name in args.benchmarks or p.prepare.benchmarks:
        bench = load_benchmark(name, f"data/benchmarks/{name}")
        pool, demos = d.demonstrations(bench)
        if args.seen:
            demonstrated = {demo.task_id for demo in demos}
            tasks = [t for t in pool if t.task_id in demonstrated][:args.tasks]
        else:
            tasks = unused_tasks(pool, demos, args.tasks)
        by_turn: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_template: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        episodes_right, rng, env = 0, random.Random(0), bench.make_env()
        for task in tasks:
            result, history, all_right = env.reset(task), [], True
            for turn in range(bench.max_turns):
                prompt = render_prompt(name, task.goal, history, result.observation, result.admissible_actions,
                                       step=turn, history_length=p.agent.history_length, think=p.agent.think)
                expert = env.expert_action(rng, 0.0)
                right = d.act(name, prompt) == normalise(extract_action(name, action_response(name, expert)))
                for table, key in ((by_turn, str(min(turn, 6))), (by_template, task.payload.get("template", name))):
                    table[key][0] += right
                    table[key][1] += 1
                all_right &= right
                previous, result = result.observation, env.step(expert)
                history.append((previous, expert))
                if result.done:
                    break
            episodes_right += all_right
        print(json.dumps({
            "model": args.model, "benchmark": name, "tasks": len(tasks), "seen": args.seen, "holdout": d.holdout,
            "turn_accuracy": {k: round(r / n, 3) for k, (r, n) in sorted(by_turn.items(), key=lambda kv: int(kv[0]))},
            "turns": {k: n for k, (_, n) in sorted(by_turn.items(), key=lambda kv: int(kv[0]))},
            "template_accuracy": {k: round(r / n, 3) for k, (r, n) in sorted(by_template.items())},
            "episodes_all_right": round(episodes_right / max(len(tasks), 1), 3),
        }), flush=True)


if __name__ == "__main__":
    main()
