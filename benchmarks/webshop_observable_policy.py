"""Does the embedded WebShop need privileged knowledge? A scripted policy that decides only from what the
pages show, simulated over every goal of a split:

    python benchmarks/webshop_observable_policy.py [--benchmark-dir data/benchmarks/webshop]

The policy searches the goal's key words (product type + attributes, all words of the instruction); on
the results pages it takes, in rank order, the first product whose title names the goal's product type
and whose shown price (the top of a range) is under the limit; on its item page it goes back unless
every goal option value is offered; for goal attributes missing from the title it reads the description
and goes back unless all are there; then it selects the options and buys. Turns are counted as the
environment counts them (search, page turns, clicks, back, options, buy; 15 at most). It prints, per
split, the share of goals it wins (score 1.0), the mean score and the mean turns of the won ones. The
environment's scripted expert instead picks products by their reward (`WebshopEnv.expert_action`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from atod.envs import load_benchmark
from atod.envs.webshop.catalogue import TYPES, Goal
from atod.envs.webshop.pages import RESULTS_PER_PAGE
from atod.envs.webshop.reward import get_reward


def price_top(tag: str) -> float:
    """'$50.99 to $66.99' -> 66.99; '$38.99' -> 38.99."""
    return float(tag.split(" to ")[-1].lstrip("$"))


def simulate(shop, goal: Goal, max_turns: int) -> tuple[float, int]:
    """(score, turns) of the observable policy on one goal."""
    products = shop.products
    type_title = TYPES[products[goal.asin].product_type].title.lower()  # the instruction names it
    turns = 1  # search
    for rank, asin in enumerate(shop.search(goal.keywords)):
        if rank and rank % RESULTS_PER_PAGE == 0:
            turns += 1  # next page
        p = products[asin]
        if price_top(p.price_tag) > goal.price_upper or type_title not in p.title.lower():
            continue  # decided on the results page
        turns += 1  # open the item
        if any(v not in p.options.get(k, ()) for k, v in goal.goal_options.items()):
            turns += 1  # back to the results
            continue
        if any(a not in p.title.lower() for a in goal.attributes):
            turns += 2  # description, back to the item
            if not all(a in p.description.lower() for a in goal.attributes if a not in p.title.lower()):
                turns += 1  # back to the results
                continue
        turns += len(goal.goal_options) + 1  # options, buy
        if turns > max_turns:
            return 0.0, max_turns
        return get_reward(p, goal, p.price, dict(goal.goal_options)), turns
    return 0.0, max_turns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark-dir", default="data/benchmarks/webshop")
    args = ap.parse_args()
    bench = load_benchmark("webshop", Path(args.benchmark_dir))
    env = bench.make_env()
    for split in ("train", "test"):
        results = [simulate(env.shop, Goal.from_json(t.payload), env.max_turns) for t in bench.tasks(split)]
        won = [t for score, t in results if score >= 1.0]
        print(f"{split}: {len(results)} goals, won {len(won) / len(results):.3f}, "
              f"mean score {sum(s for s, _ in results) / len(results):.3f}, "
              f"mean turns when won {sum(won) / max(len(won), 1):.1f}")


if __name__ == "__main__":
    main()
