"""benchmarks/paired_training.py: training success of two methods compared step by step, by hand."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, load_script

SCRIPT = ROOT / "benchmarks" / "paired_training.py"
pt = load_script("paired_training")


def _run(root: Path, method: str, seed: int, success: list[float], kappa: list[float] | None = None) -> None:
    run = root / method / "alfworld" / f"seed{seed}"
    run.mkdir(parents=True)
    lines = []
    for i, s in enumerate(success):
        rec = {"step": i + 1, "success": s, "turns": 30.0, "step_time_s": 1.0}
        if kappa is not None:
            rec["kappa"] = kappa[i]
        lines.append(rec)
    lines.insert(2, {"step": 2, "val_success": 0.9})  # a validation line: not a training step
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_phases_and_per_seed_means_by_hand(tmp_path):
    # atod: kappa anneals 1 -> 0.5 -> 0.1 and stays: the second phase starts at step 3
    kappa = [1.0, 0.5, 0.1, 0.1]
    _run(tmp_path, "atod", 0, [0.5, 0.5, 0.75, 1.0], kappa)
    _run(tmp_path, "opd", 0, [0.5, 0.25, 0.5, 0.5])
    _run(tmp_path, "atod", 1, [0.25, 0.5, 0.5, 0.5], kappa)
    _run(tmp_path, "opd", 1, [0.25, 0.5, 0.25, 0.25])
    runs = pt.load_runs([tmp_path])
    assert pt.anneal_end(runs, "alfworld")[0] == 3
    diffs = {s: pt.paired_differences(runs[("alfworld", "atod", s)], runs[("alfworld", "opd", s)]) for s in (0, 1)}
    assert diffs == {0: {1: 0.0, 2: 0.25, 3: 0.25, 4: 0.5}, 1: {1: 0.0, 2: 0.0, 3: 0.25, 4: 0.25}}
    rng = np.random.default_rng(0)
    first, second, whole = (pt.phase_row(diffs, 2, 2, rng), pt.phase_row(diffs, 3, 4, rng),
                            pt.phase_row(diffs, 2, 4, rng))
    assert first["steps"] == 2 and first["mean"] == pytest.approx(100 * 0.25 / 2)
    assert second["mean"] == pytest.approx(100 * 1.25 / 4)
    assert whole["per_seed"] == pytest.approx({0: 100 * 1.0 / 3, 1: 100 * 0.5 / 3})
    # each seed's second phase (2 steps) is one 2-step block: every resample is the series itself
    assert second["ci"] == pytest.approx((31.25, 31.25))
    text = pt.report(runs, [("atod", "opd")], None)
    assert "steps 2-2 | 3-4 | all" in text and "step 1 identical across methods for seeds [0, 1]" in text
    assert "phase 2 starts at step 3: the end of annealing: atod seed 1's kappa reached 0.1 at step 3" in text
    assert "0:+25.0|+37.5 1:+0.0|+25.0" in text


def test_a_step_logged_twice_counts_once_and_a_different_start_is_reported(tmp_path):
    _run(tmp_path, "grpo", 0, [0.5, 0.0])
    _run(tmp_path, "opd", 0, [0.25, 0.0])
    metrics = tmp_path / "grpo" / "alfworld" / "seed0" / "metrics.jsonl"
    with metrics.open("a") as f:  # step 2 again after a resume, then a line being written
        f.write(json.dumps({"step": 2, "success": 1.0, "step_time_s": 1.0}) + "\n{\"step\": 3, \"succ")
    steps = pt.read_steps(metrics)
    assert sorted(steps) == [1, 2] and steps[2]["success"] == 1.0
    runs = pt.load_runs([tmp_path])
    assert "step 1 differs between methods for seed(s) [0]" in pt.step_one_check(runs, "alfworld")
    assert pt.anneal_end(runs, "alfworld") == (2, "the middle of the run (no atod run has finished annealing)")


def test_block_bootstrap_by_hand():
    rng = np.random.default_rng(0)
    series = np.array([0.0, 0.0, 1.0, 1.0])
    # blocks as long as the series: the one block starting at 0, every resample the series itself
    assert np.all(pt.block_bootstrap([series], 100, rng, block=4) == 0.5)
    # 2-step blocks start at 0, 1 or 2 (sums 0, 1, 2); two blocks a resample: means in {0, 1/4, ..., 1},
    # each block sum 1 on average, so the resampled mean is 2 x 1 / 4 = 0.5 on average
    dist = pt.block_bootstrap([series], 20_000, rng, block=2)
    assert set(np.unique(dist)) <= {0.0, 0.25, 0.5, 0.75, 1.0} and dist.min() == 0.0 and dist.max() == 1.0
    assert dist.mean() == pytest.approx(0.5, abs=0.01)
    # two seeds pooled by steps: a constant seed of 3 steps at 1.0 and one of 1 step at 0.0 -> always 3/4
    assert np.all(pt.block_bootstrap([np.ones(3), np.zeros(1)], 50, rng, block=2) == 0.75)


def test_end_of_annealing_from_the_longest_atod_run_and_pairs_sharing_step_one_only(tmp_path):
    _run(tmp_path, "atod", 0, [0.5, 0.5], [1.0, 0.6])  # still annealing
    _run(tmp_path, "atod", 1, [0.5, 0.5, 0.5, 0.5, 0.5], [1.0, 0.6, 0.2, 0.1, 0.1])
    runs = pt.load_runs([tmp_path])
    assert pt.anneal_end(runs, "alfworld")[0] == 4
    shutil.rmtree(tmp_path / "atod" / "alfworld" / "seed1")
    runs = pt.load_runs([tmp_path])
    assert pt.anneal_end(runs, "alfworld")[0] == 2  # seed 0 alone, mid-schedule: the middle of its 2 steps
    _run(tmp_path, "atod", 2, [0.5] * 6, [1.0] * 6)  # a constant schedule never anneals: the middle
    assert pt.anneal_end(pt.load_runs([tmp_path]), "alfworld") == (
        4, "the middle of the run (no atod run has finished annealing)")
    shutil.rmtree(tmp_path / "atod" / "alfworld" / "seed2")
    _run(tmp_path, "opd", 0, [0.25])  # shares step 1 only with atod seed 0: no row, no error
    assert "atod - opd" not in pt.report(pt.load_runs([tmp_path]), [("atod", "opd")], None)


def test_command_line_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                              check=False)

    empty = run(tmp_path)
    assert empty.returncode != 0 and "no <method>/<benchmark>/seed<k>/metrics.jsonl" in empty.stderr
    _run(tmp_path, "atod", 0, [0.5, 0.5], [1.0, 0.1])
    _run(tmp_path, "opd", 0, [0.5, 0.0])
    bad = run(tmp_path, "--pairs", "atod-opd")
    assert bad.returncode != 0 and "'atod-opd' is not METHOD:METHOD" in bad.stderr
    ok = run(tmp_path, "--pairs", "atod:opd", "--plot", tmp_path / "fig" / "paired.png")
    assert ok.returncode == 0 and "atod - opd" in ok.stdout and "+50.0" in ok.stdout
    assert (tmp_path / "fig" / "paired.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unpaired = run(tmp_path, "--pairs", "grpo:opd", "--plot", tmp_path / "none.png")
    assert unpaired.returncode == 0 and "no pair of methods has runs" in unpaired.stderr
    assert not (tmp_path / "none.png").exists()
