"""T-DUR weights against hand-computed values."""

import torch

from atod.tdur import (
    tdur_token_weights_token_level,
    tdur_token_weights_turn_level,
    tdur_weights,
    turn_statistics,
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
