"""WebShop test goals that repeat a train goal in other words, and success with and without them.

    python benchmarks/webshop_overlap.py [--benchmark-dir data/benchmarks/webshop] \
        [--records data/eval/records.jsonl] [--checkpoint final] [--with-price]

The splits share no goal text, but the generated catalogue is small (the default: 300 products, 6,000
train goals), so some test goals ask for the same product, attributes and options as a train goal
(`atod.envs.webshop.benchmark.twinned_test_tasks`; `--with-price`: the same price limit too). A policy
that memorised train requests may do better on those. This prints how many there are and, given the
evaluate stage's records, each model's WebShop success (%) on all test goals, on the twinned ones and on
the rest (seeds pooled, one line per method), so a result can be read on the goals no training saw.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from atod.envs.webshop import load
from atod.envs.webshop.benchmark import twinned_test_tasks
from atod.eval.compare import EvalRecord, load_records


def success_by_subset(records: list[EvalRecord], twins: set[str], checkpoint: str) -> dict[str, dict[str, float]]:
    """method -> {"all", "twinned", "rest"}: success (%) over the WebShop test episodes of `checkpoint`
    (seeds pooled), on every goal, on the goals whose "test/<task_id>" is in `twins`, and on the others."""
    won = collections.defaultdict(lambda: {"all": [], "twinned": [], "rest": []})
    for record in records:
        if record.benchmark != "webshop" or record.checkpoint != checkpoint or record.split != "test":
            continue
        if record.task_ids is None:
            raise ValueError(f"record {record.key} has no task ids (a summary-only record): cannot split it")
        for task, w in zip(record.task_ids, record.won_E, strict=True):
            subset = "twinned" if task in twins else "rest"
            won[record.method]["all"].append(float(w))
            won[record.method][subset].append(float(w))
    return {m: {k: 100 * sum(v) / len(v) if v else float("nan") for k, v in parts.items()} for m, parts in won.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark-dir", type=Path, default=Path("data/benchmarks/webshop"))
    parser.add_argument("--records", type=Path, default=None, help="the evaluate stage's records.jsonl")
    parser.add_argument("--checkpoint", default="final", choices=("final", "best"))
    parser.add_argument("--with-price", action="store_true", help="a twin must have the same price limit too")
    args = parser.parse_args()

    bench = load(args.benchmark_dir)
    twins = twinned_test_tasks(bench, with_price=args.with_price)
    print(f"{len(twins)} of {len(bench.tasks('test'))} test goals ask for the product, attributes and options"
          f"{' and price limit' if args.with_price else ''} of a train goal")
    if args.records is None:
        return
    table = success_by_subset(load_records(args.records), {f"test/{t}" for t in twins}, args.checkpoint)
    print(f"{'method':<16} {'all':>6} {'twinned':>8} {'rest':>6}   (success %, {args.checkpoint} checkpoints)")
    for method, row in table.items():
        print(f"{method:<16} {row['all']:6.1f} {row['twinned']:8.1f} {row['rest']:6.1f}")


if __name__ == "__main__":
    main()
