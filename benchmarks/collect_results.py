"""Archive a finished pipeline run's results under docs/results/, with the per-seed and WebShop tables.

    python benchmarks/collect_results.py PROJECT OUT [--title "The reproduction, 3 seeds"]

PROJECT is a checkout whose `dvc repro` / `dvc exp run` finished (e.g. the reproduction's clone); OUT a new
folder (refused if it exists). OUT gets:

- `report.md` (the compare stage's report, its figures next to it, so its image links work), `report.html`,
  `comparison_full.json`, the figures (`*.png`);
- `comparison.json`, `train.json`, `cache_teacher.json`: the stages' DVC metrics files, where present;
- `records.jsonl`: the evaluate stage's per-episode outcomes (every number can be recomputed from it);
- `per_seed_<benchmark>.txt`: `benchmarks/per_seed_success.py` for each benchmark in the records, final and
  best checkpoints, and `per_seed_average.txt` (each seed's mean over the benchmarks) when there are several;
- `webshop_overlap.txt`: `benchmarks/webshop_overlap.py` on the records (WebShop success on all test goals,
  those with a train twin and the rest), when the records hold WebShop;
- `webshop_purchases.txt`: `benchmarks/webshop_purchases.py` on the records (the share of WebShop episodes
  that bought and their purchases' mean score), when the records hold WebShop;
- `success_by_group_<benchmark>.txt`: `benchmarks/success_by_group.py` (success by ALFWorld task type and
  by Search-QA question kind, final checkpoints), where the task files have that field;
- `claims_best.txt`: `benchmarks/claims_at_checkpoint.py --checkpoint best` (the claims and ATOD's deltas at
  the best validation checkpoint), when the records hold best checkpoints;
- `paired_training.txt`, `paired_training.png`: `benchmarks/paired_training.py` on the training runs
  (`data/runs`): each pair of methods' training success compared step by step on the same tasks, by phase
  of the annealing, and drawn against the step;
- `README.md`: where it came from (the checkout's commit, the experiment's params) and what each file is.

The tables are made by running the scripts, so they are exactly what those commands print.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from atod.eval.compare import order_benchmarks

HERE = Path(__file__).resolve().parent
GROUP_FIELDS = {"alfworld": "task_type", "searchqa": "kind"}  # the task property success is split by


def _script(name: str, *args: str) -> str:
    """stdout of `python benchmarks/<name> args` (fails loudly with its stderr)."""
    proc = subprocess.run([sys.executable, str(HERE / name), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def _tasks_have(bench_dir: Path, field: str) -> bool:
    """Whether the first task of the benchmark's first evaluation split has `field` in its payload (tasks
    the prepare stage generated do; a real benchmark's may not)."""
    from atod.envs import EVAL_SPLITS

    path = bench_dir / f"{EVAL_SPLITS[bench_dir.name][0]}.jsonl"
    if not path.is_file():
        return False
    with path.open() as f:
        line = f.readline()
    return bool(line.strip()) and field in json.loads(line).get("payload", {})


def _commit(project: Path) -> str:
    proc = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() or "unknown (not a git checkout)"


def collect(project: Path, out: Path, title: str) -> list[str]:
    """Fill `out` (created; must not exist) from `project`; returns the files written, in order."""
    reports, metrics, records = project / "reports", project / "metrics", project / "data" / "eval" / "records.jsonl"
    missing = [p for p in (reports / "report.md", records) if not p.is_file()]
    if missing:
        raise SystemExit(f"{project} has no finished run: missing {', '.join(map(str, missing))}")
    if out.exists():
        raise SystemExit(f"{out} exists: an archive is never overwritten; name a new folder")
    out.mkdir(parents=True)
    written: list[str] = []

    def put(name: str, text: str) -> None:
        (out / name).write_text(text)
        written.append(name)

    report = (reports / "report.md").read_text()
    put("report.md", report.replace("](plots/", "]("))  # figures sit next to the report here
    for name in ("report.html", "comparison_full.json"):
        if (reports / name).is_file():
            shutil.copy2(reports / name, out / name)
            written.append(name)
    for png in sorted((reports / "plots").glob("*.png")):
        shutil.copy2(png, out / png.name)
        written.append(png.name)
    for name in ("comparison.json", "train.json", "cache_teacher.json"):
        if (metrics / name).is_file():
            shutil.copy2(metrics / name, out / name)
            written.append(name)
    shutil.copy2(records, out / "records.jsonl")
    written.append("records.jsonl")

    commands = []
    rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    benchmarks = order_benchmarks(row["benchmark"] for row in rows)
    for bench in benchmarks + (["average"] if len(benchmarks) > 1 else []):
        parts = []
        for checkpoint in ("final", "best"):
            args = [str(out / "records.jsonl"), "--benchmark", bench, "--checkpoint", checkpoint]
            parts.append(f"# {checkpoint} checkpoints\n" + _script("per_seed_success.py", *args))
        put(f"per_seed_{bench}.txt", "\n".join(parts))
        commands.append(f"- `per_seed_{bench}.txt`: `python benchmarks/per_seed_success.py records.jsonl "
                        f"--benchmark {bench} --checkpoint final` (then `best`)")
    if "webshop" in benchmarks:
        bench_dir = project / "data" / "benchmarks" / "webshop"
        put("webshop_overlap.txt", _script("webshop_overlap.py", "--benchmark-dir", str(bench_dir),
                                           "--records", str(out / "records.jsonl")))
        commands.append("- `webshop_overlap.txt`: `python benchmarks/webshop_overlap.py --benchmark-dir "
                        "data/benchmarks/webshop --records records.jsonl` in the run's checkout")
        put("webshop_purchases.txt", _script("webshop_purchases.py", "--benchmark-dir", str(bench_dir),
                                             "--records", str(out / "records.jsonl")))
        commands.append("- `webshop_purchases.txt`: `python benchmarks/webshop_purchases.py --benchmark-dir "
                        "data/benchmarks/webshop --records records.jsonl` in the run's checkout (the share of "
                        "episodes that bought and their purchases' score)")

    for bench in benchmarks:
        bench_dir, field = project / "data" / "benchmarks" / bench, GROUP_FIELDS.get(bench)
        if field and _tasks_have(bench_dir, field):
            put(f"success_by_group_{bench}.txt", _script("success_by_group.py", str(out / "records.jsonl"),
                                                          "--tasks", str(bench_dir), "--field", field))
            commands.append(f"- `success_by_group_{bench}.txt`: `python benchmarks/success_by_group.py records.jsonl "
                            f"--tasks data/benchmarks/{bench} --field {field}` in the run's checkout")

    if any(row["checkpoint"] == "best" for row in rows):
        put("claims_best.txt", _script("claims_at_checkpoint.py", str(out / "records.jsonl"), "--checkpoint", "best"))
        commands.append("- `claims_best.txt`: `python benchmarks/claims_at_checkpoint.py records.jsonl --checkpoint "
                        "best` (the paper's claims and ATOD's deltas at the best validation checkpoint)")

    runs = project / "data" / "runs"
    if list(runs.glob("*/*/seed*/metrics.jsonl")):
        put("paired_training.txt", _script("paired_training.py", str(runs), "--plot", str(out / "paired_training.png")))
        if (out / "paired_training.png").is_file():  # not drawn when no two methods share a seed
            written.append("paired_training.png")
        commands.append("- `paired_training.txt`, `paired_training.png`: `python benchmarks/paired_training.py "
                        "data/runs --plot paired_training.png` in the run's checkout (training success of two "
                        "methods compared step by step on the same tasks)")

    params = project / "params.yaml"
    profile = next((line.split(":", 1)[1].split("#")[0].strip() for line in params.read_text().splitlines()
                    if line.startswith("profile:")), "?") if params.is_file() else "?"
    readme = [f"# {title}", "",
              (f"Collected with `python benchmarks/collect_results.py {project} <this folder>` from a checkout at "
              f"commit {_commit(project)} (profile `{profile}`; the experiment's params are in that checkout's "
              "params.yaml and in each MLflow run)."), "",
              ("- `report.md` (figures inline), `report.html`, `comparison_full.json`, `*.png`: the `compare` "
              "stage's report (`reports/`);"),
              "- `comparison.json`, `train.json`, `cache_teacher.json`: the stages' DVC metrics files (`metrics/`);",
              ("- `records.jsonl`: the `evaluate` stage's per-episode outcomes, from which every number can be "
              "recomputed;"), *commands, ""]
    put("README.md", "\n".join(readme))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path, help="the checkout whose pipeline run finished")
    parser.add_argument("out", type=Path, help="the archive folder to create, e.g. docs/results/NAME")
    parser.add_argument("--title", default="Results", help="the archive README's heading")
    args = parser.parse_args()
    for name in collect(args.project.resolve(), args.out, args.title):
        print(args.out / name)


if __name__ == "__main__":
    main()
