"""benchmarks/per_seed_success.py: per-seed success from evaluate records, hand-computed."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "per_seed_success.py"


def _module():
    return load_script("per_seed_success")


def _record(method, seed, split, won, checkpoint="final", benchmark="alfworld"):
    return {"method": method, "benchmark": benchmark, "split": split, "seed": seed,
            "checkpoint": checkpoint, "won": won}


RECORDS = [
    _record("atod", 0, "valid_seen", [1, 0]), _record("atod", 0, "valid_unseen", [1, 1]),   # 3 of 4
    _record("atod", 1, "valid_seen", [0, 0]), _record("atod", 1, "valid_unseen", [1, 0]),   # 1 of 4
    _record("atod", 0, "valid_seen", [0, 0], checkpoint="best"),                            # ignored
    _record("atod", 0, "test", [0, 0, 0], benchmark="webshop"),                             # ignored
    _record("sft", 0, "valid_seen", [1, 0]), _record("sft", 0, "valid_unseen", [0, 0]),     # 1 of 4
]


def test_per_seed_pools_splits_of_one_benchmark_and_checkpoint():
    from atod.eval.compare import EvalRecord

    success = _module().per_seed([EvalRecord.from_json(r) for r in RECORDS], "alfworld", "final")
    assert success == {("atod", 0): 75.0, ("atod", 1): 25.0, ("sft", 0): 25.0}


def test_cli_compares_a_single_run_model_with_every_seed(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    out = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=True).stdout
    assert "atod - sft" in out and "+50.0 / +0.0   mean +25.0" in out
    missing = subprocess.run([sys.executable, str(SCRIPT), str(path), "--benchmark", "searchqa"],
                             check=False, capture_output=True, text=True)
    assert missing.returncode != 0 and "no 'final' records for benchmark 'searchqa'" in missing.stderr


def test_cli_reference_model_and_several_files(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    second.write_text(json.dumps(_record("opd_full", 0, "valid_seen", [0, 0])) + "\n"
                      + json.dumps(_record("opd_full", 0, "valid_unseen", [0, 1])) + "\n")  # 1 of 4
    out = subprocess.run([sys.executable, str(SCRIPT), str(first), str(second), "--reference", "opd_full"],
                         capture_output=True, text=True, check=True).stdout
    assert "opd_full         25.0" in out
    assert "opd_full - atod             -50.0   mean -50.0" in out  # seed 0 only: opd_full ran one seed
    assert "opd_full - sft              +0.0   mean +0.0" in out


def test_average_is_each_seeds_mean_over_benchmarks():
    from atod.eval.compare import EvalRecord

    records = [EvalRecord.from_json(r) for r in RECORDS + [
        _record("atod", 0, "test", [1, 1, 0, 0], benchmark="webshop"),    # with RECORDS' 0 of 3: 2 of 7
        _record("atod", 1, "test", [1, 0, 0, 0], benchmark="webshop"),    # webshop seed 1: 25
        _record("sft", 0, "test", [0, 0, 0, 0, 0], benchmark="webshop"),  # 0
    ]]
    # atod seed 0: (75 + 100 * 2 / 7) / 2; seed 1: (25 + 25) / 2; sft: (25 + 0) / 2; a pair missing one
    # benchmark (opd on alfworld only) has no average
    records.append(EvalRecord.from_json(_record("opd", 0, "valid_seen", [1, 1])))
    success = _module().per_seed_average(records, "final")
    assert success.keys() == {("atod", 0), ("atod", 1), ("sft", 0)}
    assert abs(success[("atod", 0)] - (75 + 200 / 7) / 2) < 1e-9
    assert success[("atod", 1)] == 25.0 and success[("sft", 0)] == 12.5
