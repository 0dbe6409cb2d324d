"""Each model's success by a property of the evaluation tasks (ALFWorld: the task type), from the evaluate
stage's records and the benchmark's task files.

    python benchmarks/success_by_group.py data/eval/records.jsonl --tasks data/benchmarks/alfworld \
        [--field task_type] [--checkpoint final] [--reference atod]

The compare stage reports one success rate per benchmark and split; this splits it by a field of each task's
payload (`task_type` for ALFWorld: pick_and_place, pick_two_obj_and_place, look_at_obj_in_light, ...;
`kind` for Search-QA: single-hop or bridge questions), with
every seed's episodes pooled, to show where the models differ. The last rows give `--reference` minus each
other model per group, paired over the group's tasks (a task's episodes averaged first), with a 95% bootstrap
interval over tasks (`atod.eval.stats.paired_delta_distribution`, 2,000 resamples, seed 0).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import pandas as pd

from atod.eval.compare import EvalRecord, load_records
from atod.eval.stats import paired_delta_distribution, percentile_interval


def task_groups(tasks_dir: Path, field: str) -> tuple[str, dict[str, str]]:
    """The benchmark's name and `split/task_id` (as in the records) -> the task payload's `field`, over every
    split file in `tasks_dir` (other files there, e.g. Search-QA's corpus.jsonl, hold no tasks)."""
    benchmark, groups = None, {}
    for path in sorted(tasks_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            task = json.loads(line)
            if "task_id" in task and field in task.get("payload", {}):
                benchmark = task["benchmark"]
                groups[f"{task['split']}/{task['task_id']}"] = str(task["payload"][field])
    if not groups:
        raise SystemExit(f"no task in {tasks_dir}/*.jsonl has the payload field {field!r}")
    return benchmark, groups


def episodes_by_group(records: list[EvalRecord], groups: dict[str, str], checkpoint: str
                      ) -> dict[str, dict[str, dict[str, list[float]]]]:
    """method -> group -> task -> the won flags of its episodes (every seed) at `checkpoint`."""
    out: dict[str, dict[str, dict[str, list[float]]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
    for record in records:
        if record.checkpoint != checkpoint:
            continue
        if not record.task_ids:
            raise SystemExit(f"the records of {record.method} ({record.split}) have no task ids")
        for task, won in zip(record.task_ids, record.won_E.tolist()):
            if task not in groups:
                raise SystemExit(f"task {task!r} of {record.method}'s records is not in the task files")
            out[record.method][groups[task]][task].append(float(won))
    return out


def success_table(episodes: dict[str, dict[str, dict[str, list[float]]]]) -> pd.DataFrame:
    """Success (%) per method (rows) and group (columns), episodes pooled; the column `n` of a group's
    tasks is in the last row."""
    rows = {}
    for method, by_group in episodes.items():
        rows[method] = {g: 100 * np.mean([w for ws in tasks.values() for w in ws]) for g, tasks in by_group.items()}
    table = pd.DataFrame(rows).T.sort_index(axis=1)
    any_method = next(iter(episodes.values()))
    table.loc["tasks"] = [len(any_method.get(g, {})) for g in table.columns]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+", help="the evaluate stage's records.jsonl (several are read together)")
    parser.add_argument("--tasks", type=Path, required=True, help="the benchmark's task files (data/benchmarks/NAME)")
    parser.add_argument("--field", default="task_type", help="the task payload field to group by")
    parser.add_argument("--checkpoint", default="final")
    parser.add_argument("--reference", default="atod", help="the model whose differences to the others are printed")
    args = parser.parse_args()
    benchmark, groups = task_groups(args.tasks, args.field)
    records = [r for r in load_records(args.records) if r.benchmark == benchmark]
    episodes = episodes_by_group(records, groups, args.checkpoint)
    if not episodes:
        raise SystemExit(f"no {args.checkpoint!r} records of {benchmark} in {args.records}")
    pd.set_option("display.width", 200)
    print(f"# {benchmark}: success (%) by {args.field}, {args.checkpoint} checkpoints, seeds pooled")
    print(success_table(episodes).round(1).to_string())
    if args.reference not in episodes:
        return
    print(f"\n# {args.reference} - each, points, paired over the group's tasks [95% bootstrap over tasks]")
    deltas = {}
    for other in sorted(episodes):
        if other == args.reference:
            continue
        row = {}
        for group, tasks in sorted(episodes[args.reference].items()):
            a = {t: np.asarray(w) for t, w in tasks.items()}
            b = {t: np.asarray(w) for t, w in episodes[other].get(group, {}).items()}
            point, dist = paired_delta_distribution(a, b, 2000, np.random.default_rng(0))
            low, high = percentile_interval(dist, 0.95)
            row[group] = f"{100 * point:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        deltas[f"{args.reference} - {other}"] = row
    print(pd.DataFrame(deltas).T.to_string())


if __name__ == "__main__":
    main()
