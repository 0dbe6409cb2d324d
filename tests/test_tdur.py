"""T-DUR weights against hand-computed values."""

import pytest
import torch

from atod.tdur import (
    tdur_token_weights_token_level,
    tdur_token_weights_turn_level,
    tdur_weights,
    turn_statistics,
    turn_weights_batch,
)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_tdur_weights_hand_values():
    # d~ = [0, .25, 1], h~ = [.5, 0, 1] -> w = [1 - 1*.5, 1 - .75*1, 1 - 0] = [.5, .25, 1]
    w = tdur_weights(t([0.2, 0.4, 1.0]), t([2.0, 1.0, 3.0]))
    assert torch.allclose(w, t([0.5, 0.25, 1.0]))
    # flat d (range < 1e-8) -> 0.5: w = [1 - .5*1, 1 - .5*0] = [.5, 1]
    assert torch.allclose(tdur_weights(t([0.3, 0.3]), t([1.0, 2.0])), t([0.5, 1.0]))
    # single turn: 1 - .5 * .5
    assert torch.allclose(tdur_weights(t([0.7]), t([0.1])), t([0.75]))
    assert tdur_weights(t([]), t([])).numel() == 0


def _batch():
    """Episode 0: one row per turn; episode 1: one row holding two turns (a growing conversation)."""
    lp_s = t([[0, -1, -3, 0, 0], [0, -0.5, 0, 0, 0], [0, -2, 0, -1, -1]])
    lp_t = t([[0, -2, -1, 0, 0], [0, -0.5, 0, 0, 0], [0, -1, 0, -1, -3]])
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 1, 1]], dtype=torch.bool)
    turn = torch.tensor([[-1, 0, 0, -1, -1], [-1, 1, -1, -1, -1], [-1, 0, -1, 1, 1]])
    ep = torch.tensor([0, 0, 1])
    return lp_s, lp_t, turn, mask, ep


def test_turn_statistics_and_broadcast():
    lp_s, lp_t, turn, mask, ep = _batch()
    d, h, n = turn_statistics(lp_s, lp_t, turn, mask, ep, num_episodes=2)
    # ep 0: turn 0 d = (1 + 2)/2, h = (1 + 3)/2; turn 1 d = 0, h = .5
    # ep 1: turn 0 d = 1, h = 2; turn 1 d = (0 + 2)/2 = 1, h = 1
    assert torch.allclose(d, t([[1.5, 0.0], [1.0, 1.0]]))
    assert torch.allclose(h, t([[2.0, 0.5], [2.0, 1.0]]))
    assert n.tolist() == [[2, 1], [1, 2]]
    w = tdur_token_weights_turn_level(lp_s, lp_t, turn, mask, ep, num_episodes=2)
    # ep 0: d~ = [1, 0], h~ = [1, 0] -> w = [1, 0]; ep 1: d~ = [.5, .5], h~ = [1, 0] -> w = [1, .5]
    expected = t([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0.5, 0.5]])
    assert torch.allclose(w, expected)


def test_token_level_variant():
    lp_s, lp_t, _, mask, ep = _batch()
    w = tdur_token_weights_token_level(lp_s, lp_t, mask, ep, num_episodes=2)
    # ep 0 tokens: d = [1, 2, 0], h = [1, 3, .5] -> d~ = [.5, 1, 0], h~ = [.2, 1, 0] -> w = [.6, 1, 0]
    # ep 1 tokens: d = [1, 0, 2], h = [2, 1, 1] -> d~ = [.5, 0, 1], h~ = [1, 0, 0] -> w = [1, 0, 1]
    expected = t([[0, 0.6, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]])
    assert torch.allclose(w, expected)


def test_batched_matches_single_trajectory():
    g = torch.Generator().manual_seed(0)
    lp_s = -torch.rand(6, 12, generator=g) * 3
    lp_t = -torch.rand(6, 12, generator=g) * 3
    mask = torch.rand(6, 12, generator=g) > 0.3
    turn = torch.where(mask, torch.arange(12).repeat(6, 1) // 4, torch.full((6, 12), -1))
    ep = torch.tensor([0, 0, 1, 2, 2, 2])
    w = tdur_token_weights_turn_level(lp_s, lp_t, turn, mask, ep, num_episodes=3)
    d, h, n = turn_statistics(lp_s, lp_t, turn, mask, ep, 3)
    for e in range(3):
        keep = n[e] > 0
        w_e = tdur_weights(d[e][keep], h[e][keep])
        rows = (ep == e).nonzero().flatten()
        for k, wk in zip(keep.nonzero().flatten().tolist(), w_e.tolist()):
            sel = mask[rows] & (turn[rows] == k)
            assert torch.allclose(w[rows][sel], torch.full((int(sel.sum()),), wk))
        assert ((w[rows] >= 0) & (w[rows] <= 1)).all()


def test_tdur_weights_rejects_mismatched_or_2d_input():
    # the check is `d.shape != h.shape or d.dim() != 1`: (2,) vs (3,) differ; (2, 2) twice is 2-D
    with pytest.raises(ValueError, match="1-D tensors of the same shape"):
        tdur_weights(t([0.1, 0.2]), t([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"got \(2, 2\) and \(2, 2\)"):
        tdur_weights(t([[0.1, 0.2], [0.3, 0.4]]), t([[1.0, 2.0], [3.0, 4.0]]))


def test_loss_mask_token_with_turn_minus_one_is_ignored():
    lp_s, lp_t, turn, mask, ep = _batch()
    d0, h0, n0 = turn_statistics(lp_s, lp_t, turn, mask, ep, num_episodes=2)
    w0 = tdur_token_weights_turn_level(lp_s, lp_t, turn, mask, ep, num_episodes=2)
    # Put a loss-mask token with turn index -1 at row 2 (episode 1), position 0: |lp_S - lp_T| = 5, -lp_S = 5.
    # Were it counted (clamped into turn 0), ep 1 turn 0 would get d = (1 + 5)/2 = 3, h = (2 + 5)/2 = 3.5,
    # so d~ = [1, 0], h~ = [1, 0] and turn 1's weight would drop from .5 to 0.
    lp_s[2, 0], lp_t[2, 0], mask[2, 0] = -5.0, 0.0, True
    assert turn[2, 0] == -1
    d, h, n = turn_statistics(lp_s, lp_t, turn, mask, ep, num_episodes=2)
    assert torch.equal(d, d0) and torch.equal(h, h0) and torch.equal(n, n0)
    assert torch.allclose(d, t([[1.5, 0.0], [1.0, 1.0]])) and n.tolist() == [[2, 1], [1, 2]]
    w = tdur_token_weights_turn_level(lp_s, lp_t, turn, mask, ep, num_episodes=2)
    # the token itself gets 0; every other weight is the batch's without it (ep 1: [1, .5])
    assert w[2, 0] == 0.0
    assert torch.equal(w, w0)
    assert torch.allclose(w[2], t([0, 1, 0, 0.5, 0.5]))


def test_turn_without_tokens_between_turns_gets_zero_and_is_left_out_of_minmax():
    # One episode, one row: prompt, turn 0 (1 token), an observation labelled turn 1 but off the loss mask,
    # turn 2 (2 tokens). Turn 1 has no generated token.
    lp_s = t([[0.0, -1.0, -0.7, -1.0, -3.0]])
    lp_t = t([[0.0, 0.0, -0.2, -4.0, 0.0]])
    turn = torch.tensor([[-1, 0, 1, 2, 2]])
    mask = torch.tensor([[0, 1, 0, 1, 1]], dtype=torch.bool)
    ep = torch.tensor([0])
    d, h, n = turn_statistics(lp_s, lp_t, turn, mask, ep, num_episodes=1)
    # turn 0: d = |-1 - 0| = 1, h = 1; turn 1: nothing -> 0, n = 0; turn 2: d = (3 + 3)/2 = 3, h = (1 + 3)/2 = 2
    assert n.tolist() == [[1, 0, 2]]
    assert torch.allclose(d, t([[1.0, 0.0, 3.0]])) and torch.allclose(h, t([[1.0, 0.0, 2.0]]))
    w = turn_weights_batch(d, h, n)
    # min-max over turns 0 and 2 only: d~ = h~ = [0, 1] -> w = [1 - 1*1, 1 - 0] = [0, 1]; turn 1 -> 0.
    # (Had the empty turn's zeros entered, turn 0 would get d~ = 1/3, h~ = 1/2, w = 1 - (2/3)(1/2) = 2/3.)
    assert torch.allclose(w, t([[0.0, 0.0, 1.0]]))
    w_tok = tdur_token_weights_turn_level(lp_s, lp_t, turn, mask, ep, num_episodes=1)
    assert torch.allclose(w_tok, t([[0.0, 0.0, 0.0, 1.0, 1.0]]))


def test_token_level_flat_episode_gets_three_quarters():
    # ep 0 (row 0): |lp_S - lp_T| = |-1 + 3| = |-1 - 1| = 2 and -lp_S = 1 for all three tokens: both ranges are 0,
    # so d~ = h~ = .5 and w = 1 - .5 * .5 = .75.
    # ep 1 (row 1): d = [0, 1], h = [.5, 2] -> d~ = h~ = [0, 1] -> w = [0, 1]. (A min-max over all tokens of the
    # batch would give ep 0 d~ = 1, so w = 1, not .75.)
    lp_s = t([[-1.0, -1.0, -1.0, 0.0], [0.0, -0.5, -2.0, 0.0]])
    lp_t = t([[-3.0, 1.0, -3.0, 0.0], [0.0, -0.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 0]], dtype=torch.bool)
    ep = torch.tensor([0, 1])
    w = tdur_token_weights_token_level(lp_s, lp_t, mask, ep, num_episodes=2)
    assert torch.allclose(w, t([[0.75, 0.75, 0.75, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_off_mask_turn_index_past_the_last_generated_turn_is_ignored():
    # one episode: turn 0 generated (2 tokens), then an observation labelled turn 3 off the loss mask
    # (no generated turn 3 exists): K = 1 turn with tokens; the off-mask position gets weight 0 (it used to
    # raise an IndexError looking up turn 3); turn 0 alone: flat range -> d~ = h~ = 0.5 -> w = 0.75
    lp_s = t([[-1.0, -2.0, -0.5]])
    lp_t = t([[0.0, -1.0, 0.0]])
    turn = torch.tensor([[0, 0, 3]])
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    w = tdur_token_weights_turn_level(lp_s, lp_t, turn, mask, torch.tensor([0]), num_episodes=1)
    assert torch.allclose(w, t([[0.75, 0.75, 0.0]]))
