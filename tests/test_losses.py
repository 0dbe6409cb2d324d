"""Advantages and the clipped surrogate against hand-computed values."""

import math

import pytest
import torch

from atod.losses import (
    clipped_surrogate_loss,
    episode_token_mean,
    full_reverse_kl,
    grpo_advantages,
    hybrid_advantages,
)


def test_grpo_advantages_hand_values():
    r = torch.tensor([1.0, 0.0, 3.0, 0.0, 0.0, 5.0, 5.0])
    g = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    a = grpo_advantages(r, g, eps=0.0 + 1e-12)
    # group 0: mean .5, unbiased std sqrt(.5) -> +-0.70711; group 1: mean 1, std sqrt(6/2) -> 2/1.732, -1/1.732
    # group 2: zero variance -> 0 (kept, not dropped)
    expected = [0.70711, -0.70711, 1.15470, -0.57735, -0.57735, 0.0, 0.0]
    assert a.tolist() == pytest.approx(expected, abs=1e-4)
    assert grpo_advantages(torch.tensor([4.0]), torch.tensor([3])).tolist() == [0.0]


def test_hybrid_advantages():
    mask = torch.tensor([[False, True, True]])
    lp_s = torch.tensor([[0.0, -1.0, -1.0]])
    lp_t = torch.tensor([[0.0, -2.0, -0.5]])
    w = torch.tensor([[0.0, 0.5, 1.0]])
    a = hybrid_advantages(kappa=0.5, rho=2.0, loss_mask_B_T=mask, episode_index_B=torch.tensor([0]),
                          grpo_advantages_E=torch.tensor([0.3]), student_logprobs_B_T=lp_s,
                          teacher_logprobs_B_T=lp_t, weights_B_T=w)
    # 0.5 * (-1 * 0.5) + 2 * 0.3 = 0.35; 0.5 * (0.5 * 1) + 0.6 = 0.85; masked position 0
    assert a.tolist()[0] == pytest.approx([0.0, 0.35, 0.85])
    # grpo (kappa = 0) needs no teacher; opd (rho = 0) needs no rewards
    a = hybrid_advantages(kappa=0.0, rho=1.0, loss_mask_B_T=mask, episode_index_B=torch.tensor([0]),
                          grpo_advantages_E=torch.tensor([0.3]))
    assert a.tolist()[0] == pytest.approx([0.0, 0.3, 0.3])
    a = hybrid_advantages(kappa=1.0, rho=0.0, loss_mask_B_T=mask, episode_index_B=torch.tensor([0]),
                          student_logprobs_B_T=lp_s, teacher_logprobs_B_T=lp_t)
    assert a.tolist()[0] == pytest.approx([0.0, -1.0, 0.5])  # raw lp_T - lp_S, not z-scored
    with pytest.raises(ValueError, match="teacher"):
        hybrid_advantages(kappa=1.0, rho=0.0, loss_mask_B_T=mask, episode_index_B=torch.tensor([0]))


def test_clipped_surrogate_hand_values():
    # episode 0 (two rows): ratio 1.5 with A=+1 (clipped -> -1.2) and A=-1 (unclipped -> +1.5)
    # episode 1: ratio 1 with A=2 -> -2.  Per-trajectory mean: (0.15 + -2) / 2 = -0.925
    half, three_q = math.log(0.5), math.log(0.75)
    new = torch.tensor([[0.0, three_q], [three_q, 0.0], [0.0, -1.0]], requires_grad=True)
    old = torch.tensor([[0.0, half], [half, 0.0], [0.0, -1.0]])
    adv = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    mask = torch.tensor([[False, True], [True, False], [False, True]])
    ep = torch.tensor([0, 0, 1])
    loss, stats = clipped_surrogate_loss(new, old, adv, mask, ep, clip_eps=0.2)
    assert loss.item() == pytest.approx(-0.925, abs=1e-5)
    assert stats.clip_fraction == pytest.approx(1 / 3)
    # mean (old - new) log-prob over the 3 tokens: 2 * (ln .5 - ln .75) / 3
    assert stats.approx_kl == pytest.approx(2 * (half - three_q) / 3, abs=1e-6)
    assert stats.num_tokens == 3
    assert stats.ratio_mean == pytest.approx((1.5 + 1.5 + 1.0) / 3, abs=1e-5)
    loss.backward()
    # clipped token: no gradient; unclipped A=-1 token: d/dlp (1.5 * ratio-term) = ratio * 1 / (2 tokens * 2 eps)
    assert new.grad[0, 1].item() == pytest.approx(0.0)
    assert new.grad[1, 0].item() == pytest.approx(1.5 / 4, abs=1e-5)
    assert new.grad[2, 1].item() == pytest.approx(-2.0 / 2, abs=1e-5)
    assert new.grad[0, 0].item() == 0.0


def test_clipped_surrogate_lower_clip():
    # ratio 0.5 (< 1 - eps): with A = -1 the clipped branch 0.8 * -1 is the minimum -> loss +0.8, clipped,
    # no gradient; with A = +1 the unclipped 0.5 * 1 is the minimum -> loss -0.5, not clipped,
    # d loss / d lp = -ratio * A = -0.5 (one token per episode, two episodes: / 2)
    new = torch.tensor([[math.log(0.5)], [math.log(0.5)]], requires_grad=True)
    old = torch.zeros(2, 1)
    adv = torch.tensor([[-1.0], [1.0]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    loss, stats = clipped_surrogate_loss(new, old, adv, mask, torch.tensor([0, 1]), clip_eps=0.2)
    assert loss.item() == pytest.approx((0.8 - 0.5) / 2, abs=1e-6)
    assert stats.clip_fraction == pytest.approx(0.5)
    loss.backward()
    assert new.grad.flatten().tolist() == pytest.approx([0.0, -0.25], abs=1e-6)


def test_chunks_sum_to_full_batch_loss():
    g = torch.Generator().manual_seed(1)
    new, old = -torch.rand(5, 7, generator=g), -torch.rand(5, 7, generator=g)
    adv, mask = torch.randn(5, 7, generator=g), torch.rand(5, 7, generator=g) > 0.4
    ep = torch.tensor([0, 0, 1, 2, 2])
    full, _ = clipped_surrogate_loss(new, old, adv, mask, ep)
    a, _ = clipped_surrogate_loss(new[:2], old[:2], adv[:2], mask[:2], ep[:2], num_episodes=3)
    b, _ = clipped_surrogate_loss(new[2:], old[2:], adv[2:], mask[2:], ep[2:], num_episodes=3)
    assert (a + b).item() == pytest.approx(full.item(), abs=1e-6)


def test_rows_of_one_episode_split_across_chunks():
    g = torch.Generator().manual_seed(2)
    new, old = -torch.rand(4, 6, generator=g), -torch.rand(4, 6, generator=g)
    adv, mask = torch.randn(4, 6, generator=g), torch.rand(4, 6, generator=g) > 0.3
    ep = torch.tensor([0, 0, 0, 1])
    n_E = torch.zeros(2).index_add_(0, ep, mask.sum(1).float())
    full, _ = clipped_surrogate_loss(new, old, adv, mask, ep)
    parts = [clipped_surrogate_loss(new[r], old[r], adv[r], mask[r], ep[r], num_episodes=2,
                                    tokens_per_episode_E=n_E)[0] for r in ([0], [1, 3], [2])]
    assert sum(p.item() for p in parts) == pytest.approx(full.item(), abs=1e-6)


def test_full_reverse_kl_hand_values_and_gradient():
    # p = softmax([0, ln 3]) = [.25, .75], q = [.5, .5]: KL = .25 ln .5 + .75 ln 1.5 = 0.130812
    student = torch.tensor([[0.0, math.log(3.0)], [1.0, 2.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0], [5.0, 6.0]])  # second row: the same distribution, shifted logits
    kl = full_reverse_kl(student, teacher)
    assert kl.tolist() == pytest.approx([0.130812, 0.0], abs=1e-5)
    kl[0].backward()
    # d KL / d logit_v = p_v * (log p_v - log q_v - KL): .25 * (ln .5 - KL), .75 * (ln 1.5 - KL)
    kl0 = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert student.grad[0].tolist() == pytest.approx([0.25 * (math.log(0.5) - kl0), 0.75 * (math.log(1.5) - kl0)],
                                                     abs=1e-6)
    assert student.grad[1].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="same vocabulary"):
        full_reverse_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_episode_token_mean_hand_values():
    x = torch.tensor([[9.0, 1.0, 3.0], [2.0, 9.0, 9.0], [4.0, 6.0, 9.0]])
    mask = torch.tensor([[False, True, True], [True, False, False], [True, True, False]])
    ep = torch.tensor([0, 0, 1])
    # episode 0: tokens 1, 3, 2 -> mean 2; episode 1: 4, 6 -> 5; mean over episodes 3.5
    assert episode_token_mean(x, mask, ep).item() == pytest.approx(3.5)
    assert episode_token_mean(x, mask, ep, num_episodes=4).item() == pytest.approx(7.0 / 4)
    # rows 0 and 1 as a chunk of a batch whose episode 0 has 6 tokens in all: sum 6 / 6 = 1, over 2 episodes
    assert episode_token_mean(x[:2], mask[:2], ep[:2], num_episodes=2,
                              tokens_per_episode_E=torch.tensor([6.0, 2.0])).item() == pytest.approx(0.5)
