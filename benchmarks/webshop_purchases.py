"""How often each model buys on WebShop, and how good its purchases are, from the evaluate stage's records.

    python benchmarks/webshop_purchases.py [--records data/eval/records.jsonl] \
        [--benchmark-dir data/benchmarks/webshop] [--checkpoint final]

A WebShop episode ends when the agent buys (an item page's Buy Now) or at the turn limit
(`atod/envs/webshop/env.py`), and an episode without a purchase scores 0. So the mean task score is the
share of episodes that bought times the mean score of their purchases, and a model can lose score by
buying less as well as by buying worse. The records keep each episode's turns and score, not how it ended:
an episode counts as a purchase when it ended before the limit (the catalogue's `max_turns`), so one
that buys on its last turn counts as not bought; the printed share is a lower bound. One line per method,
seeds pooled: episodes, share bought (%), the purchases' mean score, and the wins among them.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from atod.envs.webshop import load
from atod.eval.compare import EvalRecord, load_records


def purchases(records: list[EvalRecord], max_turns: int, checkpoint: str) -> dict[str, dict[str, float]]:
    """method -> {"episodes", "bought_pct", "purchase_score", "purchase_wins"} over the WebShop test
    episodes of `checkpoint` (seeds pooled); an episode with fewer than `max_turns` turns is a purchase.
    `purchase_score` is NaN for a method that never bought."""
    turns, score, won = (collections.defaultdict(list) for _ in range(3))
    for record in records:
        if record.benchmark != "webshop" or record.checkpoint != checkpoint or record.split != "test":
            continue
        if record.turns_E is None or record.score_E is None:
            raise ValueError(f"record {record.key} has no per-episode turns or scores (a summary-only record)")
        turns[record.method].extend(record.turns_E)
        score[record.method].extend(record.score_E)
        won[record.method].extend(record.won_E)
    table = {}
    for method in turns:
        bought_E = np.asarray(turns[method]) < max_turns
        score_E, won_E = np.asarray(score[method]), np.asarray(won[method])
        table[method] = {
            "episodes": float(bought_E.size),
            "bought_pct": 100.0 * float(bought_E.mean()),
            "purchase_score": float(score_E[bought_E].mean()) if bought_E.any() else float("nan"),
            "purchase_wins": float(won_E[bought_E].sum()),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, default=Path("data/eval/records.jsonl"),
                        help="the evaluate stage's records.jsonl")
    parser.add_argument("--benchmark-dir", type=Path, default=Path("data/benchmarks/webshop"),
                        help="the prepared WebShop benchmark (its catalogue gives the turn limit)")
    parser.add_argument("--checkpoint", default="final", choices=("final", "best"))
    args = parser.parse_args()

    max_turns = load(args.benchmark_dir).max_turns
    table = purchases(load_records(args.records), max_turns, args.checkpoint)
    if not table:
        raise SystemExit(f"{args.records} holds no WebShop test episodes at the {args.checkpoint} checkpoint")
    print(f"an episode that ended before turn {max_turns} bought; {args.checkpoint} checkpoints, seeds pooled")
    print(f"{'method':<16} {'episodes':>8} {'bought %':>9} {'purchase score':>15} {'purchase wins':>14}")
    for method, row in table.items():
        print(f"{method:<16} {row['episodes']:8.0f} {row['bought_pct']:9.1f} {row['purchase_score']:15.3f} "
              f"{row['purchase_wins']:14.0f}")


if __name__ == "__main__":
    main()
