"""T-DUR: turn-level disagreement-uncertainty reweighting of the OPD term (ATOD_METHOD.md).

For each turn k of one trajectory, over its generated tokens t:

    d_k = mean_t |lp_S(t) - lp_T(t)|          disagreement with the teacher
    h_k = mean_t (-lp_S(t))                   uncertainty (sampled-token entropy estimate)
    x~_k = (x_k - min_j x_j) / (max_j x_j - min_j x_j)    within the trajectory; 0.5 if range < 1e-8
    w_k = 1 - (1 - d~_k) * (1 - h~_k)         soft OR, in [0, 1]; no renormalisation

Every token of turn k gets w_k. The token-level ablation (`atod_token`) applies the same formula to
single tokens (d_t = |lp_S - lp_T|, h_t = -lp_S, min-max over the trajectory's tokens).

Batched functions work on a RolloutBatch layout: rows b belong to episodes `episode_index_B`, and a
row may hold one turn or several (the grouping is by (episode, turn), never by row).
"""

from __future__ import annotations

import torch

RANGE_EPS = 1e-8


def _minmax_within(x_N: torch.Tensor, group_N: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Min-max scale `x_N` within each group (1-D, float); groups with range < 1e-8 get 0.5."""
    x_N = x_N.float()
    lo_G = torch.full((num_groups,), float("inf"), dtype=x_N.dtype, device=x_N.device)
    hi_G = torch.full((num_groups,), float("-inf"), dtype=x_N.dtype, device=x_N.device)
    lo_G = lo_G.scatter_reduce(0, group_N, x_N, reduce="amin", include_self=True)
    hi_G = hi_G.scatter_reduce(0, group_N, x_N, reduce="amax", include_self=True)
    lo_N, range_N = lo_G[group_N], (hi_G - lo_G)[group_N]
    flat_N = range_N < RANGE_EPS
    scaled_N = (x_N - lo_N) / torch.where(flat_N, torch.ones_like(range_N), range_N)
    return torch.where(flat_N, torch.full_like(x_N, 0.5), scaled_N)


def soft_or(d_N: torch.Tensor, h_N: torch.Tensor) -> torch.Tensor:
    """w = 1 - (1 - d) * (1 - h) for scaled d, h in [0, 1]."""
    return 1.0 - (1.0 - d_N) * (1.0 - h_N)


def tdur_weights(d_K: torch.Tensor, h_K: torch.Tensor) -> torch.Tensor:
    """T-DUR weights of the K turns of ONE trajectory.

    d_K: (K,) per-turn disagreement, h_K: (K,) per-turn uncertainty. Returns w_K: (K,) float32 in [0, 1].
    """
    if d_K.shape != h_K.shape or d_K.dim() != 1:
        raise ValueError(f"d and h must be 1-D tensors of the same shape, got {tuple(d_K.shape)} and {tuple(h_K.shape)}")
    if d_K.numel() == 0:
        return torch.zeros(0, dtype=torch.float32)
    group_K = torch.zeros(d_K.shape[0], dtype=torch.long, device=d_K.device)
    return soft_or(_minmax_within(d_K, group_K, 1), _minmax_within(h_K, group_K, 1))


def turn_statistics(
    student_logprobs_B_T: torch.Tensor,
    teacher_logprobs_B_T: torch.Tensor,
    turn_index_B_T: torch.Tensor,
    loss_mask_B_T: torch.Tensor,
    episode_index_B: torch.Tensor,
    num_episodes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-turn (d, h, token count) of every episode.

    Returns d_E_K, h_E_K (float32) and n_E_K (long), K = 1 + the largest turn index in the batch;
    entries of turns without generated tokens are 0 with n = 0.
    """
    mask_B_T = loss_mask_B_T.bool() & (turn_index_B_T >= 0)
    num_turns = int(turn_index_B_T[mask_B_T].max().item()) + 1 if mask_B_T.any() else 1
    flat_B_T = episode_index_B[:, None] * num_turns + turn_index_B_T.clamp(min=0)
    flat_N, m_N = flat_B_T[mask_B_T], mask_B_T.new_ones(int(mask_B_T.sum()))
    lp_s_N = student_logprobs_B_T[mask_B_T].float()
    lp_t_N = teacher_logprobs_B_T[mask_B_T].float()
    size = num_episodes * num_turns
    n = torch.zeros(size, dtype=torch.long, device=flat_N.device).index_add_(0, flat_N, m_N.long())
    d = torch.zeros(size, device=flat_N.device).index_add_(0, flat_N, (lp_s_N - lp_t_N).abs())
    h = torch.zeros(size, device=flat_N.device).index_add_(0, flat_N, -lp_s_N)
    denom = n.clamp(min=1).float()
    shape = (num_episodes, num_turns)
    return (d / denom).view(shape), (h / denom).view(shape), n.view(shape)


def turn_weights_batch(d_E_K: torch.Tensor, h_E_K: torch.Tensor, n_E_K: torch.Tensor) -> torch.Tensor:
    """T-DUR weights of every (episode, turn): tdur_weights applied per episode over its turns with
    tokens (n > 0). Returns w_E_K float32, 0 where n == 0."""
    present = n_E_K > 0
    ep_N = torch.arange(d_E_K.shape[0], device=d_E_K.device)[:, None].expand_as(d_E_K)[present]
    w_N = soft_or(_minmax_within(d_E_K[present], ep_N, d_E_K.shape[0]),
                  _minmax_within(h_E_K[present], ep_N, d_E_K.shape[0]))
    w_E_K = torch.zeros_like(d_E_K, dtype=torch.float32)
    w_E_K[present] = w_N
    return w_E_K


def tdur_token_weights_turn_level(
    student_logprobs_B_T: torch.Tensor,
    teacher_logprobs_B_T: torch.Tensor,
    turn_index_B_T: torch.Tensor,
    loss_mask_B_T: torch.Tensor,
    episode_index_B: torch.Tensor,
    num_episodes: int,
) -> torch.Tensor:
    """T-DUR (turn level) broadcast to tokens: w_B_T float32, w_{k(t)} on generated tokens, 0 elsewhere."""
    d_E_K, h_E_K, n_E_K = turn_statistics(student_logprobs_B_T, teacher_logprobs_B_T, turn_index_B_T,
                                          loss_mask_B_T, episode_index_B, num_episodes)
    w_E_K = turn_weights_batch(d_E_K, h_E_K, n_E_K)
    # off-mask positions may carry any turn index (even past the last generated turn): clamp for the
    # lookup, the where below zeroes them
    w_B_T = w_E_K[episode_index_B[:, None], turn_index_B_T.clamp(min=0, max=w_E_K.shape[1] - 1)]
    return torch.where(loss_mask_B_T.bool() & (turn_index_B_T >= 0), w_B_T, torch.zeros_like(w_B_T))


def tdur_token_weights_token_level(
    student_logprobs_B_T: torch.Tensor,
    teacher_logprobs_B_T: torch.Tensor,
    loss_mask_B_T: torch.Tensor,
    episode_index_B: torch.Tensor,
    num_episodes: int,
) -> torch.Tensor:
    """Token-level ablation: the T-DUR formula per token, min-max over each episode's generated tokens.
    Returns w_B_T float32, 0 off the loss mask."""
    mask_B_T = loss_mask_B_T.bool()
    ep_N = episode_index_B[:, None].expand_as(mask_B_T)[mask_B_T]
    lp_s_N = student_logprobs_B_T[mask_B_T].float()
    lp_t_N = teacher_logprobs_B_T[mask_B_T].float()
    w_N = soft_or(_minmax_within((lp_s_N - lp_t_N).abs(), ep_N, num_episodes),
                  _minmax_within(-lp_s_N, ep_N, num_episodes))
    w_B_T = torch.zeros(mask_B_T.shape, dtype=torch.float32, device=mask_B_T.device)
    w_B_T[mask_B_T] = w_N
    return w_B_T
