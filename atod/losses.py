"""Advantages and the clipped surrogate loss of ATOD, as pure tensor functions (ATOD_METHOD.md).

    A_t      = kappa * A_opd_t + rho * A_grpo_i
    A_opd_t  = (lp_T(t) - lp_S(t)) * w_{k(t)}                 NOT z-scored (that would erase the teacher signal)
    A_grpo_i = (r_i - mean_j r_j) / (std_j r_j + eps)         over the G rollouts of the same task

The loss is the PPO/GRPO clipped surrogate with ratio pi_theta / pi_old, averaged over each
trajectory's generated tokens first (a trajectory may span several rows) and then over trajectories.
Zero-variance groups are kept: their GRPO advantage is 0 but the OPD term still teaches.

Not the paper's method, an extra ablation (`opd_full`, `atod_full`): the OPD term as the exact
reverse KL of the next-token distributions at every generated position, a loss added to the surrogate
instead of a one-sample advantage:

    L_kl = kappa * mean over trajectories of mean_{t} w_{k(t)} * KL(pi_theta(.|s_t) || pi_T(.|s_t))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def grpo_advantages(rewards_E: torch.Tensor, group_E: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Group-normalised episode advantages.

    rewards_E: (E,) float episode rewards; group_E: (E,) long group ids (episodes of the same task share
    one). Returns A_E: (E,) float32, (r - mean_g) / (std_g + eps) with the unbiased (n - 1) standard
    deviation, as torch.std; a group of one episode gets advantage 0.
    """
    rewards_E = rewards_E.float()
    if rewards_E.dim() != 1 or rewards_E.shape != group_E.shape:
        raise ValueError(f"rewards and groups must be 1-D of equal length, got {tuple(rewards_E.shape)}, "
                         f"{tuple(group_E.shape)}")
    _, inverse_E = torch.unique(group_E, return_inverse=True)
    num_groups = int(inverse_E.max().item()) + 1 if inverse_E.numel() else 0
    count_G = torch.zeros(num_groups).index_add_(0, inverse_E, torch.ones_like(rewards_E))
    mean_G = torch.zeros(num_groups).index_add_(0, inverse_E, rewards_E) / count_G
    sq_G = torch.zeros(num_groups).index_add_(0, inverse_E, (rewards_E - mean_G[inverse_E]) ** 2)
    std_G = torch.where(count_G > 1, (sq_G / (count_G - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq_G))
    return (rewards_E - mean_G[inverse_E]) / (std_G[inverse_E] + eps)


def hybrid_advantages(
    *,
    kappa: float,
    rho: float,
    loss_mask_B_T: torch.Tensor,
    episode_index_B: torch.Tensor,
    grpo_advantages_E: torch.Tensor | None = None,
    student_logprobs_B_T: torch.Tensor | None = None,
    teacher_logprobs_B_T: torch.Tensor | None = None,
    weights_B_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token advantage A_t = kappa * (lp_T - lp_S) * w + rho * A_grpo[episode(row)].

    The OPD term needs student/teacher log-probs (only read when kappa > 0; w defaults to 1); the GRPO
    term needs grpo_advantages_E (only read when rho > 0). Returns A_B_T float32, 0 off the loss mask.
    """
    mask_B_T = loss_mask_B_T.bool()
    adv_B_T = torch.zeros(mask_B_T.shape, dtype=torch.float32, device=mask_B_T.device)
    if kappa != 0.0:
        if student_logprobs_B_T is None or teacher_logprobs_B_T is None:
            raise ValueError("kappa > 0 needs the student's and the teacher's log-probs (teacher scoring missing)")
        opd_B_T = teacher_logprobs_B_T.float() - student_logprobs_B_T.float()
        if weights_B_T is not None:
            opd_B_T = opd_B_T * weights_B_T.float()
        adv_B_T = adv_B_T + kappa * opd_B_T
    if rho != 0.0:
        if grpo_advantages_E is None:
            raise ValueError("rho > 0 needs the GRPO episode advantages")
        adv_B_T = adv_B_T + rho * grpo_advantages_E.float()[episode_index_B][:, None]
    return torch.where(mask_B_T, adv_B_T, torch.zeros_like(adv_B_T))


@dataclass
class SurrogateStats:
    """Token-level diagnostics of one loss call (plain floats; `num_tokens` to weight across chunks)."""

    clip_fraction: float  # share of tokens where the clipped branch was taken (gradient cut)
    ratio_mean: float  # mean pi_theta / pi_old
    approx_kl: float  # mean (old - new) log-prob: KL(pi_old || pi_theta) estimate
    num_tokens: int


def clipped_surrogate_loss(
    logprobs_B_T: torch.Tensor,
    old_logprobs_B_T: torch.Tensor,
    advantages_B_T: torch.Tensor,
    loss_mask_B_T: torch.Tensor,
    episode_index_B: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    num_episodes: int | None = None,
    tokens_per_episode_E: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SurrogateStats]:
    """PPO/GRPO clipped surrogate, token-mean per trajectory then mean over trajectories.

    per token:  l_t = -min(eta_t * A_t, clip(eta_t, 1 - eps, 1 + eps) * A_t),  eta_t = exp(lp_t - old_lp_t)
    loss = sum over episodes e of mean_{t in e} l_t, divided by `num_episodes` (default: the number of
    distinct episodes with generated tokens in this batch). Passing the full batch's episode count lets
    a trainer sum the losses of episode chunks (microbatches) to exactly the full-batch loss; passing
    also `tokens_per_episode_E` (E_total,) - each episode's generated-token count in the FULL batch,
    indexed by episode id - makes any split of rows (even one episode over several chunks) exact.

    logprobs_B_T: (B, T) current policy log-probs (with grad); old_logprobs_B_T, advantages_B_T:
    (B, T) detached; loss_mask_B_T: (B, T) bool; episode_index_B: (B,) long. Returns (scalar loss, stats).
    """
    mask_B_T = loss_mask_B_T.bool()
    log_ratio_B_T = torch.where(mask_B_T, logprobs_B_T - old_logprobs_B_T.detach(), torch.zeros_like(logprobs_B_T))
    ratio_B_T = log_ratio_B_T.exp()
    adv_B_T = advantages_B_T.detach()
    unclipped_B_T = ratio_B_T * adv_B_T
    clipped_B_T = ratio_B_T.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv_B_T
    per_token_B_T = -torch.minimum(unclipped_B_T, clipped_B_T)

    loss = episode_token_mean(per_token_B_T, mask_B_T, episode_index_B, num_episodes=num_episodes,
                              tokens_per_episode_E=tokens_per_episode_E)

    with torch.no_grad():
        n = int(mask_B_T.sum())
        was_clipped_B_T = (clipped_B_T < unclipped_B_T) & mask_B_T
        stats = SurrogateStats(
            clip_fraction=float(was_clipped_B_T.sum()) / max(n, 1),
            ratio_mean=float(ratio_B_T[mask_B_T].sum()) / max(n, 1),
            approx_kl=float(-log_ratio_B_T[mask_B_T].sum()) / max(n, 1),
            num_tokens=n,
        )
    return loss, stats


def episode_token_mean(
    per_token_B_T: torch.Tensor,
    loss_mask_B_T: torch.Tensor,
    episode_index_B: torch.Tensor,
    *,
    num_episodes: int | None = None,
    tokens_per_episode_E: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over episodes of the mean of `per_token_B_T` over the episode's masked tokens, divided by
    `num_episodes` (default: the episodes with masked tokens in this batch). See clipped_surrogate_loss
    for `num_episodes` / `tokens_per_episode_E` (exact losses over chunks of rows).

    per_token_B_T: (B, T) float (may carry grad); loss_mask_B_T: (B, T) bool; episode_index_B: (B,) long.
    Returns a scalar.
    """
    mask_B_T = loss_mask_B_T.bool()
    num_rows_e = int(episode_index_B.max().item()) + 1 if episode_index_B.numel() else 0
    tokens_B = mask_B_T.sum(dim=1).float()
    row_sum_B = torch.where(mask_B_T, per_token_B_T, torch.zeros_like(per_token_B_T)).sum(dim=1)
    ep_sum_E = torch.zeros(num_rows_e, device=row_sum_B.device).index_add(0, episode_index_B, row_sum_B)
    ep_tokens_E = torch.zeros(num_rows_e, device=row_sum_B.device).index_add_(0, episode_index_B, tokens_B)
    has_tokens_E = ep_tokens_E > 0
    if tokens_per_episode_E is not None:
        ep_tokens_E = tokens_per_episode_E.to(ep_sum_E)[:num_rows_e]
    ep_mean_E = ep_sum_E[has_tokens_E] / ep_tokens_E[has_tokens_E]
    denom = num_episodes if num_episodes is not None else max(int(has_tokens_E.sum()), 1)
    return ep_mean_E.sum() / denom


def full_reverse_kl(student_logits_N_V: torch.Tensor, teacher_logits_N_V: torch.Tensor) -> torch.Tensor:
    """KL(pi_S || pi_T) of N next-token distributions, sum_v p_S(v) * (log p_S(v) - log p_T(v)).

    student_logits_N_V: (N, V) (may carry grad: the gradient is the exact one of the full KL, not a
    sampled estimate); teacher_logits_N_V: (N, V), used detached. Returns kl_N: (N,) float32, >= 0.
    """
    if student_logits_N_V.shape != teacher_logits_N_V.shape:
        raise ValueError(f"student and teacher logits must have the same shape (same vocabulary), got "
                         f"{tuple(student_logits_N_V.shape)} and {tuple(teacher_logits_N_V.shape)}")
    log_p_N_V = torch.log_softmax(student_logits_N_V.float(), dim=-1)
    log_q_N_V = torch.log_softmax(teacher_logits_N_V.detach().float(), dim=-1)
    return (log_p_N_V.exp() * (log_p_N_V - log_q_N_V)).sum(dim=-1)
