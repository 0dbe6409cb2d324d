"""Each model's success by a property of the evaluation tasks (ALFWorld: the task type), from the evaluate
stage's records and the benchmark's task files.

    python benchmarks/success_by_group.py data/eval/records.jsonl --tasks data/benchmarks/alfworld \
        [--field task_type] [--checkpoint final] [--reference atod]

The compare stage reports one success rate per benchmark and split; this splits it by a field of each
evaluation task's payload (`task_type` for ALFWorld: pick_and_place_simple, pick_two_obj_and_place,
look_at_obj_in_light, ...; `kind` for Search-QA: one_hop, bridge, comparison), every seed's episodes pooled,
to show where the models differ; a column's header gives its number of tasks. The last rows give
`--reference` minus each other model per group, paired over the group's tasks (a task's episodes averaged
first; `n/a` where the two share no task), with a 95% bootstrap interval over tasks
(`atod.eval.stats.paired_delta_distribution`, 2,000 resamples, seed 0). As in `per_seed_success.py`, only the
records of `--checkpoint` count: with `best`, the models evaluated once (sft, seqkd, teacher) drop out.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import pandas as pd

from atod.envs import EVAL_SPLITS
from atod.envs.base import Task
from atod.eval.compare import EvalRecord, load_records
from atod.eval.stats import paired_delta_distribution, percentile_interval


def task_groups(tasks_dir: Path, field: str) -> tuple[str, dict[str, str]]:
    """The benchmark (the folder's name: data/benchmarks/<name>) and `split/task_id` (as in the records) -> the
    payload's `field`, over its evaluation splits' task files. Raises SystemExit naming tasks without it."""
    benchmark = tasks_dir.name
    if benchmark not in EVAL_SPLITS:
        raise SystemExit(f"{tasks_dir} is not a benchmark's folder: its name must be one of {sorted(EVAL_SPLITS)}")
    groups, without = {}, []
    for split in EVAL_SPLITS[benchmark]:
        path = tasks_dir / f"{split}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path} not found: the prepare stage writes it")
        for line in path.read_text().splitlines():
            task = Task.from_json(json.loads(line))
            key = f"{task.split}/{task.task_id}"
            if field in task.payload:
                groups[key] = str(task.payload[field])
            else:
                without.append(key)
    if without:
        raise SystemExit(f"{len(without)} {benchmark} task(s) have no payload field {field!r}, e.g. {without[0]}")
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
    """Success (%) per method (rows, in the records' order) and group (columns, sorted, headed `group (n)`
    with n the number of tasks any method ran in it), episodes pooled."""
    names = sorted({g for by_group in episodes.values() for g in by_group})
    tasks = {g: len({t for by_group in episodes.values() for t in by_group.get(g, {})}) for g in names}
    rows = {method: {f"{g} ({tasks[g]})": 100 * np.mean([w for ws in by_group[g].values() for w in ws])
                     for g in names if g in by_group}
            for method, by_group in episodes.items()}
    return pd.DataFrame(rows).T


def _interval(point: float, low: float, high: float) -> str:
    return "{:+.1f} [{:+.1f}, {:+.1f}]".format(*(round(100 * v, 1) + 0.0 for v in (point, low, high)))  # no -0.0


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
    print(f"# {benchmark}: success (%) by {args.field} (tasks), {args.checkpoint} checkpoints, seeds pooled")
    print(success_table(episodes).round(1).to_string())
    if args.reference not in episodes:
        return
    print(f"\n# {args.reference} - each, points, paired over the group's tasks [95% bootstrap over tasks]")
    deltas = {}
    for other in episodes:
        if other == args.reference:
            continue
        row = {}
        for group, tasks in sorted(episodes[args.reference].items()):
            a = {t: np.asarray(w) for t, w in tasks.items()}
            b = {t: np.asarray(w) for t, w in episodes[other].get(group, {}).items()}
            if not set(a) & set(b):
                row[group] = "n/a"
                continue
            point, dist = paired_delta_distribution(a, b, 2000, np.random.default_rng(0))
            row[group] = _interval(point, *percentile_interval(dist, 0.95))
        deltas[f"{args.reference} - {other}"] = row
    print(pd.DataFrame(deltas).T.to_string())


if __name__ == "__main__":
    main()
