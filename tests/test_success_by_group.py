"""benchmarks/success_by_group.py: success by a task property from evaluate records, hand-computed."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "success_by_group.py"


def _task(split, task_id, kind):
    return {"benchmark": "alfworld", "goal": "g", "split": split, "task_id": task_id, "payload": {"task_type": kind}}


def _record(method, seed, split, task_ids, won, checkpoint="final"):
    return {"method": method, "benchmark": "alfworld", "split": split, "seed": seed, "checkpoint": checkpoint,
            "won": won, "task_ids": [f"{split}/{t}" for t in task_ids]}


def _write(tmp_path):
    tasks = tmp_path / "alfworld"
    tasks.mkdir()
    (tasks / "valid_seen.jsonl").write_text("".join(json.dumps(t) + "\n" for t in (
        _task("valid_seen", "a", "heat"), _task("valid_seen", "b", "heat"), _task("valid_seen", "c", "look"))))
    (tasks / "valid_unseen.jsonl").write_text(json.dumps(_task("valid_unseen", "a", "look")) + "\n")
    records = [
        # atod, two seeds: heat a 1,1  b 0,1 -> 3 of 4; look c 0,0 and unseen a 1,1 -> 2 of 4
        _record("atod", 0, "valid_seen", ["a", "b", "c"], [1, 0, 0]), _record("atod", 0, "valid_unseen", ["a"], [1]),
        _record("atod", 1, "valid_seen", ["a", "b", "c"], [1, 1, 0]), _record("atod", 1, "valid_unseen", ["a"], [1]),
        _record("atod", 0, "valid_seen", ["a", "b", "c"], [0, 0, 0], checkpoint="best"),  # ignored
        # sft, one run: heat a 1, b 0 -> 1 of 2; look c 1, unseen a 0 -> 1 of 2
        _record("sft", 0, "valid_seen", ["a", "b", "c"], [1, 0, 1]), _record("sft", 0, "valid_unseen", ["a"], [0]),
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, tasks


def test_success_pools_seeds_per_group_and_deltas_pair_tasks(tmp_path):
    from atod.eval.compare import load_records

    module = load_script("success_by_group")
    path, tasks = _write(tmp_path)
    (tasks / "train.jsonl").write_text(json.dumps({"id": "d1", "text": "not read"}) + "\n")  # evaluation splits only
    benchmark, groups = module.task_groups(tasks, "task_type")
    assert benchmark == "alfworld" and groups == {"valid_seen/a": "heat", "valid_seen/b": "heat", "valid_seen/c": "look", "valid_unseen/a": "look"}
    episodes = module.episodes_by_group(load_records(path), groups, "final")
    table = module.success_table(episodes)
    assert list(table.columns) == ["heat (2)", "look (2)"] and list(table.index) == ["atod", "sft"]
    assert table.loc["atod", "heat (2)"] == 75.0 and table.loc["atod", "look (2)"] == 50.0
    assert table.loc["sft", "heat (2)"] == 50.0 and table.loc["sft", "look (2)"] == 50.0
    out = subprocess.run([sys.executable, str(SCRIPT), str(path), "--tasks", str(tasks)],
                         capture_output=True, text=True, check=True).stdout
    # heat, per task: atod a 1.0 b 0.5, sft a 1 b 0 -> deltas 0 and +0.5, mean +25 points;
    # look: atod c 0 unseen-a 1, sft c 1 unseen-a 0 -> -1 and +1, mean 0
    assert "+25.0 [" in out and "+0.0 [" in out and "atod - sft" in out


def test_missing_tasks_or_fields_are_errors_that_name_them(tmp_path):
    path, tasks = _write(tmp_path)

    def run(*extra):
        proc = subprocess.run([sys.executable, str(SCRIPT), str(path), "--tasks", str(tasks), *extra],
                              capture_output=True, text=True, check=False)
        assert proc.returncode != 0
        return proc.stderr

    assert "4 alfworld task(s) have no payload field 'kind', e.g. valid_seen/a" in run("--field", "kind")
    (tasks / "valid_seen.jsonl").write_text(json.dumps(_task("valid_seen", "a", "heat")) + "\n")
    assert "task 'valid_seen/b' of atod's records is not in the task files" in run()
    (tasks / "valid_unseen.jsonl").unlink()
    assert "valid_unseen.jsonl not found: the prepare stage writes it" in run()
