"""One comparison report from the evaluation records of several experiments (e.g. an ablation run after
the reproduction, compared with the reproduction's methods on the same tasks).

    python benchmarks/compare_records.py RECORDS.jsonl [RECORDS.jsonl ...] --out DIR \\
        [--runs data/runs ...] [--methods grpo opd atod opd_full atod_full sft teacher]

Records of the same model (method, benchmark, split, seed, checkpoint) found in more than one file must
be identical episode for episode (the same model evaluated twice with the same seeds, like the SFT
student and the teacher that every experiment re-evaluates); otherwise the script stops, since it would
be comparing different models under one name. Writes DIR/report.md, report.html, comparison_full.json,
comparison.json and plots/ with the compare stage's code (`atod.eval.compare.write_report`, settings from
params.yaml's `compare` section); `--runs` (data/runs folders of the experiments) adds the learning
curves of every <method>/<benchmark>/seed<k>/metrics.jsonl found there.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from atod.config import load_params
from atod.eval.compare import EvalRecord, build_comparison, load_records, write_report
from atod.eval.plots import RunCurves


def merge_records(groups: list[list[EvalRecord]]) -> list[EvalRecord]:
    """The records of every group, each model once; a model present in several groups must agree."""
    merged: dict[str, EvalRecord] = {}
    for records in groups:
        for record in records:
            seen = merged.get(record.key)
            if seen is None:
                merged[record.key] = record
            elif not (np.array_equal(seen.won_E, record.won_E) and seen.task_ids == record.task_ids):
                raise SystemExit(f"{record.key} differs between the record files (same name, different "
                                 f"episodes: {seen.won_E.mean():.3f} against {record.won_E.mean():.3f} success); "
                                 f"not the same model, refusing to merge")
    return list(merged.values())


def find_runs(roots: list[Path], methods: set[str] | None) -> list[RunCurves]:
    """Every <root>/<method>/<benchmark>/seed<k>/metrics.jsonl, first root first for duplicates."""
    found: dict[tuple[str, str, int], RunCurves] = {}
    for root in roots:
        for path in sorted(root.glob("*/*/seed*/metrics.jsonl")):
            seed_dir, bench_dir, method_dir = path.parent, path.parent.parent, path.parent.parent.parent
            match = re.fullmatch(r"seed(\d+)", seed_dir.name)
            if match is None or (methods is not None and method_dir.name not in methods):
                continue
            key = (method_dir.name, bench_dir.name, int(match.group(1)))
            found.setdefault(key, RunCurves(method=key[0], benchmark=key[1], seed=key[2], metrics_path=path))
    return [found[k] for k in sorted(found)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="+", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--runs", nargs="*", type=Path, default=[])
    ap.add_argument("--methods", nargs="*", help="keep only these methods (default: all)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    keep = set(args.methods) if args.methods else None
    records = merge_records([load_records(p) for p in args.records])
    if keep is not None:
        records = [r for r in records if r.method in keep]
        missing = keep - {r.method for r in records}
        if missing:
            raise SystemExit(f"no records for {', '.join(sorted(missing))} in {', '.join(map(str, args.records))}")
    comparison = build_comparison(records, load_params(args.params).compare)
    paths = write_report(comparison, args.out, args.out / "comparison.json", runs=find_runs(args.runs, keep))
    for name, path in sorted(paths.items()):
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
