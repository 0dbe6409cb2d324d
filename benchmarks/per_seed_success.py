"""Each model's success per seed, and ATOD's per-seed differences, from the evaluate stage's records.

    python benchmarks/per_seed_success.py data/eval/records.jsonl [--benchmark alfworld|average] \
        [--checkpoint final] [--reference atod]

The compare stage pools seeds (its CIs measure episode noise); this prints the noise between runs: one
success rate (%) per model and seed over all evaluation splits of the benchmark, and ATOD (or the
`--reference` model) minus each other model seed by seed (a model evaluated once, like the SFT student or the teacher, is compared with
every seed), with the mean over seeds. `--benchmark average` gives each seed's mean over the benchmarks in the
records (the compare report's `average`, seed by seed), for the models evaluated on all of them.
"""

import argparse
import collections

from atod.eval.compare import EvalRecord, load_records


def per_seed(records: list[EvalRecord], benchmark: str, checkpoint: str) -> dict[tuple[str, int], float]:
    """(method, seed) -> success (%) over every split of `benchmark` at `checkpoint`."""
    won = collections.defaultdict(lambda: [0.0, 0])
    for record in records:
        if record.benchmark == benchmark and record.checkpoint == checkpoint:
            total = won[(record.method, record.seed)]
            total[0] += float(record.won_E.sum())
            total[1] += len(record.won_E)
    return {key: 100 * wins / episodes for key, (wins, episodes) in won.items()}


def per_seed_average(records: list[EvalRecord], checkpoint: str) -> dict[tuple[str, int], float]:
    """(method, seed) -> the mean over every benchmark in `records` of `per_seed`, for the (method, seed)
    pairs evaluated on all of them."""
    per_benchmark = [per_seed(records, b, checkpoint) for b in sorted({r.benchmark for r in records})]
    keys = set.intersection(*(set(success) for success in per_benchmark)) if per_benchmark else set()
    return {key: sum(success[key] for success in per_benchmark) / len(per_benchmark) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+",
                        help="the evaluate stage's records.jsonl (or benchmarks/eval_temperature.py --out); several "
                             "files are read together")
    parser.add_argument("--benchmark", default="alfworld",
                        help="a benchmark, or `average`: each seed's mean over the records' benchmarks")
    parser.add_argument("--checkpoint", default="final")
    parser.add_argument("--reference", default="atod", help="the model whose differences to the others are printed")
    args = parser.parse_args()
    ref = args.reference
    records = load_records(args.records)
    success = (per_seed_average(records, args.checkpoint) if args.benchmark == "average"
               else per_seed(records, args.benchmark, args.checkpoint))
    if not success:
        raise SystemExit(f"no {args.checkpoint!r} records for benchmark {args.benchmark!r} in {args.records}")
    seeds = {method: sorted(s for m, s in success if m == method) for method, _ in success}
    for method in sorted(seeds):
        print(f"{method:16s} " + " / ".join(f"{success[(method, s)]:.1f}" for s in seeds[method]))
    if ref not in seeds:
        return
    for other in sorted(seeds):
        if other == ref:
            continue
        deltas = [success[(ref, s)] - success[(other, s if s in seeds[other] else seeds[other][0])]
                  for s in seeds[ref]]
        print(f"{ref} - {other:16s} " + " / ".join(f"{d:+.1f}" for d in deltas)
              + f"   mean {sum(deltas) / len(deltas):+.1f}")


if __name__ == "__main__":
    main()
