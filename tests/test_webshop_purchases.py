"""benchmarks/webshop_purchases.py: the share of WebShop episodes that bought and their score, on hand-made records."""

from __future__ import annotations

import math

import pytest
from conftest import load_script

from atod.eval.compare import EvalRecord


def _record(method: str, seed: int, turns: list[int], score: list[float], checkpoint: str = "final",
            benchmark: str = "webshop", split: str = "test") -> EvalRecord:
    won = [1.0 if s >= 1.0 else 0.0 for s in score]
    return EvalRecord(method, benchmark, split, seed, checkpoint, won, task_ids=[f"{split}/t{i}" for i in range(len(won))],
                      score_E=score, turns_E=turns)


def test_purchases_pool_seeds_and_count_episodes_before_the_limit():
    script = load_script("webshop_purchases")
    records = [
        _record("opd", 0, [15, 15, 7, 4], [0.0, 0.0, 0.5, 1.0]),
        _record("opd", 1, [15, 9, 15, 15], [0.0, 0.25, 0.0, 0.0]),
        _record("grpo", 0, [5, 15, 6, 15], [1.0, 0.0, 0.4, 0.6]),  # the last bought on its 15th turn: not counted
        _record("opd", 0, [3, 3, 3, 3], [1.0, 1.0, 1.0, 1.0], checkpoint="best"),  # other checkpoint: left out
        _record("opd", 0, [3], [1.0], benchmark="alfworld", split="valid_seen"),  # other benchmark: left out
        _record("never", 0, [15, 15], [0.0, 0.0]),
    ]
    table = script.purchases(records, max_turns=15, checkpoint="final")
    # opd: 3 of 8 episodes ended before turn 15, scores 0.5, 1.0, 0.25 -> mean 1.75 / 3, one win
    assert table["opd"] == pytest.approx({"episodes": 8, "bought_pct": 37.5, "purchase_score": 1.75 / 3,
                                          "purchase_wins": 1})
    # grpo: 2 of 4 (turns 5 and 6), scores 1.0 and 0.4
    assert table["grpo"] == pytest.approx({"episodes": 4, "bought_pct": 50.0, "purchase_score": 0.7,
                                           "purchase_wins": 1})
    assert table["never"]["bought_pct"] == 0.0 and math.isnan(table["never"]["purchase_score"])


def test_summary_only_records_are_refused():
    script = load_script("webshop_purchases")
    with pytest.raises(ValueError, match="no per-episode turns"):
        script.purchases([EvalRecord("opd", "webshop", "test", 0, "final", [1.0, 0.0])], 15, "final")
