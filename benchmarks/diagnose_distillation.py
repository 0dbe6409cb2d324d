"""Why does (or doesn't) distillation help? Student-vs-teacher diagnostics on TRAINING tasks only (the
held-out slice of the train split, `train.eval_tasks`), for one or more student checkpoints.

    python benchmarks/diagnose_distillation.py data/models/student_sft data/runs/opd/alfworld/seed0/final \\
        [--benchmark alfworld] [--tasks 32] [--samples 2] [--temperatures 1.0 0.4] [--threads 1]

For each model and temperature: success, invalid-action rate and turns of its rollouts. On the rollouts
at the first temperature (the training one), at every generated token: the sampled-token KL estimate
lp_S - lp_T (what OPD's advantage uses), the full-distribution KL(student || teacher), both entropies and
whether the two top-1 tokens agree, split by the token's role in the action: markup (tags, spaces),
verb (first word), object (later words), number. Pass the teacher's directory as a model to see the
teacher on its own states. One JSON line per model.

`--handoff-turns 2 4 8`: can the teacher finish what the student starts? For each student model and each
k, episodes (at the first temperature) in which the student acts for k turns and the teacher from turn k
on; reported: the episodes the student had already ended, and the teacher's success and score on the
others (the episodes handed over), next to the teacher's own success, over all its episodes, within the
same number of turns left (limit - k) from the task's start. A teacher that wins less from the
student's turn-k states than from the start is a poor guide on the states on-policy distillation trains on.
"""

from __future__ import annotations

import argparse
import json

import torch

from atod.agent.models import load_model, load_tokenizer
from atod.agent.rollout import collect_rollouts
from atod.config import load_params
from atod.envs import load_benchmark
from atod.train.splits import split_validation


def token_roles(tokenizer, ids: list[int]) -> list[str]:
    """Role of each generated token of one turn: markup, verb (first word), object (later words), number."""
    roles, words = [], 0
    for i in ids:
        text = tokenizer.decode([i])
        s = text.strip()
        if not s or any(ch in s for ch in "<>/"):
            roles.append("markup")
        elif s.isdigit():
            roles.append("number")
        else:
            roles.append("verb" if words == 0 else "object")
            if words == 0 or text.startswith(" "):
                words += 1
    return roles


@torch.inference_mode()
def token_stats(student, teacher, batch, tokenizer, rows_per_pass: int = 16) -> dict[str, dict[str, float]]:
    acc: dict[str, list[float]] = {}
    B = batch.input_ids_B_T.shape[0]
    for s0 in range(0, B, rows_per_pass):
        r = slice(s0, min(s0 + rows_per_pass, B))
        L = int(batch.attention_mask_B_T[r].sum(-1).max())
        ids, attn = batch.input_ids_B_T[r, :L], batch.attention_mask_B_T[r, :L]
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        ls = torch.log_softmax(student(input_ids=ids, attention_mask=attn, position_ids=pos).logits.float(), -1)
        lt = torch.log_softmax(teacher(input_ids=ids, attention_mask=attn, position_ids=pos).logits.float(), -1)
        for i in range(ids.shape[0]):
            cols = torch.nonzero(batch.loss_mask_B_T[s0 + i, :L]).squeeze(1)
            if cols.numel() == 0:
                continue
            ps, pt = ls[i, cols - 1], lt[i, cols - 1]  # position c - 1 predicts token c
            tok = ids[i, cols]
            sampled_kl = ps.gather(-1, tok[:, None]).squeeze(-1) - pt.gather(-1, tok[:, None]).squeeze(-1)
            full_kl = (ps.exp() * (ps - pt)).sum(-1)
            h_s, h_t = -(ps.exp() * ps).sum(-1), -(pt.exp() * pt).sum(-1)
            agree = (ps.argmax(-1) == pt.argmax(-1)).float()
            for j, role in enumerate(token_roles(tokenizer, tok.tolist())):
                a = acc.setdefault(role, [0, 0.0, 0.0, 0.0, 0.0, 0.0])
                for k, v in enumerate((1.0, sampled_kl[j], full_kl[j], h_s[j], h_t[j], agree[j])):
                    a[k] += float(v)
    total = sum(a[1] for a in acc.values()) or 1.0
    return {role: {"tokens": int(a[0]), "kl_sampled": round(a[1] / a[0], 3), "kl_share": round(a[1] / total, 3),
                   "kl_full": round(a[2] / a[0], 3), "entropy_student": round(a[3] / a[0], 3),
                   "entropy_teacher": round(a[4] / a[0], 3), "top1_agree": round(a[5] / a[0], 3)}
            for role, a in sorted(acc.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="student checkpoint directories (or the teacher's)")
    ap.add_argument("--benchmark", default="alfworld")
    ap.add_argument("--teacher", default="data/models/teacher")
    ap.add_argument("--tasks", type=int, help="validation tasks (default: train.eval_tasks)")
    ap.add_argument("--samples", type=int, default=2, help="episodes per task and temperature")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.4])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--handoff-turns", type=int, nargs="*", default=[],
                    help="hand each student's episodes to the teacher after these numbers of turns")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = load_params("params.yaml")
    bench = load_benchmark(args.benchmark, f"data/benchmarks/{args.benchmark}")
    _, tasks = split_validation(bench.tasks("train"), args.tasks or p.train.eval_tasks)
    tokenizer = load_tokenizer(args.teacher)
    teacher = load_model(args.teacher, p.models.teacher)
    own = None
    for path in args.models:
        is_teacher = path.rstrip("/") == args.teacher.rstrip("/")
        spec = p.models.teacher if is_teacher else p.models.student
        model = load_model(path, spec)
        out = {"model": path}
        for n, temp in enumerate(args.temperatures):
            batch = collect_rollouts(model, tokenizer, bench, tasks, samples_per_task=args.samples, temperature=temp,
                                     agent_cfg=p.agent, seed=args.seed, split="train", device="cpu")
            eps = batch.episodes
            turns = sum(e.num_turns for e in eps)
            out[f"T={temp}"] = {"episodes": len(eps), "success": round(sum(e.won for e in eps) / len(eps), 3),
                                "invalid_rate": round(sum(e.invalid_steps for e in eps) / max(turns, 1), 3),
                                "turns": round(turns / len(eps), 1)}
            if n == 0:
                out[f"tokens at T={temp}"] = token_stats(model, teacher, batch, tokenizer)
                if is_teacher:  # the teacher alone from the start, which the hand-offs are compared with
                    own = eps
        if args.handoff_turns and not is_teacher:
            if own is None:  # the teacher alone, from the start, at the first temperature
                own = handoff_rollouts(teacher, teacher, 0, tokenizer, bench, tasks, args, p.agent)
            out["handoff"] = handoff_stats(model, teacher, own, tokenizer, bench, tasks, args, p.agent)
        print(json.dumps(out), flush=True)


def handoff_rollouts(first, teacher, k, tokenizer, bench, tasks, args, agent_cfg):
    """Episodes at the first temperature in which `first` acts for k turns, then the teacher."""
    return collect_rollouts(first, tokenizer, bench, tasks, samples_per_task=args.samples,
                            temperature=args.temperatures[0], agent_cfg=agent_cfg, seed=args.seed, split="train",
                            device="cpu", handoff=(k, teacher)).episodes


def handoff_stats(student, teacher, own, tokenizer, bench, tasks, args, agent_cfg) -> dict[str, dict[str, float]]:
    """Per k in --handoff-turns: the student acts for k turns, then the teacher (see the module doc);
    `own`: the teacher's episodes alone. The rates from the student's states are over the episodes
    handed over (those the student had not ended), the teacher's own over all of its episodes."""
    out = {}
    for k in args.handoff_turns:
        eps = handoff_rollouts(student, teacher, k, tokenizer, bench, tasks, args, agent_cfg)
        handed = [e for e in eps if e.num_turns > k]
        left = bench.max_turns - k
        out[f"k={k}"] = {
            "episodes": len(eps), "ended_by_student": len(eps) - len(handed),
            "teacher_success_from_student_state": round(sum(e.won for e in handed) / max(len(handed), 1), 3),
            "teacher_score_from_student_state": round(sum(e.score for e in handed) / max(len(handed), 1), 3),
            f"teacher_success_from_start_within_{left}_turns":
                round(sum(e.won and e.num_turns <= left for e in own) / len(own), 3),
        }
    return out


if __name__ == "__main__":
    main()
