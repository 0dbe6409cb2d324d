"""Each model's success per seed, and ATOD's per-seed differences, from the evaluate stage's records.

    python benchmarks/per_seed_success.py data/eval/records.jsonl [--benchmark alfworld] [--checkpoint final] \
        [--reference atod]

The compare stage pools seeds (its CIs measure episode noise); this prints the noise between runs: one
success rate (%) per model and seed over all evaluation splits of the benchmark, and ATOD (or the
`--reference` model) minus each other model seed by seed (a model evaluated once, like the SFT student or the teacher, is compared with
every seed), with the mean over seeds.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+",
                        help="the evaluate stage's records.jsonl (or benchmarks/eval_temperature.py --out); several "
                             "files are read together")
    parser.add_argument("--benchmark", default="alfworld")
    parser.add_argument("--checkpoint", default="final")
    parser.add_argument("--reference", default="atod", help="the model whose differences to the others are printed")
    args = parser.parse_args()
    ref = args.reference
    success = per_seed(load_records(args.records), args.benchmark, args.checkpoint)
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
