"""Supervised fine-tuning on (prompt, response) pairs: expert demonstrations and SeqKD.

Three uses, one loop (`train_sft`):
- the teacher: a tiny model trained on noisy expert demonstrations of every benchmark's train split,
  deliberately imperfect (the noise is taken as a label too, so the teacher keeps some bad habits);
- the student's starting point: a smaller model warmed up just enough to follow the answer format;
- the `seqkd` baseline: the student fine-tuned on the teacher's cached trajectories
  (`atod.train.teacher_cache.TeacherCache.sft_examples`).

Prompts are rendered exactly as in the rollouts (`atod.agent.prompts.render_prompt` through the chat
template with the generation prompt, `atod.agent.rollout.encode_prompt`), and the loss covers the
assistant response tokens (`<action>...</action>`, or the Search-QA tag string), plus
`prompt_loss_weight` x a language-model loss on the prompt tokens when that is above 0 (default 0). No end-of-turn
token is trained: generation stops on the closing tag.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from atod.agent.config import AgentConfig
from atod.agent.prompts import render_prompt
from atod.agent.rollout import collect_rollouts, encode_prompt
from atod.envs.base import Benchmark, Task
from atod.train.checkpoint import (
    find_checkpoint,
    remove_stale_temporaries,
    resume_checkpoint,
    save_checkpoint,
)
from atod.train.config import SFTRun, SFTSteps
from atod.train.relabel import YEARS, relabel_episode
from atod.train.splits import split_validation

LogFn = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class SFTExample:
    """One supervised pair: the user message of one step and the assistant's response."""

    prompt: str
    response: str
    benchmark: str = ""
    task_id: str = ""


def action_response(benchmark: str, action: str) -> str:
    """The assistant response that carries `action`: `<action>{action}</action>`, or for Search-QA the
    canonical tag string itself (`<search>q</search>` / `<answer>a</answer>`)."""
    return action if benchmark == "searchqa" else f"<action>{action}</action>"


def expert_demonstrations(
    benchmark: Benchmark,
    split: str = "train",
    *,
    n_episodes: int,
    noise: float,
    seed: int,
    agent_cfg: AgentConfig,
    tasks: Sequence[Task] | None = None,
    relabel: bool = False,
    progress: bool = False,
) -> tuple[list[SFTExample], dict[str, float]]:
    """Play `n_episodes` episodes with the benchmark's scripted expert (a random action with
    probability `noise` per step) on tasks of `split` (or on `tasks`, a subset of it; a seeded
    permutation, cycled if needed) and return one (prompt, response) example per step, plus stats
    (episodes, steps, expert success rate). Deterministic in `seed`. `relabel`: each episode's texts
    renamed and renumbered (`atod.train.relabel.relabel_episode`, its own seeded stream, so the
    episodes played are the same with and without it). `progress`: a progress bar over the episodes."""
    tasks = list(benchmark.tasks(split) if tasks is None else tasks)
    if not tasks:
        raise ValueError(f"benchmark {benchmark.name!r} has no tasks in split {split!r}")
    rng = random.Random(f"sft-demos-{benchmark.name}-{split}-{seed}")
    order = list(range(len(tasks)))
    rng.shuffle(order)
    relabel_rng = random.Random(f"sft-relabel-{benchmark.name}-{split}-{seed}")
    terms = benchmark.copy_terms() if relabel else []
    examples: list[SFTExample] = []
    won = 0
    env = benchmark.make_env()
    for i in tqdm(range(n_episodes), desc=f"demonstrations {benchmark.name}", disable=not progress,
                  dynamic_ncols=True, leave=False):
        task = tasks[order[i % len(order)]]
        result = env.reset(task)
        history: list[tuple[str, str]] = []
        episode: list[tuple[str, str]] = []
        for turn in range(benchmark.max_turns):
            prompt = render_prompt(benchmark.name, task.goal, history, result.observation, result.admissible_actions,
                                   step=turn, history_length=agent_cfg.history_length, think=agent_cfg.think)
            action = env.expert_action(rng, noise)
            episode.append((prompt, action_response(benchmark.name, action)))
            previous = result.observation
            result = env.step(action)
            history.append((previous, action))
            if result.done:
                break
        if relabel:
            texts = relabel_episode([t for pair in episode for t in pair], terms, relabel_rng,
                                    YEARS.get(benchmark.name))
            episode = list(zip(texts[::2], texts[1::2], strict=True))
        examples += [SFTExample(p, r, benchmark.name, task.task_id) for p, r in episode]
        won += int(result.info.won)
    stats = {"episodes": float(n_episodes), "steps": float(len(examples)),
             "expert_success": won / max(n_episodes, 1)}
    return examples, stats


def unused_tasks(tasks: Sequence[Task], examples: Sequence[SFTExample], n: int) -> list[Task]:
    """The first `n` of `tasks` (in order) that no example was demonstrated on: where a warm-up checks
    itself on training tasks it has not seen."""
    used = {e.task_id for e in examples}
    return [t for t in tasks if t.task_id not in used][:n]


def warmup_demonstrations(benchmark: Benchmark, run: SFTRun, seed: int, *, agent_cfg: AgentConfig,
                          holdout: int = 0, progress: bool = False,
                          ) -> tuple[list[Task], list[SFTExample], dict[str, float]]:
    """What a warm-up draws on: (the train tasks it may use, i.e. the split minus its last `holdout`
    tasks, the validation slice `train` holds out; `run.episodes_per_benchmark` expert demonstrations
    at `run.expert_noise` on them; their stats)."""
    pool = benchmark.tasks("train")
    if holdout:
        pool, _ = split_validation(pool, holdout)
    demos, stats = expert_demonstrations(benchmark, "train", n_episodes=run.episodes_per_benchmark,
                                         noise=run.expert_noise, seed=seed, agent_cfg=agent_cfg, tasks=pool,
                                         relabel=run.relabel_terms, progress=progress)
    return list(pool), demos, stats


def tokenize_examples(
    tokenizer, examples: Sequence[SFTExample], *, max_prompt_tokens: int, max_response_tokens: int
) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per example: the chat-templated prompt (cut from the left like in the
    rollouts) followed by the response tokens (cut at `max_response_tokens`)."""
    responses = tokenizer([e.response for e in examples], add_special_tokens=False)["input_ids"]
    out = []
    for ex, r_ids in zip(examples, responses, strict=True):
        p_ids = encode_prompt(tokenizer, ex.prompt, max_prompt_tokens)
        out.append((p_ids + list(r_ids[:max_response_tokens]), len(p_ids)))
    return out


def _lr_factor(step: int, run: SFTSteps) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to 10% at `steps`."""
    if step < run.warmup_steps:
        return (step + 1) / (run.warmup_steps + 1)
    p = min((step - run.warmup_steps) / max(run.steps - run.warmup_steps, 1), 1.0)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * p))


def collate(items: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LEFT-padded (input_ids_B_T, attention_mask_B_T, labels_B_T); labels are -100 except on response
    tokens. Left padding puts every response at the end of its row, so the loss needs the logits of the
    last few positions only (`sft_loss` asks the model for just those)."""
    T = max(len(ids) for ids, _ in items)
    ids_B_T = torch.full((len(items), T), pad_id, dtype=torch.long)
    attn_B_T = torch.zeros((len(items), T), dtype=torch.long)
    labels_B_T = torch.full((len(items), T), -100, dtype=torch.long)
    for b, (ids, p) in enumerate(items):
        start = T - len(ids)
        ids_B_T[b, start:] = torch.tensor(ids, dtype=torch.long)
        attn_B_T[b, start:] = 1
        labels_B_T[b, start + p:] = ids_B_T[b, start + p:]
    return ids_B_T, attn_B_T, labels_B_T


def sft_loss(model, ids_B_T: torch.Tensor, attn_B_T: torch.Tensor, labels_B_T: torch.Tensor,
             prompt_weight: float = 0.0) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over the response tokens (labels != -100), plus `prompt_weight` x
    the mean cross-entropy over the prompt tokens (every attended token after a row's first that is not
    a response token); returns (loss, n response tokens).

    ids_B_T, attn_B_T, labels_B_T: left-padded batch from `collate`.
    With `prompt_weight == 0` only the last K+1 positions' logits are computed (K = the longest
    response, which left padding puts at the end of every row): the vocabulary projection and the
    softmax skip the prompt. With `prompt_weight > 0` the model is also trained as a language model of
    its prompts (the observations: passages, product pages), which is where a model trained from
    scratch learns to look things up in its context and copy them."""
    labelled_T = (labels_B_T != -100).any(0)
    first = int(labelled_T.nonzero().min()) if labelled_T.any() else ids_B_T.shape[1] - 1
    keep = ids_B_T.shape[1] if prompt_weight > 0 else ids_B_T.shape[1] - first + 1
    position_ids_B_T = (attn_B_T.cumsum(-1) - 1).clamp(min=0)
    logits_B_K_V = model(input_ids=ids_B_T, attention_mask=attn_B_T, position_ids=position_ids_B_T,
                         use_cache=False, logits_to_keep=keep).logits
    targets_B_K = labels_B_T[:, -keep:][:, 1:]
    n = int((targets_B_K != -100).sum())
    logits_flat = logits_B_K_V[:, :-1].float().reshape(-1, logits_B_K_V.shape[-1])
    loss = torch.nn.functional.cross_entropy(logits_flat, targets_B_K.reshape(-1), ignore_index=-100,
                                             reduction="sum") / max(n, 1)
    if prompt_weight > 0:
        # prompt targets: attended tokens whose predecessor is attended too, minus the response tokens
        prompt_B_T1 = (attn_B_T[:, 1:] * attn_B_T[:, :-1]).bool() & (labels_B_T[:, 1:] == -100)
        prompt_targets = ids_B_T[:, 1:].masked_fill(~prompt_B_T1, -100)
        m = int(prompt_B_T1.sum())
        prompt_ce = torch.nn.functional.cross_entropy(logits_flat, prompt_targets.reshape(-1), ignore_index=-100,
                                                      reduction="sum") / max(m, 1)
        loss = loss + prompt_weight * prompt_ce
    return loss, n


def epoch_pool(benchmarks: Sequence[str], balance: str) -> list[int]:
    """Example indices that make one epoch. `benchmarks[i]` is example i's benchmark.

    'turns': every example once, `[0, 1, ..., n-1]`. 'benchmarks': each benchmark's examples repeated
    `round(largest count / its count)` times (at least once), in index order, so that every benchmark
    gives about as many sequences per epoch: counts a=4, b=1 -> [0, 1, 2, 3, 4, 4, 4, 4]."""
    if balance == "turns":
        return list(range(len(benchmarks)))
    if balance != "benchmarks":
        raise ValueError(f"balance must be 'turns' or 'benchmarks', got {balance!r}")
    counts: dict[str, int] = {}
    for b in benchmarks:
        counts[b] = counts.get(b, 0) + 1
    largest = max(counts.values(), default=0)
    repeats = {b: max(1, round(largest / n)) for b, n in counts.items()}
    return [i for i, b in enumerate(benchmarks) for _ in range(repeats[b])]


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           group_batches: int = 16) -> list[list[int]]:
    """One epoch of example indices in batches of `batch_size` (the last may be smaller), grouped by
    length like Hugging Face's `group_by_length`: shuffle, cut into groups of `group_batches` batches,
    sort each group by length, cut it into batches, shuffle the batches. Batches then hold examples of
    similar length (mixing WebShop's ~500-token prompts with ALFWorld's ~250 padded a batch to about
    twice its real tokens) while every example is still seen once per epoch in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch_size * group_batches
    batches = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g:g + group], key=lambda i: lengths[i])
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def train_sft(
    model,
    tokenizer,
    examples: Sequence[SFTExample],
    run: SFTSteps,
    seed: int,
    *,
    agent_cfg: AgentConfig | None = None,
    log: LogFn | None = None,
    log_every: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    check: Callable[[object], dict[str, float]] | None = None,
    checkpoint_dir: Path | str | None = None,
):
    """Fine-tune `model` in place on `examples` for `run.steps` AdamW steps of `run.sequences_per_step`
    sequences (seeded shuffles, epoch after epoch), loss on response tokens (plus `prompt_loss_weight` x
    the prompt LM loss), linear warmup then cosine decay. Logs {loss, lr, tokens_per_s, epoch} every `log_every` steps (default: steps / 100).
    Every `run.eval_every` steps (and at the end), `check(model)` (model in eval mode) returns metrics
    that are logged at that step too. Returns the model in eval mode. `run.steps == 0` returns the
    model untouched.

    `checkpoint_dir`: every `run.checkpoint_every` steps the model, optimizer, scheduler, RNG states, data
    order and the metrics logged so far are written there atomically (`atod.train.checkpoint`). A later
    call with the same directory, examples, run and seed continues from the last one: it first replays
    the saved metrics through `log`, then trains the remaining steps, and ends with bitwise the weights of
    an uninterrupted run (on CPU). A checkpoint written by a different run is an error. `check` and
    `checkpoint_dir` need a warm-up's settings (an SFTRun: `eval_every`, `checkpoint_every`)."""
    if (check is not None or checkpoint_dir is not None) and not isinstance(run, SFTRun):
        raise TypeError(f"train_sft: check and checkpoint_dir need an SFTRun (a warm-up's settings), got "
                        f"{type(run).__name__}")
    agent_cfg = agent_cfg or AgentConfig()
    if run.steps == 0:
        return model.eval()
    if not examples:
        raise ValueError("train_sft got no examples")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    max_positions = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    max_prompt = min(agent_cfg.max_prompt_tokens, max_positions - agent_cfg.max_new_tokens)
    data = tokenize_examples(tokenizer, examples, max_prompt_tokens=max_prompt,
                             max_response_tokens=agent_cfg.max_new_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    log_every = log_every or max(run.steps // 100, 1)

    torch.manual_seed(seed)
    rng = random.Random(f"sft-order-{seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, run))
    pool = epoch_pool([ex.benchmark for ex in examples], run.balance)
    lengths = [len(data[i][0]) for i in pool]
    batches: list[list[int]] = []
    epoch, start, loss_sum, loss_n = -1, 0, 0.0, 0
    history: list[tuple[int, dict[str, float]]] = []  # every (step, metrics) logged: replayed on resume
    # what a checkpoint must match to be continued (checkpoint_every changes nothing that is computed)
    identity = {"seed": seed, "examples": len(examples), "tokens": sum(len(ids) for ids, _ in data),
                "run": run.model_dump(mode="json", exclude={"checkpoint_every"})}
    found = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        remove_stale_temporaries(checkpoint_dir)
        found = find_checkpoint(checkpoint_dir)
    if found is not None:
        state = resume_checkpoint(found, identity, model=model, optimizer=optimizer, scheduler=scheduler,
                                  advice="delete it or use another checkpoint directory")
        start, epoch, batches = state["step"], state["epoch"], state["batches"]
        loss_sum, loss_n = state["loss_sum"], state["loss_n"]
        version, internal, gauss = state["order_rng"]
        rng.setstate((version, tuple(internal), gauss))
        history = [(step, metrics) for step, metrics in state["history"]]
        if log is not None:
            for step, metrics in history:
                log(metrics, step)

    def logged(metrics: dict[str, float], step: int) -> None:
        history.append((step, metrics))
        if log is not None:
            log(metrics, step)

    def save(step: int) -> None:
        save_checkpoint(checkpoint_dir, model=model, tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler,
                        trainer_state={"step": step, "epoch": epoch, "batches": batches, "loss_sum": loss_sum,
                                       "loss_n": loss_n, "order_rng": rng.getstate(), "history": history,
                                       "identity": identity})

    model.train()
    t_last, tokens_since = time.perf_counter(), 0
    bar = tqdm(range(start, run.steps), initial=start, total=run.steps, desc="sft", disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        if not batches:
            epoch += 1
            batches = length_grouped_batches(lengths, run.sequences_per_step, rng)
        batch = [data[pool[i]] for i in batches.pop()]
        ids_B_T, attn_B_T, labels_B_T = (x.to(device) for x in collate(batch, pad_id))
        loss, _ = sft_loss(model, ids_B_T, attn_B_T, labels_B_T, run.prompt_loss_weight)
        if not torch.isfinite(loss):
            raise RuntimeError(f"SFT loss is not finite at step {step + 1} (lr {scheduler.get_last_lr()[0]:.3g}); "
                               "lower sft lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        tokens_since += int(attn_B_T.sum())
        loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
        if (step + 1) % log_every == 0 or step + 1 == run.steps:
            now = time.perf_counter()
            metrics = {"loss": loss_sum / loss_n, "lr": lr, "tokens_per_s": tokens_since / max(now - t_last, 1e-9),
                       "epoch": float(epoch)}
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", epoch=epoch)
            logged(metrics, step + 1)
            t_last, tokens_since, loss_sum, loss_n = now, 0, 0.0, 0
        if check is not None and run.eval_every and ((step + 1) % run.eval_every == 0 or step + 1 == run.steps):
            checked = check(model.eval())
            model.train()
            bar.set_postfix(**{k.rsplit("/", 2)[-2]: f"{v:.2f}" for k, v in checked.items() if k.endswith("success")})
            logged(checked, step + 1)
        if checkpoint_dir is not None and run.checkpoint_every and (step + 1) % run.checkpoint_every == 0 \
                and step + 1 < run.steps:
            save(step + 1)
    return model.eval()


def sft_on_benchmarks(
    model,
    tokenizer,
    benchmarks: Sequence[Benchmark],
    run: SFTRun,
    seed: int,
    *,
    agent_cfg: AgentConfig,
    holdout: int = 0,
    log: LogFn | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_dir: Path | str | None = None,
) -> tuple[object, dict[str, float]]:
    """Stage helper: expert demonstrations on each benchmark's train split minus its last `holdout`
    tasks (`warmup_demonstrations`), mixed, then `train_sft` (continuing from `checkpoint_dir`'s
    checkpoint if there is one). The check plays train tasks outside that slice that no demonstration
    used. Returns (model, demo stats)."""
    examples: list[SFTExample] = []
    stats: dict[str, float] = {}
    unused: dict[str, list] = {}
    for bench in benchmarks:
        pool, demos, st = warmup_demonstrations(bench, run, seed, agent_cfg=agent_cfg, holdout=holdout,
                                                progress=progress)
        examples += demos
        stats.update({f"{bench.name}_{k}": v for k, v in st.items()})
        unused[bench.name] = unused_tasks(pool, demos, run.eval_tasks)
        stats[f"{bench.name}_check_tasks"] = float(len(unused[bench.name]))
    stats["examples"] = float(len(examples))

    def check(m) -> dict[str, float]:
        """Success at the evaluation temperature on train tasks that no demonstration used."""
        out = {}
        for bench in benchmarks:
            if not unused[bench.name]:
                continue
            episodes = collect_rollouts(m, tokenizer, bench, unused[bench.name], samples_per_task=1,
                                        temperature=agent_cfg.eval_temperature, agent_cfg=agent_cfg, seed=seed,
                                        split="train", device=next(m.parameters()).device).episodes
            out[f"check/{bench.name}/success"] = sum(e.won for e in episodes) / len(episodes)
            out[f"check/{bench.name}/mean_turns"] = sum(e.num_turns for e in episodes) / len(episodes)
        return out

    model = train_sft(model, tokenizer, examples, run, seed, agent_cfg=agent_cfg, log=log, device=device,
                      progress=progress, check=check if run.eval_every else None, checkpoint_dir=checkpoint_dir)
    return model, stats
