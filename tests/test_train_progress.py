"""benchmarks/train_progress.py: the state of every run a train stage's params ask for, by hand."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, load_script

from atod.config import load_params
from tasks.stages.train import run_inputs_digest, work_dir

SCRIPT = ROOT / "benchmarks" / "train_progress.py"


def _project(tmp_path: Path) -> Path:
    """A project root whose params ask for grpo and opd x searchqa x seeds 0, 1, 10 steps, 2 at once."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "default"
    raw["train"].update(methods=["grpo", "opd"], benchmarks=["searchqa"], seeds=[0, 1], steps=10, parallel_runs=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp_path


def _run(root: Path, method: str, seed: int, step_times: list[float], done: bool = False) -> Path:
    params = load_params(root / "params.yaml")
    run = work_dir(root, method, "searchqa", seed, run_inputs_digest(params, root, "searchqa"))
    run.mkdir(parents=True)
    lines = [{"step": i + 1, "success": 0.5, "step_time_s": t} for i, t in enumerate(step_times)]
    lines.insert(1, {"step": 1, "val_score": 0.2})  # a validation line: no step time, not a step
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if done:
        (run / "summary.json").write_text("{}")
    return run


def test_rows_by_hand(tmp_path):
    root = _project(tmp_path)
    _run(root, "grpo", 0, [5.0] * 10, done=True)
    _run(root, "grpo", 1, [10.0, 30.0, 20.0])               # step 3, median 20 s: 7 steps x 20 s left
    stale = _run(root, "opd", 0, [60.0])                    # written an hour ago: stopped, 9 x 60 s left
    old = time.time() - 3600
    os.utime(stale / "metrics.jsonl", (old, old))
    table, workers = load_script("train_progress").progress(root, root / "params.yaml", time.time())
    rows = {(r.method, r.seed): r for r in table.itertuples()}
    assert workers == 2 and len(rows) == 4
    assert (rows["grpo", 0].state, rows["grpo", 0].left_min) == ("done", 0.0)
    assert (rows["grpo", 1].state, rows["grpo", 1].step, rows["grpo", 1].median_step_s) == ("running", 3, 20.0)
    assert rows["grpo", 1].left_min == round(7 * 20 / 60, 1)
    assert (rows["opd", 0].state, rows["opd", 0].left_min) == ("stopped", 9.0)
    assert (rows["opd", 1].state, rows["opd", 1].left_min) == ("not started", 10.0)  # opd's median, 10 steps


def test_cli_totals_and_a_run_from_other_inputs_is_not_counted(tmp_path):
    root = _project(tmp_path)
    other = _run(root, "grpo", 0, [1.0], done=True)
    shutil.move(other.parents[3], other.parents[4] / "0123abcd")  # another digest: other code, data or config
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True, text=True,
                         check=True).stdout
    assert "4 runs: {'not started': 4}" in out and "(4 runs with no estimate yet)" in out


def test_best_validation_and_a_line_being_written(tmp_path):
    """best_val_% is the highest val_success (its first step when tied); a half-written last line (the run
    appending as the script reads) is skipped, not an error."""
    root = _project(tmp_path)
    run = _run(root, "grpo", 0, [5.0, 5.0, 5.0, 5.0])
    with (run / "metrics.jsonl").open("a") as f:
        for step, success in ((2, 0.25), (3, 0.5), (4, 0.5)):
            f.write(json.dumps({"step": step, "val_success": success}) + "\n")
        f.write('{"step": 5, "success": 0.')  # torn
    table, _ = load_script("train_progress").progress(root, root / "params.yaml", time.time())
    row = table[(table.method == "grpo") & (table.seed == 0)].iloc[0]
    assert (row.state, row.step, row["best_val_%"], row.best_val_step) == ("running", 4, 50.0, 3)
    other = table[(table.method == "opd") & (table.seed == 1)].iloc[0]
    assert other.state == "not started" and other["best_val_%"] != other["best_val_%"]  # NaN: no check yet


def test_trends_by_hand(tmp_path):
    """--trends 2: means of the first and last 2 training steps, first and last validation success; a
    finished run whose work directory is gone is read from data/runs."""
    root = _project(tmp_path)
    run = _run(root, "grpo", 0, [5.0, 5.0, 5.0])
    lines = [{"step": 1, "success": 0.0, "entropy": 1.0, "kl_teacher": 0.5, "step_time_s": 5.0},
             {"step": 2, "success": 0.5, "entropy": 0.8, "kl_teacher": 0.3, "step_time_s": 5.0},
             {"step": 2, "val_success": 0.25},
             {"step": 3, "success": 1.0, "entropy": 0.4, "kl_teacher": 0.1, "step_time_s": 5.0},
             {"step": 3, "val_success": 0.75}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    published = root / "data" / "runs" / "opd" / "searchqa" / "seed1"
    shutil.copytree(run, published)
    (published / "summary.json").write_text("{}")
    (published / "inputs.json").write_text(json.dumps({"digest": run.parents[2].name}))
    table, _ = load_script("train_progress").progress(root, root / "params.yaml", time.time(), window=2)
    row = table[(table.method == "grpo") & (table.seed == 0)].iloc[0]
    assert (row.success_first, row.success_last) == (0.25, 0.75)
    assert (row.entropy_first, row.entropy_last) == pytest.approx((0.9, 0.6))
    assert (row.kl_teacher_first, row.kl_teacher_last) == pytest.approx((0.4, 0.2))
    assert (row.val_first, row.val_last) == (0.25, 0.75)
    assert row.score_first != row.score_first  # NaN: not logged
    done = table[(table.method == "opd") & (table.seed == 1)].iloc[0]
    assert done.state == "done" and (done.success_first, done.val_last) == (0.25, 0.75)
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), "--trends", "2"], capture_output=True,
                         text=True, check=True).stdout
    assert "first and last 2 training steps" in out and "means over seeds:" in out
