"""benchmarks/train_progress.py: the state of a train stage's runs from their work directories, by hand."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_progress.py"


def _module():
    return load_script("train_progress")


def _run(digest_dir: Path, method: str, seed: int, step_times: list[float], done: bool = False) -> Path:
    run = digest_dir / method / "alfworld" / f"seed{seed}"
    run.mkdir(parents=True)
    lines = [{"step": i + 1, "success": 0.5, "step_time_s": t} for i, t in enumerate(step_times)]
    lines.insert(1, {"step": 1, "val_score": 0.2})  # a validation line: no step time, not a step
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if done:
        (run / "summary.json").write_text("{}")
    return run


def test_rows_by_hand(tmp_path):
    digest = tmp_path / "abc"
    _run(digest, "atod", 0, [10.0, 30.0, 20.0])                 # step 3, median 20 s: 7 steps x 20 s left
    _run(digest, "grpo", 1, [5.0, 5.0, 5.0, 5.0], done=True)
    stale = _run(digest, "opd", 2, [60.0])
    old = time.time() - 3600
    os.utime(stale / "metrics.jsonl", (old, old))                # written an hour ago: not running
    rows = {r["method"]: r for r in _module().run_rows(digest, steps=10, now=time.time())}
    assert (rows["atod"]["state"], rows["atod"]["step"], rows["atod"]["median_step_s"]) == ("running", 3, 20.0)
    assert rows["atod"]["left_min"] == round(7 * 20 / 60, 1)
    assert (rows["grpo"]["state"], rows["grpo"]["left_min"]) == ("done", 0.0)
    assert (rows["opd"]["state"], rows["opd"]["left_min"]) == ("stopped", 9.0)


def test_cli_reads_the_latest_digest_and_says_when_there_is_nothing(tmp_path):
    work = tmp_path / ".atod" / "resume" / "train"
    _run(work / "old", "grpo", 0, [1.0])
    os.utime(work / "old" / "grpo" / "alfworld" / "seed0" / "metrics.jsonl", (0, 0))
    _run(work / "new", "atod", 0, [2.0, 2.0])
    out = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path), "--steps", "4"],
                         capture_output=True, text=True, check=True).stdout
    assert "new (4 steps a run)" in out and "atod" in out and "grpo" not in out
    empty = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path / "none"), "--steps", "4"],
                           check=False, capture_output=True, text=True)
    assert empty.returncode != 0 and "no training runs under" in empty.stderr
