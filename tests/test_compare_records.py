"""benchmarks/compare_records.py: merging the records of several experiments into one report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

from atod.eval.compare import EvalRecord

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_records.py"
ROOT = SCRIPT.parents[1]


def _module():
    return load_script("compare_records")


def _record(method, seed, split, won):
    return {"method": method, "benchmark": "alfworld", "split": split, "seed": seed, "checkpoint": "final",
            "won": won, "task_ids": [f"{split}/t{i}" for i in range(len(won))]}


def test_merge_keeps_each_model_once_and_refuses_a_name_clash():
    merge = _module().merge_records
    a = [EvalRecord.from_json(_record("sft", 0, "valid_seen", [1, 0])),
         EvalRecord.from_json(_record("opd", 0, "valid_seen", [0, 0]))]
    b = [EvalRecord.from_json(_record("sft", 0, "valid_seen", [1, 0])),  # the same model evaluated again
         EvalRecord.from_json(_record("opd_full", 0, "valid_seen", [1, 1]))]
    merged = merge([a, b])
    assert sorted(r.method for r in merged) == ["opd", "opd_full", "sft"]
    clash = [EvalRecord.from_json(_record("opd", 0, "valid_seen", [1, 0]))]  # another "opd" model
    with pytest.raises(SystemExit, match="differs between the record files"):
        merge([a, clash])


def test_find_runs_reads_method_benchmark_seed_from_the_layout(tmp_path):
    find_runs = _module().find_runs
    for root, method, seed in [("x", "opd", 0), ("x", "opd", 1), ("y", "opd_full", 0), ("y", "opd", 0)]:
        path = tmp_path / root / method / "alfworld" / f"seed{seed}" / "metrics.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"step": 1, "reward": 0.0}) + "\n")
    runs = find_runs([tmp_path / "x", tmp_path / "y"], None)
    assert [(r.method, r.benchmark, r.seed) for r in runs] == [("opd", "alfworld", 0), ("opd", "alfworld", 1),
                                                             ("opd_full", "alfworld", 0)]
    assert runs[0].metrics_path == tmp_path / "x" / "opd" / "alfworld" / "seed0" / "metrics.jsonl"  # first root wins
    assert [r.method for r in find_runs([tmp_path / "y"], {"opd_full"})] == ["opd_full"]


def test_cli_writes_one_report(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps(_record(m, 0, "valid_seen", w)) + "\n"
                             for m, w in [("opd", [0, 0, 1, 0]), ("teacher", [1, 1, 1, 0])]))
    second.write_text(json.dumps(_record("opd_full", 0, "valid_seen", [1, 0, 1, 0])) + "\n")
    out = tmp_path / "report"
    subprocess.run([sys.executable, str(SCRIPT), str(first), str(second), "--out", str(out),
                    "--params", str(ROOT / "params.yaml")], check=True, capture_output=True, text=True)
    table = json.loads((out / "comparison.json").read_text())
    assert table["alfworld"]["opd_full"]["success"] == pytest.approx(0.5)
    assert table["alfworld"]["opd"]["success"] == pytest.approx(0.25)
    assert "opd_full" in (out / "report.md").read_text()
