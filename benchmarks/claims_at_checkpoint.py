"""The paper's claims and ATOD's deltas at one checkpoint kind, from the evaluate stage's records.

    python benchmarks/claims_at_checkpoint.py data/eval/records.jsonl [--checkpoint best] [--samples 2000]

The compare stage's report checks the claims at `compare.checkpoint` (final by default) and shows the other
kind's success table only; this prints the claims and ATOD minus every other model per benchmark and on
average at the kind asked for, with the same code (`atod.eval.compare.build_comparison`) and bootstrap.
'best' is the checkpoint chosen on validation success during training (32 held-out train tasks every 10
steps in the reproduction), so its numbers include that choice's noise.
"""

import argparse

from atod.eval.compare import _signed, build_comparison, load_records
from atod.eval.config import CompareConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+", help="the evaluate stage's records.jsonl")
    parser.add_argument("--checkpoint", default="best", choices=["final", "best"])
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args()
    cfg = CompareConfig(checkpoint=args.checkpoint, bootstrap_samples=args.samples, seed=args.seed)
    c = build_comparison(load_records(args.records), cfg)
    used = ", ".join(f"{m} {kind}" for m, kind in c.checkpoint_used.items())
    print(f"# checkpoint asked for: {args.checkpoint}; used: {used}")
    print(f"# points, {100 * cfg.confidence:.0f}% bootstrap CI ({cfg.bootstrap_samples} resamples, seed {cfg.seed})\n")
    print("# the paper's claims")
    for claim in c.claims:
        ours = "not run" if claim.delta is None else _signed(claim.delta)
        print(f"{claim.claim:64s} {claim.scope:40s} {ours:24s} {claim.direction}")
    print("\n# atod - each")
    for d in c.deltas:
        if d.method == "atod":
            print(f"atod - {d.baseline:16s} {d.benchmark:10s} {_signed(d)}")


if __name__ == "__main__":
    main()
