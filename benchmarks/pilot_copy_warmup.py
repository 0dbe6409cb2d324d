"""Pilot: can a teacher-sized tiny model learn to copy WebShop's product ids (or Search-QA's names) when
the tokenizer keeps them whole? Training tasks only.

    python benchmarks/pilot_copy_warmup.py VARIANT [STEPS] [BENCHMARK]
        (VARIANT: base | ids | ids_obs; STEPS 2000; BENCHMARK webshop | searchqa, default webshop)

A model of `models.teacher`'s architecture (seed 1) is warmed up from scratch on BENCHMARK's expert
demonstrations only (`sft_warmup.teacher` with STEPS steps, no periodic check), then plays 32 train
tasks that no demonstration used (the first 32 in split order, as the `sft_teacher` stage's own check)
at temperature 0.4, seed 7, and the copying statistics of `benchmarks/diagnose_copying.py` are printed
as one JSON line. (Until 2026-11-27 it played the last 32 train tasks, `split_validation`'s, of which
the demonstrations had used 14 of 32 on Search-QA: the 2026-11-26 results overstate success.)
- base: the shipped tokenizer (data/tokenizer), the shipped (reward) expert;
- ids: the same tokenizer plus the benchmark's `copy_terms()` as added tokens (every catalogue product id,
  lower- and upper-case: one token each instead of 8-10 pieces; Search-QA's name words), as
  `models.tokenizer.whole_terms: true` adds them (before that option existed the WebShop pilots added
  the ids as plain added tokens, not restricted to whole words);
- ids_obs: as ids, with the observable expert's demonstrations (`prepare.webshop.expert: observable`).
One thread; about 45 minutes each on the 2-core machine while other work runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from tokenizers import AddedToken

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_copying import summarise

from atod.agent.models import build_tiny_model, load_tokenizer
from atod.agent.rollout import collect_rollouts
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.sft import expert_demonstrations, train_sft, unused_tasks

VARIANTS = ("base", "ids", "ids_obs")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: python benchmarks/pilot_copy_warmup.py {{{'|'.join(VARIANTS)}}} [STEPS] [webshop|searchqa]")
    variant, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    name = sys.argv[3] if len(sys.argv) > 3 else "webshop"
    torch.set_num_threads(1)
    p = load_params("params.yaml")
    bench = load_benchmark(name, f"data/benchmarks/{name}")
    tok = load_tokenizer("data/tokenizer")
    if variant.endswith("_obs"):
        bench.expert = "observable"
    if variant.startswith("ids"):
        tok.add_tokens([AddedToken(t, single_word=True, normalized=False) for t in bench.copy_terms()])
    model = build_tiny_model(p.models.teacher, tok, seed=1)
    cfg = p.sft_warmup.teacher.model_copy(update={"steps": steps, "eval_every": 0})
    t0 = time.time()
    demos, _ = expert_demonstrations(bench, "train", n_episodes=cfg.episodes_per_benchmark, noise=cfg.expert_noise,
                                     seed=0, agent_cfg=p.agent)
    model = train_sft(model, tok, demos, cfg, 0, agent_cfg=p.agent, progress=False)
    sft_s = time.time() - t0
    tasks = unused_tasks(bench.tasks("train"), demos, 32)
    batch = collect_rollouts(model, tok, bench, tasks, samples_per_task=1, temperature=0.4, agent_cfg=p.agent,
                             seed=7, split="train", device="cpu")
    turns = [(t.action or "", t.prompt) for e in batch.episodes for t in e.turns]
    episodes = [(e.won, e.num_turns, e.invalid_steps) for e in batch.episodes]
    print(json.dumps({"variant": variant, "benchmark": name, "steps": steps, "vocab": len(tok), "sft_s": round(sft_s),
                      **summarise(turns, episodes),
                      "score": round(sum(e.score for e in batch.episodes) / len(batch.episodes), 3), "sample_actions": [t[0] for t in turns[:12]]}), flush=True)


if __name__ == "__main__":
    main()
