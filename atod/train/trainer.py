"""The one RL / on-policy distillation loop behind every trained method (grpo, opd, atod and ablations).

One rollout batch per training step:

    tasks  <- next `tasks_per_step` training tasks (seeded permutation, epoch after epoch)
    batch  <- student rollouts, `samples_per_task` (G) per task, at the train temperature
    lp_T   <- teacher log-probs of the sampled tokens           (only when kappa > 0; never for grpo)
    A_t    <- kappa * (lp_T - lp_S) * w_k + rho * A_grpo_i       (atod.losses, atod.tdur)
    loss   <- clipped surrogate with the rollout's log-probs as pi_old, chunks of episodes
              (+ kappa * w_k * KL(pi_theta || pi_T) over the full vocabulary, for the `*_full` ablation only)
    AdamW step with gradient clipping; `updates_per_step` > 1 deals the episodes into that many
    minibatches and takes one such step on each (PPO minibatches); then the LR schedule steps

Methods are settings of this loop (`METHODS`); they differ only in kappa/rho, in the OPD weights and,
for the extra `opd_full` / `atod_full` ablation (not the paper's method), in how the OPD term is taken:
the exact reverse KL of the next-token distributions as a loss instead of the sampled-token advantage.
The loop is written against a `rollout_fn(model, tasks, seed) -> RolloutBatch` and a `TeacherScorer`,
so `train()` (the benchmark entry point) and the tests (hand-built batches) share every line of it.

Determinism and resume: the task order and the rollout seed of step s depend only on (seed, s), and a
checkpoint holds the model, optimizer, scheduler, RNG states and the data order, so a killed run that
resumes from its last checkpoint ends with bitwise the same weights as an uninterrupted one (CPU).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from atod.agent.models import generated_logits, generated_logprobs, unwrap_model
from atod.envs.base import Task
from atod.losses import (
    clipped_surrogate_loss,
    episode_token_mean,
    full_reverse_kl,
    grpo_advantages,
    hybrid_advantages,
)
from atod.schedule import anneal_coefficients
from atod.tdur import tdur_token_weights_token_level, tdur_token_weights_turn_level
from atod.train.checkpoint import (
    atomic_write_dir,
    find_checkpoint,
    load_trainer_state,
    remove_stale_temporaries,
    resume_checkpoint,
    save_checkpoint,
)
from atod.train.config import TrainConfig
from atod.train.distributed import DataParallel, process_device, wrap_model
from atod.train.metrics_log import read_metrics_log
from atod.train.splits import split_validation
from atod.types import RolloutBatch

LogFn = Callable[[dict[str, float], int], None]
RolloutFn = Callable[[Any, list[Task], int], RolloutBatch]  # (model, tasks, seed) -> batch
EvalFn = Callable[[Any, int], dict[str, float]]  # (model, step) -> metrics with a "success" key


# --------------------------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class MethodSettings:
    """What distinguishes one trained method from another."""

    name: str
    annealed: bool  # kappa/rho follow train.anneal; otherwise fixed at (kappa, rho) below
    kappa: float
    rho: float
    weighting: Literal["uniform", "turn", "token"]  # OPD-term weights: w = 1, T-DUR per turn, per token
    # the OPD term: "sampled" = the paper's advantage kappa * (lp_T - lp_S) * w on the sampled token;
    # "full" = a loss kappa * w * KL(pi_theta || pi_T) over the whole vocabulary (needs the teacher's logits)
    distill: Literal["sampled", "full"] = "sampled"


METHODS: dict[str, MethodSettings] = {
    "grpo": MethodSettings("grpo", annealed=False, kappa=0.0, rho=1.0, weighting="uniform"),
    "opd": MethodSettings("opd", annealed=False, kappa=1.0, rho=0.0, weighting="uniform"),
    "atod": MethodSettings("atod", annealed=True, kappa=1.0, rho=1.0, weighting="turn"),
    "atod_no_anneal": MethodSettings("atod_no_anneal", annealed=False, kappa=1.0, rho=1.0, weighting="turn"),
    "atod_uniform": MethodSettings("atod_uniform", annealed=True, kappa=1.0, rho=1.0, weighting="uniform"),
    "atod_token": MethodSettings("atod_token", annealed=True, kappa=1.0, rho=1.0, weighting="token"),
    # not the paper's method: the same runs with the full-distribution KL as the OPD term
    "opd_full": MethodSettings("opd_full", annealed=False, kappa=1.0, rho=0.0, weighting="uniform", distill="full"),
    "atod_full": MethodSettings("atod_full", annealed=True, kappa=1.0, rho=1.0, weighting="turn", distill="full"),
}


def method_settings(method: str) -> MethodSettings:
    if method == "seqkd":
        raise ValueError("seqkd is supervised (SFT on cached teacher trajectories): use atod.train.sft, not the "
                         "RL trainer")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; trained methods: {', '.join(METHODS)}")
    return METHODS[method]


def coefficients(settings: MethodSettings, cfg: TrainConfig, step: int) -> tuple[float, float]:
    """(kappa, rho) of rollout batch `step` (0-based) for a method: the paper's global step s, which equals
    the optimizer step with `train.updates_per_step: 1` (the default)."""
    if not settings.annealed:
        return settings.kappa, settings.rho
    a = cfg.anneal
    return anneal_coefficients(step, anneal_steps=a.anneal_steps, kappa_init=a.kappa_init, kappa_min=a.kappa_min,
                               rho_init=a.rho_init, rho_max=a.rho_max, kind=a.kind)


def needs_teacher(settings: MethodSettings, cfg: TrainConfig) -> bool:
    """Whether any step of this run has kappa > 0 (so the teacher must be loaded)."""
    return any(coefficients(settings, cfg, s)[0] > 0 for s in range(cfg.steps))


def schedule_notes(methods: list[str], cfg: TrainConfig) -> list[str]:
    """Settings that are valid but probably not meant, one sentence each: an annealing horizon the run never
    reaches (kappa then ends above kappa_min, so the annealed methods anneal only part way), an LR warm-up
    that lasts the whole run. Printed by the train stage before any run starts."""
    notes = []
    annealed = [m for m in methods if m in METHODS and METHODS[m].annealed]
    if annealed and cfg.anneal.kind != "constant" and cfg.anneal.anneal_steps >= cfg.steps:
        kappa, rho = coefficients(METHODS[annealed[0]], cfg, cfg.steps - 1)
        notes.append(f"train.anneal.anneal_steps ({cfg.anneal.anneal_steps}) is not under train.steps ({cfg.steps}): "
                     f"{', '.join(annealed)} end at kappa {kappa:.3g}, rho {rho:.3g} instead of "
                     f"{cfg.anneal.kappa_min:g}, {cfg.anneal.rho_max:g} (the paper anneals over 80 of 150 steps)")
    if cfg.warmup_steps >= cfg.steps:
        notes.append(f"train.warmup_steps ({cfg.warmup_steps}) is not under train.steps ({cfg.steps}): the learning "
                     f"rate never reaches train.lr ({cfg.lr:g})")
    return notes


# ------------------------------------------------------------------------------------------ data order
class TaskSampler:
    """Training tasks in a seeded random order, epoch after epoch; the state is (epoch, cursor)."""

    def __init__(self, tasks: list[Task], tasks_per_step: int, seed: int):
        if not tasks:
            raise ValueError("no training tasks to sample from")
        self.tasks, self.tasks_per_step, self.seed = list(tasks), tasks_per_step, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.tasks)))
        random.Random(f"tasks-{self.seed}-{epoch}").shuffle(order)
        return order

    def next_tasks(self) -> list[Task]:
        out = []
        while len(out) < self.tasks_per_step:
            if self.cursor == len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            out.append(self.tasks[self._order[self.cursor]])
            self.cursor += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "num_tasks": len(self.tasks)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["num_tasks"] != len(self.tasks):
            raise ValueError(f"checkpoint was made with {state['num_tasks']} training tasks, now there are "
                             f"{len(self.tasks)}: cannot restore the data order")
        if not (state["epoch"] >= 0 and 0 <= state["cursor"] <= len(self.tasks)):
            raise ValueError(f"bad task sampler state in the checkpoint: epoch {state['epoch']}, cursor "
                             f"{state['cursor']} (need epoch >= 0 and 0 <= cursor <= {len(self.tasks)})")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._permutation(self.epoch)


def rollout_seed(seed: int, step: int, rank: int = 0) -> int:
    """Sampling seed of the rollouts of update `step` (of process `rank` of a data-parallel run): a function
    of (run seed, step, rank) only."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729 + 17) % (2**31 - 1)


# ------------------------------------------------------------------------------------------ helpers
class NonFiniteError(RuntimeError):
    """A loss term became NaN/Inf; the run stopped and the last good checkpoint is left as it was."""


def make_lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(cfg.steps - cfg.warmup_steps, 1)
        p = min((step - cfg.warmup_steps) / span, 1.0)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * p))

    return factor


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated by torch (GPU) or peak resident set size of the process (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _masked_mean_std(x_B_T: torch.Tensor, mask_B_T: torch.Tensor) -> tuple[float, float]:
    vals = x_B_T[mask_B_T].float()
    if vals.numel() == 0:
        return float("nan"), float("nan")
    return float(vals.mean()), float(vals.std(unbiased=False))


def _check_finite(name: str, x: torch.Tensor, step: int, mask: torch.Tensor | None = None) -> None:
    vals = x[mask] if mask is not None else x
    if not torch.isfinite(vals).all():
        raise NonFiniteError(f"non-finite {name} at step {step} ({int((~torch.isfinite(vals)).sum())} entries)")


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines of steps after `last_step` (written by a run killed before its next checkpoint),
    and a torn last line (see atod.train.metrics_log)."""
    if not path.exists():
        return
    keep = [r for r in read_metrics_log(path) if r.get("step", 0) <= last_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    tmp.replace(path)


def _save_model_dir(target: Path, model, tokenizer) -> None:
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)

    atomic_write_dir(target, write)


# ------------------------------------------------------------------------------------------ one step
def compute_advantages(
    batch: RolloutBatch, settings: MethodSettings, kappa: float, rho: float, adv_eps: float, step: int
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """Per-token advantages A_B_T of a scored batch, their diagnostics (T-DUR weights, KL, ...) and the
    OPD weights w_B_T (None when kappa is 0). For `distill="full"` methods the advantage holds only the
    GRPO term: their OPD term is the KL loss of `policy_update`, weighted by w_B_T."""
    mask_B_T = batch.loss_mask_B_T.bool()
    num_episodes = len(batch.episodes)
    ep_B = batch.episode_index_B
    lp_s_B_T = batch.old_logprobs_B_T.float()
    _check_finite("student rollout log-probs (old_logprobs)", lp_s_B_T, step, mask_B_T)
    stats: dict[str, float] = {}

    rewards_E = torch.tensor([e.reward for e in batch.episodes], dtype=torch.float32)
    groups_E = torch.tensor([e.group for e in batch.episodes], dtype=torch.long)
    grpo_E = grpo_advantages(rewards_E, groups_E, eps=adv_eps).to(lp_s_B_T.device)
    _check_finite("GRPO advantage (episode rewards)", grpo_E, step)

    lp_t_B_T, w_B_T = None, None
    if kappa > 0:
        if batch.teacher_logprobs_B_T is None:
            raise ValueError(f"step {step}: kappa = {kappa} > 0 but the batch was not scored by the teacher")
        lp_t_B_T = batch.teacher_logprobs_B_T.float()
        _check_finite("teacher log-probs (OPD term)", lp_t_B_T, step, mask_B_T)
        if settings.weighting == "turn":
            w_B_T = tdur_token_weights_turn_level(lp_s_B_T, lp_t_B_T, batch.turn_index_B_T, mask_B_T, ep_B,
                                                  num_episodes)
        elif settings.weighting == "token":
            w_B_T = tdur_token_weights_token_level(lp_s_B_T, lp_t_B_T, mask_B_T, ep_B, num_episodes)
        else:
            w_B_T = mask_B_T.float()
        stats["tdur_weight_mean"], stats["tdur_weight_std"] = _masked_mean_std(w_B_T, mask_B_T)
        stats["kl_teacher"], _ = _masked_mean_std(lp_s_B_T - lp_t_B_T, mask_B_T)
        opd_B_T = (lp_t_B_T - lp_s_B_T) * w_B_T
        stats["opd_adv_mean"], stats["opd_adv_std"] = _masked_mean_std(opd_B_T, mask_B_T)
    if settings.distill == "full":
        kappa = 0.0  # the OPD term is a loss, not part of the advantage
    adv_B_T = hybrid_advantages(kappa=kappa, rho=rho, loss_mask_B_T=mask_B_T, episode_index_B=ep_B,
                                grpo_advantages_E=grpo_E, student_logprobs_B_T=lp_s_B_T,
                                teacher_logprobs_B_T=lp_t_B_T, weights_B_T=w_B_T)
    _check_finite("hybrid advantage", adv_B_T, step, mask_B_T)
    stats["adv_mean"], stats["adv_std"] = _masked_mean_std(adv_B_T, mask_B_T)
    stats["grpo_adv_abs_mean"] = float(grpo_E.abs().mean())
    return adv_B_T, stats, w_B_T


@dataclass
class FullKLTerm:
    """The `distill="full"` OPD term of one update: kappa * w * KL(pi_theta || pi_T) per generated token.
    weights_B_T: (B, T) float, the batch's OPD weights; teacher_model: a causal LM with the student's vocabulary."""

    kappa: float
    weights_B_T: torch.Tensor
    teacher_model: Any


def row_chunks(lengths_B: torch.Tensor, token_budget: int) -> list[torch.Tensor]:
    """Split rows into chunks whose padded size (rows x longest row) stays within `token_budget`
    (a row longer than the budget is a chunk of its own). Rows are taken shortest first, so rows of
    similar length share a chunk and little padding is computed."""
    order_B = torch.argsort(lengths_B, stable=True).tolist()
    chunks, current, longest = [], [], 0
    for b in order_B:
        n = int(lengths_B[b])
        if current and (len(current) + 1) * max(longest, n) > token_budget:
            chunks.append(torch.tensor(current))
            current, longest = [], 0
        current.append(b)
        longest = max(longest, n)
    if current:
        chunks.append(torch.tensor(current))
    return chunks


def _zero_loss(model, ids_b_T: torch.Tensor, attn_b_T: torch.Tensor) -> torch.Tensor:
    """0 x the last position's logits: a pass through `model` (the DDP wrapper) whose gradients are zero,
    for a process whose last chunk has nothing to learn from (its gradient synchronisation must run)."""
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(unwrap_model(model).forward).parameters else {}
    return model(input_ids=ids_b_T, attention_mask=attn_b_T, use_cache=False, **keep).logits[:, -1].sum() * 0.0


def minibatch_rows(episode_index_B: torch.Tensor, num_episodes: int, updates: int) -> list[torch.Tensor]:
    """Rows of each of `updates` minibatches: episode e goes to minibatch e mod `updates`, so with episodes
    ordered task by task every minibatch mixes tasks and samples. episode_index_B: (B,) long. Returns
    `updates` long tensors of row indices (together every row exactly once)."""
    if not 1 <= updates <= num_episodes:
        raise ValueError(f"cannot deal {num_episodes} episodes into {updates} minibatches")
    return [torch.nonzero(episode_index_B % updates == i).squeeze(1) for i in range(updates)]


def policy_update(
    model,
    optimizer: torch.optim.Optimizer,
    batch: RolloutBatch,
    adv_B_T: torch.Tensor,
    cfg: TrainConfig,
    step: int,
    rows_R: torch.Tensor | None = None,
    full_kl: FullKLTerm | None = None,
    dp: DataParallel | None = None,
) -> dict[str, float]:
    """One optimizer step on a batch, or on its rows `rows_R` (a minibatch of whole episodes): the clipped
    surrogate accumulated over chunks of rows of at most `cfg.microbatch_tokens` padded tokens (normalised
    by the step's episode count and per-episode token counts, so the summed chunk losses equal the loss of
    the step's episodes taken at once), gradient clipping, AdamW. Raises NonFiniteError before stepping.
    `full_kl` adds the full-distribution KL loss (same normalisation) and reports its mean as `kl_full`.
    In a data-parallel run (`dp`; `model` is the DDP wrapper) each process passes its own episodes, the
    gradients are averaged over the processes before clipping, and the returned stats are this process's."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    mask_B_T = batch.loss_mask_B_T.bool()
    tokens_E = torch.zeros(len(batch.episodes), device=mask_B_T.device).index_add_(
        0, batch.episode_index_B, mask_B_T.sum(1).float())
    if rows_R is None:
        rows_R = torch.arange(mask_B_T.shape[0])
    rows_R = rows_R.to(mask_B_T.device)
    num_episodes = int(torch.unique(batch.episode_index_B[rows_R]).numel())
    lengths_B = batch.attention_mask_B_T.sum(1).cpu()  # right padding: the real length of each row
    total_loss, tokens, clip_tok, ratio_tok, kl_tok, kl_full_tok = 0.0, 0, 0.0, 0.0, 0.0, 0.0
    chunks = row_chunks(lengths_B[rows_R.cpu()], cfg.microbatch_tokens)
    if not chunks:  # (every process must reach the synchronising pass below)
        raise ValueError(f"step {step}: a policy update without rows")
    for i, chunk_b in enumerate(chunks):
        # DDP: the gradients accumulate locally and are averaged over the processes in the backward pass of
        # each process's last chunk (so the processes may have different numbers of chunks)
        last = i == len(chunks) - 1
        with model.no_sync() if dp is not None and not last else contextlib.nullcontext():
            rows_b = rows_R[chunk_b.to(mask_B_T.device)]
            t_max = int(lengths_B[rows_b.cpu()].max())
            mask_b_T = mask_B_T[rows_b, :t_max]
            ids_b_T, attn_b_T = batch.input_ids_B_T[rows_b, :t_max], batch.attention_mask_B_T[rows_b, :t_max]
            if not mask_b_T.any():
                if dp is not None and last:  # the averaging pass must run on every process: a zero loss
                    _zero_loss(model, ids_b_T[:1], attn_b_T[:1]).backward()
                continue
            if full_kl is None:
                lp_b_T = generated_logprobs(model, ids_b_T, attn_b_T, mask_b_T)
            else:  # one forward gives both the sampled tokens' log-probs and the full distributions
                log_p_n_V = torch.log_softmax(generated_logits(model, ids_b_T, attn_b_T, mask_b_T), dim=-1)
                lp_b_T = torch.zeros(mask_b_T.shape, dtype=torch.float32, device=mask_b_T.device).masked_scatter(
                    mask_b_T, log_p_n_V.gather(-1, ids_b_T[mask_b_T][:, None]).squeeze(-1))
            loss, st = clipped_surrogate_loss(lp_b_T, batch.old_logprobs_B_T[rows_b, :t_max],
                                              adv_B_T[rows_b, :t_max], mask_b_T, batch.episode_index_B[rows_b],
                                              clip_eps=cfg.clip_eps, num_episodes=num_episodes,
                                              tokens_per_episode_E=tokens_E)
            if full_kl is not None:
                tdev = full_kl.teacher_model.device
                with torch.no_grad():
                    teacher_n_V = generated_logits(full_kl.teacher_model, ids_b_T.to(tdev), attn_b_T.to(tdev),
                                                   mask_b_T.to(tdev)).to(log_p_n_V.device)
                kl_n = full_reverse_kl(log_p_n_V, teacher_n_V)
                kl_b_T = torch.zeros(mask_b_T.shape, dtype=torch.float32, device=mask_b_T.device).masked_scatter(
                    mask_b_T, kl_n)
                w_b_T = full_kl.weights_B_T[rows_b, :t_max].float()
                loss = loss + full_kl.kappa * episode_token_mean(w_b_T * kl_b_T, mask_b_T,
                                                                 batch.episode_index_B[rows_b],
                                                                 num_episodes=num_episodes,
                                                                 tokens_per_episode_E=tokens_E)
                kl_full_tok += float(kl_n.detach().sum())
            if not torch.isfinite(loss):
                bad_lp = not torch.isfinite(lp_b_T[mask_b_T]).all()
                term = "policy log-probs (model forward)" if bad_lp else "clipped surrogate (ratio x advantage)"
                raise NonFiniteError(f"non-finite loss at step {step}: {term}")
            loss.backward()
        total_loss += float(loss.detach())
        tokens += st.num_tokens
        clip_tok += st.clip_fraction * st.num_tokens
        ratio_tok += st.ratio_mean * st.num_tokens
        kl_tok += st.approx_kl * st.num_tokens
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteError(f"non-finite gradient norm at step {step} (loss {total_loss:.4g})")
    optimizer.step()
    n = max(tokens, 1)
    out = {"loss": total_loss, "grad_norm": float(grad_norm), "clip_fraction": clip_tok / n,
           "ratio_mean": ratio_tok / n, "approx_kl_old": kl_tok / n}
    if full_kl is not None:
        out["kl_full"] = kl_full_tok / n  # exact KL(pi_theta || pi_T) per token, before this step
    return out


def minibatch_updates(model, optimizer: torch.optim.Optimizer, batch: RolloutBatch, adv_B_T: torch.Tensor,
                      cfg: TrainConfig, step: int, full_kl: FullKLTerm | None = None,
                      dp: DataParallel | None = None) -> dict[str, float]:
    """`cfg.updates_per_step` optimizer steps on one rollout batch (`minibatch_rows`), pi_old the rollout
    policy throughout (so from the second minibatch on the ratio moves and the clip acts, as in PPO).
    Returns the steps' stats: loss and grad_norm averaged over the steps, the token stats token-weighted."""
    if cfg.updates_per_step == 1:
        return policy_update(model, optimizer, batch, adv_B_T, cfg, step, full_kl=full_kl, dp=dp)
    minibatches = minibatch_rows(batch.episode_index_B, len(batch.episodes), cfg.updates_per_step)
    parts = [policy_update(model, optimizer, batch, adv_B_T, cfg, step, rows_R, full_kl=full_kl, dp=dp)
             for rows_R in minibatches]
    tokens = [int(batch.loss_mask_B_T[rows_R].sum()) for rows_R in minibatches]
    n = max(sum(tokens), 1)
    out = {k: sum(p[k] for p in parts) / len(parts) for k in ("loss", "grad_norm")}
    for k in ("clip_fraction", "ratio_mean", "approx_kl_old", "kl_full"):
        if k in parts[0]:
            out[k] = sum(p[k] * t for p, t in zip(parts, tokens, strict=True)) / n
    return out


# ------------------------------------------------------------------------------------------ the loop
def run_training(
    *,
    method: str,
    model,
    tokenizer,
    train_tasks: list[Task],
    rollout_fn: RolloutFn,
    teacher,
    cfg: TrainConfig,
    seed: int,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    log: LogFn | None = None,
    resume: bool = True,
    eval_fn: EvalFn | None = None,
    progress: bool = True,
    data_parallel: DataParallel | None = None,
) -> dict[str, Any]:
    """Train `model` in place with `method` for `cfg.steps` updates; see the module docstring.

    rollout_fn(model, tasks, seed) -> RolloutBatch (samples_per_task rollouts of each task, groups =
    task index); teacher: a TeacherScorer (`.score(batch) -> (B, T)`), or None when kappa is 0 throughout.
    eval_fn(model, step) -> {"success": ..., ...} runs every `cfg.eval_every` updates and at the end; the
    best validation success keeps a copy of the model in `out_dir/best/`. `train` (below) trains on the
    train split minus its validation slice (`split_validation`), which is what eval_fn should play.

    Writes `out_dir/metrics.jsonl`, `out_dir/checkpoint/` (atomic, every `checkpoint_every` updates and
    at the end) and `out_dir/final/`. Returns a summary: method, seed, steps, resumed_from_step, final (the
    last update's metrics), best_val_success, best_step, out_dir, final_dir, best_dir, checkpoint_dir,
    metrics_path, wall_time_s.

    data_parallel: this process's place in a data-parallel run (atod.train.distributed; every process
    calls run_training with the same arguments): each rolls out its share of a step's tasks, DDP averages
    the gradients, and only process 0 validates (eval_fn), logs and writes files; the step's metrics are
    over every process's episodes (sums and maxima where noted, else means over the processes).
    """
    settings = method_settings(method)
    device = torch.device(device)
    dp = data_parallel
    main = dp is None or dp.is_main
    if dp is not None and cfg.tasks_per_step % dp.world_size:
        raise ValueError(f"train.tasks_per_step ({cfg.tasks_per_step}) must be a multiple of the {dp.world_size} "
                         "data-parallel processes (each rolls out an equal share of a step's tasks)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out_dir / "checkpoint", out_dir / "metrics.jsonl"
    if teacher is None and needs_teacher(settings, cfg):
        raise ValueError(f"method {method!r} uses the teacher (kappa > 0) but no teacher was given")
    if settings.distill == "full" and needs_teacher(settings, cfg):
        teacher_model = getattr(teacher, "model", None)
        if teacher_model is None or not hasattr(teacher_model, "get_output_embeddings"):
            raise ValueError(f"method {method!r} needs the teacher's full next-token distributions, so a teacher "
                             f"model in this process (LocalTeacher); {type(teacher).__name__} gives only sampled-"
                             f"token log-probs")
        v_s, v_t = (m.get_output_embeddings().weight.shape[0] for m in (model, teacher_model))
        if v_s != v_t:
            raise ValueError(f"method {method!r} compares full next-token distributions, but the student's output "
                             f"layer has {v_s} rows and the teacher's {v_t}: they need the same vocabulary size")
    # what a checkpoint must match to be resumed (knobs that only change speed or logging are left out)
    identity = {"method": method, "seed": seed, "benchmark": train_tasks[0].benchmark if train_tasks else None,
                "num_train_tasks": len(train_tasks),
                "train": cfg.model_dump(mode="json", exclude={"steps", "checkpoint_every", "eval_every", "eval_tasks",
                                                              "methods", "benchmarks", "seeds", "microbatch_tokens",
                                                              "parallel_runs"})}

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, make_lr_lambda(cfg))
    sampler = TaskSampler(train_tasks, cfg.tasks_per_step, seed)
    start_step, best = 0, {"success": None, "step": None}

    if main:
        remove_stale_temporaries(ckpt_path)
    if dp is not None:
        dp.barrier()
    found = find_checkpoint(ckpt_path) if resume else None
    if dp is not None:
        dp.barrier()  # every process has looked before process 0 removes anything below
    if found is not None:
        state = resume_checkpoint(found, identity, model=model, optimizer=optimizer, scheduler=scheduler,
                                  advice="use another out_dir or resume=False")
        sampler.load_state_dict(state["data_order"])
        start_step, best = state["step"], state["best"]
        if main:
            _truncate_metrics(metrics_path, start_step)
    elif main:
        for stale in (ckpt_path, ckpt_path.with_name("checkpoint.old"), out_dir / "best", out_dir / "final"):
            shutil.rmtree(stale, ignore_errors=True)
        metrics_path.unlink(missing_ok=True)
    ddp_model = wrap_model(model, dp)  # after the checkpoint is loaded: DDP starts from process 0's weights

    def checkpoint(step: int) -> None:
        if not main:
            return
        save_checkpoint(ckpt_path, model=model, tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler,
                        trainer_state={"step": step, "data_order": sampler.state_dict(), "best": best,
                                       "identity": identity})

    last_metrics: dict[str, float] = {}
    t_run = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start_step, desc=f"train {method}", disable=not (progress and main),
               dynamic_ncols=True)
    for s in range(start_step, cfg.steps):
        step = s + 1  # updates done after this iteration; what metrics are logged against
        t0 = time.perf_counter()
        kappa, rho = coefficients(settings, cfg, s)
        tasks = sampler.next_tasks()
        if dp is not None:
            tasks = dp.shard(tasks)

        model.eval()
        batch = rollout_fn(model, tasks, rollout_seed(seed, s, 0 if dp is None else dp.rank)).to(device)
        t_rollout = time.perf_counter()
        if kappa > 0:
            batch.teacher_logprobs_B_T = teacher.score(batch).to(device)
        t_teacher = time.perf_counter()

        try:
            adv_B_T, adv_stats, w_B_T = compute_advantages(batch, settings, kappa, rho, cfg.adv_eps, step)
            full_kl = FullKLTerm(kappa, w_B_T, teacher.model) if settings.distill == "full" and kappa > 0 else None
            upd = minibatch_updates(ddp_model, optimizer, batch, adv_B_T, cfg, step, full_kl=full_kl, dp=dp)
        except NonFiniteError as e:
            bar.close()
            last = find_checkpoint(ckpt_path)
            where = f"the last good checkpoint is {last} (step {load_trainer_state(last)['step']})" if last else \
                "no checkpoint was written yet"
            raise NonFiniteError(f"{e}; method {method}, kappa={kappa:.3g}, rho={rho:.3g}. Training stopped; "
                                 f"{where}") from None
        lr_used = optimizer.param_groups[0]["lr"]
        scheduler.step()
        t_end = time.perf_counter()

        mask_B_T = batch.loss_mask_B_T.bool()
        gen_tokens = int(mask_B_T.sum())
        eps = batch.episodes
        if dp is not None:
            eps = [e for part in dp.gather(eps) for e in part]
        metrics: dict[str, float] = {
            "reward": float(np.mean([e.reward for e in eps])),
            "success": float(np.mean([e.won for e in eps])),
            "score": float(np.mean([e.score for e in eps])),
            "turns": float(np.mean([e.num_turns for e in eps])),
            "format_error_rate": float(sum(e.format_errors for e in eps) / max(sum(e.num_turns for e in eps), 1)),
            "kappa": kappa,
            "rho": rho,
            "entropy": _masked_mean_std(-batch.old_logprobs_B_T.float(), mask_B_T)[0],
            **adv_stats,
            **upd,
            "lr": lr_used,
            "generated_tokens": float(gen_tokens),
            "tokens_per_s": gen_tokens / max(t_end - t0, 1e-9),
            "time_rollout_s": t_rollout - t0,
            "time_teacher_s": t_teacher - t_rollout,
            "time_update_s": t_end - t_teacher,
            "step_time_s": t_end - t0,
            "peak_mem_mb": peak_memory_mb(device),
        }
        if dp is not None:
            metrics = _merge_process_metrics(metrics, dp.gather(metrics))
        if main:
            _append_jsonl(metrics_path, {"step": step, **metrics})
            if log is not None:
                log(metrics, step)
        last_metrics = metrics

        if main and eval_fn is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            val = eval_fn(model, step)
            if "success" not in val:
                raise ValueError(f"eval_fn must return a dict with a 'success' key, got {sorted(val)}")
            val_metrics = {f"val_{k}": float(v) for k, v in val.items()}
            _append_jsonl(metrics_path, {"step": step, **val_metrics})
            if log is not None:
                log(val_metrics, step)
            if best["success"] is None or val["success"] > best["success"]:
                best = {"success": float(val["success"]), "step": step}
                _save_model_dir(out_dir / "best", model, tokenizer)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint(step)
        if dp is not None and (step % cfg.eval_every == 0 or step % cfg.checkpoint_every == 0 or step == cfg.steps):
            dp.barrier()  # the others wait while process 0 validates and writes

        bar.update(1)
        kl = metrics.get("kl_teacher", float("nan"))
        bar.set_postfix(reward=f"{metrics['reward']:.2f}", success=f"{metrics['success']:.2f}", kl=f"{kl:.3f}",
                        s_per_step=f"{metrics['step_time_s']:.2f}", mem_mb=f"{metrics['peak_mem_mb']:.0f}")
    bar.close()

    if main and (start_step < cfg.steps or not (out_dir / "final").exists()):
        _save_model_dir(out_dir / "final", model, tokenizer)
    if dp is not None:
        dp.barrier()
        best = dp.broadcast(best)  # process 0's validation decides the best step
    if start_step == cfg.steps:  # nothing left to do: report from the saved metrics
        last_metrics = _last_train_metrics(metrics_path)
    wall = time.perf_counter() - t_run
    if progress and main:
        tqdm.write(f"[{method}] {cfg.steps} steps done in {wall:.1f} s; peak memory {peak_memory_mb(device):.0f} MB; "
                   f"final model in {out_dir / 'final'}")
    return {
        "method": method,
        "seed": seed,
        "steps": cfg.steps,
        "resumed_from_step": start_step,
        "final": last_metrics,
        "best_val_success": best["success"],
        "best_step": best["step"],
        "out_dir": str(out_dir),
        "final_dir": str(out_dir / "final"),
        "best_dir": str(out_dir / "best") if best["step"] is not None else None,
        "checkpoint_dir": str(ckpt_path),
        "metrics_path": str(metrics_path),
        "wall_time_s": wall,
    }


# step metrics of a data-parallel run that are not a mean over the processes
_SUMMED = ("generated_tokens",)
_MAXED = ("time_rollout_s", "time_teacher_s", "time_update_s", "step_time_s", "peak_mem_mb")
_SHARED = ("kappa", "rho", "lr", "grad_norm")  # equal on every process (the gradients are synchronised)


def _merge_process_metrics(merged: dict[str, float], per_process: list[dict[str, float]]) -> dict[str, float]:
    """One data-parallel step's metrics from every process's: `merged` already holds the episode metrics
    over all processes' episodes (reward, success, score, turns, format_error_rate: kept); generated
    tokens are summed, times and peak memory take the slowest / largest process, tokens_per_s is the sum
    over the step's time, what every process shares is process 0's, every other statistic is the mean
    over the processes (loss, clip fraction, KL, advantage and weight statistics: not token-weighted)."""
    episode_keys = ("reward", "success", "score", "turns", "format_error_rate")
    out = dict(merged)
    for key in per_process[0]:
        if key in episode_keys:
            continue
        vals = [m[key] for m in per_process]
        if key in _SHARED:
            out[key] = vals[0]
        else:
            out[key] = sum(vals) if key in _SUMMED else max(vals) if key in _MAXED else sum(vals) / len(vals)
    out["tokens_per_s"] = out["generated_tokens"] / max(out["step_time_s"], 1e-9)
    return out


def _last_train_metrics(path: Path) -> dict[str, float]:
    last: dict[str, float] = {}
    if path.exists():
        for ln in path.read_text().splitlines():
            rec = json.loads(ln)
            if "reward" in rec:
                last = {k: v for k, v in rec.items() if k != "step"}
    return last


# ------------------------------------------------------------------------------------------ entry point
def train(
    method: str,
    benchmark,
    *,
    student_dir: str | Path,
    teacher_dir: str | Path | None,
    params,
    seed: int,
    out_dir: str | Path,
    log: LogFn | None = None,
    resume: bool = True,
    eval_fn: EvalFn | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the student in `student_dir` with `method` on `benchmark`'s train split.

    method: one of METHODS (grpo, opd, atod, atod_no_anneal, atod_uniform, atod_token; opd_full, atod_full).
    benchmark: an `atod.envs.Benchmark` (e.g. from `load_benchmark`).
    student_dir / teacher_dir: HF model directories (model + tokenizer; the teacher is only loaded when
    the method uses it, and must share the student's tokenizer and chat template).
    params: the resolved `atod.config.Params` (reads `train`, `agent`, `models`).
    Under `torchrun --nproc-per-node N` (or `accelerate launch --multi_gpu`), every process calls this and they train
    the run together (process_device; `train.processes_per_run` makes the train stage launch it).
    Returns run_training's summary dict.
    """
    from atod.agent.models import check_compatible, load_model, load_tokenizer
    from atod.agent.rollout import collect_rollouts
    from atod.agent.teacher import LocalTeacher

    settings = method_settings(method)
    cfg: TrainConfig = params.train
    device, dp = process_device(params.models)  # under torchrun (or accelerate launch --multi_gpu): one process per device
    processes = 1 if dp is None else dp.world_size
    if processes != cfg.processes_per_run:  # the processes' seeds and shares of the tasks depend on it
        raise ValueError(f"train.processes_per_run is {cfg.processes_per_run} but this run has {processes} "
                         "process(es): launch it with `torchrun --nproc-per-node "
                         f"{cfg.processes_per_run}` (the train stage does), or set train.processes_per_run")
    tokenizer = load_tokenizer(student_dir)
    teacher_needed = needs_teacher(settings, cfg)
    if teacher_needed:  # checked before any model is loaded
        if teacher_dir is None:
            raise ValueError(f"method {method!r} needs a teacher (kappa > 0) but teacher_dir is None")
        check_compatible(tokenizer, load_tokenizer(teacher_dir))
    model = load_model(student_dir, params.models.student, device=device)
    teacher = LocalTeacher(load_model(teacher_dir, params.models.teacher, device=device)) if teacher_needed else None

    def rollout_fn(policy, tasks: list[Task], rseed: int) -> RolloutBatch:
        return collect_rollouts(policy, tokenizer, benchmark, tasks, samples_per_task=cfg.samples_per_task,
                                temperature=params.agent.train_temperature, agent_cfg=params.agent, seed=rseed,
                                split="train", device=device)

    train_tasks, _ = split_validation(benchmark.tasks("train"), cfg.eval_tasks)
    return run_training(method=method, model=model, tokenizer=tokenizer, train_tasks=train_tasks,
                        rollout_fn=rollout_fn, teacher=teacher, cfg=cfg, seed=seed, out_dir=out_dir, device=device,
                        log=log, resume=resume, eval_fn=eval_fn, progress=progress, data_parallel=dp)
