"""Fast checks of the pipeline plumbing: dvc.yaml vs the params each stage reads, DVC-compatible
fingerprints, profile switching, ablation overrides and MLflow parent/child nesting (no stage compute)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.ablation import apply_overrides, override_key, setting_overrides
from flows.pipeline import STAGES as FLOW_STAGES
from flows.pipeline import set_profile
from tasks import tracking
from tasks.params_keys import has, lookup
from tasks.stages import STAGE_FUNCTIONS, STAGES, dvc_params


def _dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_dvc_yaml_declares_every_stage_with_its_command():
    from atod.cli import StageName

    stages = _dvc_yaml()["stages"]
    assert list(stages) == list(STAGES) == list(FLOW_STAGES) == list(STAGE_FUNCTIONS)
    assert [s.value for s in StageName] == list(STAGES)  # `atod stage NAME` accepts every stage
    for name, spec in stages.items():
        assert spec["cmd"] == f"atod stage {name}"
        # the shared module and the stage's own module, whose stage function is the one that runs
        module = STAGE_FUNCTIONS[name].__module__.rsplit(".", 1)[-1]
        assert spec["deps"][:2] == ["tasks/stages/common.py", f"tasks/stages/{module}.py"], name
        assert (ROOT / "tasks" / "stages" / f"{module}.py").is_file()
        assert not any(d.startswith("tasks/") for d in spec["deps"][2:]), name


def test_dvc_params_are_exactly_what_each_stage_reads():
    """Only the keys a stage reads, plus every existing profile override of them (DVC refuses missing
    keys, and a missing override would let a profile change go unnoticed)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = _dvc_yaml()["stages"]
    for name in STAGES:
        assert sorted(stages[name]["params"]) == sorted(dvc_params(name, raw)), name


def test_dvc_params_handle_dotted_keys_and_their_profile_overrides():
    raw = {"profile": "smoke", "sft_warmup": {"seed": 0, "teacher": {"steps": 9}, "student": {"steps": 1}},
           "profiles": {"smoke": {"sft_warmup": {"teacher": {"steps": 2}}},
                        "gpu": {"sft_warmup": {"seed": None}}}}
    keys = dvc_params("sft_teacher", raw)
    assert "profiles.smoke.sft_warmup.teacher" in keys and "profiles.gpu.sft_warmup.seed" in keys
    assert not any(k.endswith("sft_warmup.student") for k in keys)
    assert "profiles.smoke.sft_warmup.teacher" not in dvc_params("sft_student", raw)


def test_dotted_key_lookup_tells_missing_from_null():
    tree = {"a": {"b": None, "c": [1]}, "x": 3}
    assert has(tree, "a.b") and lookup(tree, "a.b", "default") is None  # present, null
    assert not has(tree, "a.d") and lookup(tree, "a.d") is None and lookup(tree, "a.d", 7) == 7
    assert not has(tree, "x.y") and not has(None, "a")  # through a non-dict
    assert lookup(tree, "a.c") == [1] and has(tree, "a")


def test_metrics_are_uncached_json_and_outputs_live_under_data_or_reports():
    for name, spec in _dvc_yaml()["stages"].items():
        for out in spec.get("outs", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert path.startswith(("data/", "reports")), (name, out)
            if not isinstance(out, str):  # only the resumable stages keep their output between executions
                assert out == {path: {"persist": True}} and path in ("data/runs", "data/eval"), (name, out)
        for m in spec["metrics"]:
            (path, opts), = m.items()
            assert path.startswith("metrics/") and opts == {"cache": False}, (name, m)


def test_dvc_md5_matches_dvc_rules(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("hello\n")
    assert tracking.dvc_md5(f) == hashlib.md5(b"hello\n").hexdigest()
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "x.py").write_text("x = 1\n")
    (d / "sub" / "y.py").write_text("y = 2\n")
    before = tracking.dvc_md5(d)
    listing = [{"md5": hashlib.md5(b"y = 2\n").hexdigest(), "relpath": "sub/y.py"},
               {"md5": hashlib.md5(b"x = 1\n").hexdigest(), "relpath": "x.py"}]
    assert before == hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert tracking.dvc_md5(d) == before  # byte-code caches are ignored, as in .dvcignore
    (d / "x.py").write_text("x = 3\n")
    assert tracking.dvc_md5(d) != before
    assert tracking.dvc_md5(tmp_path / "missing") is None


def test_inputs_digest_equals_digest_of_a_lock_entry(tmp_path):
    (tmp_path / "code.py").write_text("print(1)\n")
    (tmp_path / "params.yaml").write_text("profile: smoke\ns: {a: 1, b: [1, 2]}\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"st": {"cmd": "true", "deps": ["code.py"], "params": ["profile", "s.b"]}}}))
    lock = {"cmd": "true", "deps": [{"path": "code.py", "hash": "md5", "md5": hashlib.md5(b"print(1)\n").hexdigest()}],
            "params": {"params.yaml": {"s.b": [1, 2], "profile": "smoke"}}}
    assert tracking.current_inputs_digest(tmp_path, "st") == tracking.lock_inputs_digest(lock)
    (tmp_path / "params.yaml").write_text("profile: smoke\ns: {a: 1, b: [1, 3]}\n")
    assert tracking.current_inputs_digest(tmp_path, "st") != tracking.lock_inputs_digest(lock)
    assert tracking.current_inputs_digest(tmp_path, "nope") is None


def test_job_digests_leave_out_report_only_code(tmp_path, monkeypatch):
    """Editing the report's code (compare/plots) keeps finished training runs and evaluations; editing
    any other library file, or the config, does not."""
    from tasks.stages import common

    for rel in ("atod/eval/compare.py", "atod/eval/plots.py", "atod/eval/evaluate.py", "atod/train/trainer.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\n")
    monkeypatch.setattr(common, "CODE_ROOT", tmp_path)
    before = common.inputs_digest(("atod",), {}, {"lr": 1})
    (tmp_path / "atod/eval/compare.py").write_text("# another table\n")
    (tmp_path / "atod/eval/plots.py").write_text("# another figure\n")
    assert common.inputs_digest(("atod",), {}, {"lr": 1}) == before
    assert common.inputs_digest(("atod",), {}, {"lr": 2}) != before
    (tmp_path / "atod/train/trainer.py").write_text("# another loss\n")
    assert common.inputs_digest(("atod",), {}, {"lr": 1}) != before


def test_set_profile_keeps_the_rest_of_the_file(tmp_path):
    p = tmp_path / "params.yaml"
    text = "# header\nprofile: default   # pick one\nprepare:\n  seed: 0\nprofiles:\n  smoke: {}\n"
    p.write_text(text)
    assert set_profile(p, "smoke") is True
    assert p.read_text() == text.replace("profile: default   # pick one", "profile: smoke  # pick one")
    assert set_profile(p, "smoke") is False
    with pytest.raises(ValueError, match="unknown profile"):
        set_profile(p, "huge")


def test_set_profile_replaces_the_file_atomically(tmp_path, monkeypatch):
    p = tmp_path / "params.yaml"
    p.write_text("profile: default  # pick one\nprepare:\n  seed: 0\n")
    p.chmod(0o640)
    os.link(p, tmp_path / "reader.yaml")  # a reader holding the old file
    assert set_profile(p, "smoke") is True
    assert p.read_text() == "profile: smoke  # pick one\nprepare:\n  seed: 0\n"
    # a new file renamed over the old one, not the old one rewritten in place
    assert (tmp_path / "reader.yaml").read_text() == "profile: default  # pick one\nprepare:\n  seed: 0\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert sorted(f.name for f in tmp_path.iterdir()) == ["params.yaml", "reader.yaml"]

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)  # a failure before the swap: the file as it was, no temporary
    with pytest.raises(OSError, match="disk full"):
        set_profile(p, "default")
    assert p.read_text() == "profile: smoke  # pick one\nprepare:\n  seed: 0\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["params.yaml", "reader.yaml"]


def test_ablation_overrides_respect_profile_overrides():
    from atod.config import resolve

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw.setdefault("profiles", {}).setdefault("gpu", {}).setdefault("train", {})["methods"] = ["grpo"]
    assert override_key(raw, "gpu", "train.methods") == "profiles.gpu.train.methods"
    assert override_key(raw, "smoke", "train.nonexistent") == "train.nonexistent"
    for profile in ("smoke", "gpu"):
        ov = setting_overrides(raw, profile, "atod_uniform", [3], ["webshop"])
        params = resolve(apply_overrides(raw, ov), profile=profile)
        assert (params.train.methods, params.train.seeds, params.train.benchmarks) == (["atod_uniform"], [3], ["webshop"])


def test_trained_runs_leave_out_seqkd_in_the_stages_order():
    from atod.config import resolve
    from tasks.stages import trained_runs

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(methods=["grpo", "seqkd", "atod"], benchmarks=["webshop", "alfworld"], seeds=[2, 0])
    assert trained_runs(resolve(raw, profile="default")) == [
        ("grpo", "webshop", 2), ("grpo", "webshop", 0), ("grpo", "alfworld", 2), ("grpo", "alfworld", 0),
        ("atod", "webshop", 2), ("atod", "webshop", 0), ("atod", "alfworld", 2), ("atod", "alfworld", 0)]


def test_invocation_key_without_dvc_is_this_process():
    launcher, key = tracking.invocation_key()
    assert launcher == "cli" and key.startswith(f"{__import__('os').getpid()}:")


@pytest.fixture
def mlflow_db(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "plumbing-test")
    return tmp_path


def test_stages_of_one_invocation_nest_under_one_parent(mlflow_db, monkeypatch):
    """Same invocation key -> same parent; the parent ends FINISHED after each stage, FAILED on a failure;
    a new invocation gets a new parent."""
    from mlflow import MlflowClient

    from atod.config import load_params

    params = load_params(ROOT / "params.yaml", profile="smoke")
    monkeypatch.setattr(tracking, "invocation_key", lambda: ("dvc", "123:1.0"))
    ids = []
    for stage in ("prepare", "sft_teacher"):
        with tracking.stage_run(mlflow_db, stage, params) as run_id:
            tracking.log_metrics({"x": 1.0, "skip": "text"}, step=2)
            with tracking.child_run("job", {"method": "atod", "seed": 0}) as job_id:
                tracking.log_metrics({"reward": 0.5}, step=1, run_id=job_id)
            ids.append(run_id)
    client = MlflowClient()
    job = client.get_run(job_id)
    assert job.data.tags["mlflow.parentRunId"] == ids[-1] and job.data.tags["method"] == "atod"
    assert job.info.experiment_id == client.get_run(ids[-1]).info.experiment_id  # same experiment as its stage
    parents = {client.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.status == "FINISHED" and parent.data.tags["atod.launcher"] == "dvc"
    assert parent.data.params["train.methods"] == json.dumps(params.train.methods)
    assert client.get_run(ids[0]).data.metrics == {"x": 1.0}

    with pytest.raises(RuntimeError, match="boom"), tracking.stage_run(mlflow_db, "train", params):
        raise RuntimeError("boom")
    assert client.get_run(parent.info.run_id).info.status == "FAILED"

    monkeypatch.setattr(tracking, "invocation_key", lambda: ("dvc", "456:2.0"))
    with tracking.stage_run(mlflow_db, "prepare", params) as other:
        pass
    assert client.get_run(other).data.tags["mlflow.parentRunId"] != parent.info.run_id


def test_runs_of_a_killed_invocation_are_marked_killed(mlflow_db, monkeypatch):
    """A pipeline killed mid-stage leaves its parent, stage and job runs RUNNING; the next invocation's
    first stage marks them KILLED, and leaves live invocations and flow-owned parents alone."""
    import subprocess

    import psutil
    from mlflow import MlflowClient

    from atod.config import load_params

    params = load_params(ROOT / "params.yaml", profile="smoke")
    client = MlflowClient()
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    gone_key = f"{gone.pid}:{psutil.Process(gone.pid).create_time():.3f}"
    gone.wait()
    me = psutil.Process()
    killed_parent = tracking.create_parent_run(mlflow_db, params, launcher="dvc",
                                               extra_tags={"atod.invocation": gone_key})
    exp = client.get_run(killed_parent).info.experiment_id
    killed_stage = client.create_run(exp, run_name="train", tags={"mlflow.parentRunId": killed_parent}).info.run_id
    killed_job = client.create_run(exp, run_name="grpo-alfworld-seed0",
                                   tags={"mlflow.parentRunId": killed_stage}).info.run_id
    live = tracking.create_parent_run(mlflow_db, params, launcher="dvc",
                                      extra_tags={"atod.invocation": f"{me.pid}:{me.create_time():.3f}"})
    flow_owned = tracking.create_parent_run(mlflow_db, params, launcher="prefect")
    for run_id in (killed_parent, killed_stage, killed_job):
        assert client.get_run(run_id).info.status == "RUNNING"

    monkeypatch.setattr(tracking, "invocation_key", lambda: ("dvc", "999999:1.0"))
    with tracking.stage_run(mlflow_db, "prepare", params):
        pass
    for run_id in (killed_parent, killed_stage, killed_job):
        assert client.get_run(run_id).info.status == "KILLED", run_id
    assert client.get_run(live).info.status == "RUNNING" and client.get_run(flow_owned).info.status == "RUNNING"


def test_parent_from_environment_is_used_and_left_to_its_owner(mlflow_db, monkeypatch):
    from mlflow import MlflowClient

    from atod.config import load_params

    params = load_params(ROOT / "params.yaml", profile="smoke")
    parent = tracking.create_parent_run(mlflow_db, params, launcher="prefect")
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent)
    with tracking.stage_run(mlflow_db, "compare", params) as run_id:
        pass
    client = MlflowClient()
    assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(parent).info.status == "RUNNING"  # the flow ends it, not the stage


def test_a_profile_override_dvc_yaml_does_not_list_is_refused(tmp_path, monkeypatch):
    """A profile override added to params.yaml that dvc.yaml does not list would leave `dvc repro` saying
    "up to date" after a change: `atod config validate` (run by scripts/run.sh) and every stage refuse it,
    naming the line to add and where."""
    from tasks.params_keys import check_dvc_params, undeclared_dvc_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc_yaml = _dvc_yaml()
    assert undeclared_dvc_params(dvc_yaml, raw) == []
    raw["profiles"]["gpu"]["agent"] = {"max_new_tokens": 256}
    missing = undeclared_dvc_params(dvc_yaml, raw)
    assert ("train", "profiles.gpu.agent") in missing and ("evaluate", "profiles.gpu.agent") in missing
    assert all(key == "profiles.gpu.agent" for _, key in missing)
    assert not any(stage in ("prepare", "compare") for stage, _ in missing)  # they do not read `agent`
    # a stage's params written as {file: [keys]} count too
    as_dict = {"stages": {"train": {"params": [{"params.yaml": dvc_params("train", raw)}]}}}
    assert undeclared_dvc_params(as_dict, raw) == []

    (tmp_path / "tasks").mkdir()
    shutil.copy2(ROOT / "tasks" / "params_keys.py", tmp_path / "tasks" / "params_keys.py")
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ValueError, match=r"stages.train.params: add `- profiles.gpu.agent`"):
        check_dvc_params(tmp_path / "params.yaml")
    proc = subprocess.run([sys.executable, "-m", "atod.cli", "config", "validate", "--params",
                           str(tmp_path / "params.yaml")], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2 and "would not rerun them" in proc.stderr
    assert "stages.cache_teacher.params: add `- profiles.gpu.agent`" in proc.stderr
    # another params file is not DVC's (benchmarks/gpu_repro.py runs the stages with its own)
    (tmp_path / "params.gpu_repro.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    check_dvc_params(tmp_path / "params.gpu_repro.yaml")
    # as DVC does, a listed ancestor covers a key, and `params.yaml:` with no keys the whole file
    covered = {"stages": {"train": {"params": [*dvc_params("train", yaml.safe_load((ROOT / "params.yaml").read_text())),
                                               "profiles.gpu"]},
                          "evaluate": {"params": [{"params.yaml": None}]}}}
    assert undeclared_dvc_params(covered, raw) == []
    # the parallel evaluate flow (which calls the stage's functions, not `atod stage`) refuses it too,
    # before it asks DVC whether the stage changed
    import atod.project_env
    from flows.evaluate import evaluate_flow

    monkeypatch.setattr(atod.project_env, "configure_environment", lambda root=None: tmp_path)
    with pytest.raises(ValueError, match=r"stages.evaluate.params: add `- profiles.gpu.agent`"):
        evaluate_flow.fn()


def test_evaluate_names_every_missing_input_before_evaluating(tmp_path):
    """`atod stage evaluate` (or the evaluate flow) run before the stages that make its models: one error
    naming each missing model and task set and its stage, before any model is evaluated."""
    from atod.config import resolve
    from tasks.stages import evaluation_jobs

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(methods=["grpo"], benchmarks=["searchqa"], seeds=[0])
    params = resolve(raw, profile="default")
    with pytest.raises(FileNotFoundError) as exc:
        evaluation_jobs(params, tmp_path)
    message = str(exc.value)
    for fragment in ("evaluate needs 6 input(s) that are not there", "data/benchmarks/searchqa (stage prepare)",
                     "data/models/init/student (stage prepare)", "data/models/student_sft (stage sft_student)",
                     "data/models/student_seqkd (stage cache_teacher)", "data/models/teacher (stage sft_teacher)",
                     "data/runs/grpo/searchqa/seed0/final (stage train)"):
        assert fragment in message, message
    for d in ("data/benchmarks/searchqa", "data/models/init/student", "data/models/student_sft",
              "data/models/student_seqkd", "data/models/teacher", "data/runs/grpo/searchqa/seed0/final"):
        (tmp_path / d).mkdir(parents=True)
    assert [(j.method, j.checkpoint) for j in evaluation_jobs(params, tmp_path)] == [
        ("vanilla", "final"), ("sft", "final"), ("seqkd", "final"), ("teacher", "final"), ("grpo", "final")]


def test_train_names_every_missing_input_before_any_run(tmp_path):
    """`atod stage train` before `prepare` and the warm-ups: one error naming what is missing and its stage,
    before any run starts (the teacher only when a method distills)."""
    from atod.config import resolve
    from tasks.stages import StageRun
    from tasks.stages.train import train

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].update(methods=["grpo", "opd"], benchmarks=["searchqa"], seeds=[0])
    with pytest.raises(FileNotFoundError) as exc:
        train(resolve(raw, profile="default"), tmp_path, StageRun(run_id=None, root=tmp_path))
    message = str(exc.value)
    for fragment in ("train needs 3 input(s) that are not there", "data/benchmarks/searchqa (stage prepare)",
                     "data/models/student_sft (stage sft_student)",
                     "data/models/teacher (stage sft_teacher; opd distill from it)"):
        assert fragment in message, message
    raw["train"]["methods"] = ["grpo"]
    with pytest.raises(FileNotFoundError, match="train needs 2 input") as exc:
        train(resolve(raw, profile="default"), tmp_path, StageRun(run_id=None, root=tmp_path))
    assert "teacher" not in str(exc.value)


def test_run_digest_ignores_knobs_that_change_only_speed(tmp_path):
    """Lowering `train.microbatch_tokens` (after running out of GPU memory) or checkpointing more often keeps a
    run's identity, so it resumes; the learning rate does not."""
    from atod.config import resolve
    from tasks.stages.train import run_inputs_digest

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    base = run_inputs_digest(resolve(raw, profile="default"), tmp_path, "searchqa")
    raw["train"].update(microbatch_tokens=1024, checkpoint_every=3, parallel_runs=1, seeds=[5])
    assert run_inputs_digest(resolve(raw, profile="default"), tmp_path, "searchqa") == base
    raw["train"]["lr"] = 3e-4
    assert run_inputs_digest(resolve(raw, profile="default"), tmp_path, "searchqa") != base
