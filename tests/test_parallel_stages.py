"""The `train` and `evaluate` stages on a tiny project: one MLflow child run per training run; jobs in
parallel worker processes (`train.parallel_runs`, `evaluate.parallel_jobs`) give the same models,
metrics and evaluation records as one after another; an interrupted `train` stage resumes, reuses the
runs it finished and removes the ones it no longer has, also when its outputs were deleted in between
(what `dvc exp run` does to half-written outputs); so does `evaluate`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atod.config import Params

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import TINY_ARCH, tiny_project

from tasks import tracking
from tasks.parallel import worker_threads
from tasks.stages import (
    EVAL_DATA_DIR,
    INIT_DIR,
    RESUME_DIR,
    RUNS_DIR,
    SEQKD_DIR,
    SFT_DIR,
    TEACHER_DIR,
    StageRun,
    run_dir,
)
from tasks.stages import evaluate as evaluate_module
from tasks.stages.evaluate import evaluate as evaluate_stage
from tasks.stages.train import run_inputs_digest, work_dir
from tasks.stages.train import train as train_stage

ARCH = TINY_ARCH


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project root holding what `train` reads: one benchmark, the SFT student and the teacher."""
    torch.set_num_threads(1)
    root = tiny_project(tmp_path_factory.mktemp("project"),
                        {SFT_DIR: 0, TEACHER_DIR: 1, INIT_DIR / "student": 2, SEQKD_DIR: 3})
    return root


def params(parallel_runs: int, parallel_eval: int = 1, **train) -> Params:
    return Params(evaluate={"tasks_per_split": 3, "bootstrap_samples": 20, "num_transcripts": 1,
                            "parallel_jobs": parallel_eval},
                  models={"student": {"arch": ARCH}, "teacher": {"arch": ARCH}, "device": "cpu", "torch_threads": 1},
                  agent={"max_new_tokens": 12},
                  train={"methods": ["grpo", "atod"], "benchmarks": ["searchqa"], "seeds": [0, 1], "steps": 2,
                         "tasks_per_step": 2, "samples_per_task": 2, "checkpoint_every": 1, "eval_every": 2,
                         "eval_tasks": 4, "anneal": {"anneal_steps": 1}, "parallel_runs": parallel_runs, **train})


JOBS = (("grpo", "searchqa", 0), ("grpo", "searchqa", 1), ("atod", "searchqa", 0), ("atod", "searchqa", 1))


def run_train_stage(root, p, monkeypatch, experiment, fresh=True):
    """The train stage in its own MLflow experiment; `fresh` removes earlier runs first (else the stage
    reuses the ones finished with the same inputs). Returns (stage run id, summary, final weights)."""
    if fresh:
        shutil.rmtree(root / RUNS_DIR, ignore_errors=True)
        shutil.rmtree(root / RESUME_DIR / "train", ignore_errors=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, experiment)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    with tracking.stage_run(root, "train", p) as run_id:
        summary = train_stage(p, root, StageRun(run_id=run_id, root=root))
    weights = {job: load_file(run_dir(root, *job) / "final" / "model.safetensors")
               for job in JOBS if job[2] in p.train.seeds and job[0] in p.train.methods}
    return run_id, summary, weights


def without_timings(summary):
    """The summary without wall-clock, throughput and memory figures (they differ run to run)."""
    return json.loads(json.dumps(summary), object_hook=lambda d: {
        k: v for k, v in d.items() if "time" not in k and "per_s" not in k and "mem" not in k})


def test_parallel_runs_match_sequential_runs_and_each_has_its_mlflow_run(project, monkeypatch):
    from mlflow import MlflowClient

    _, seq_summary, seq_weights = run_train_stage(project, params(1), monkeypatch, "train-seq")
    stage_id, par_summary, par_weights = run_train_stage(project, params(2), monkeypatch, "train-par")

    assert without_timings(par_summary) == without_timings(seq_summary)
    assert list(par_summary) == ["grpo", "atod"] and list(par_summary["atod"]["searchqa"]) == ["seed0", "seed1"]
    for job, tensors in seq_weights.items():
        for name, tensor in tensors.items():
            assert torch.equal(par_weights[job][name], tensor), (job, name)
    a0, a1 = seq_weights[("atod", "searchqa", 0)], seq_weights[("atod", "searchqa", 1)]
    assert any(not torch.equal(a0[name], a1[name]) for name in a0)  # the seeds differ, so the check can fail

    client = MlflowClient()
    exp = client.get_run(stage_id).info.experiment_id
    children = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{stage_id}'")
    assert sorted(r.info.run_name for r in children) == ["atod-searchqa-seed0", "atod-searchqa-seed1",
                                                         "grpo-searchqa-seed0", "grpo-searchqa-seed1"]
    for r in children:
        assert r.info.status == "FINISHED" and r.data.tags["benchmark"] == "searchqa"
        history = client.get_metric_history(r.info.run_id, "reward")
        assert sorted(m.step for m in history) == [1, 2]  # logged from the worker process


def test_worker_threads_share_the_cores_unless_set(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_threads(0, 1) == 0  # one worker: torch's default
    assert worker_threads(0, 2) == 4 and worker_threads(0, 3) == 2 and worker_threads(0, 16) == 1
    assert worker_threads(3, 2) == 3 and worker_threads(8, 1) == 8  # models.torch_threads wins
    with pytest.raises(ValueError, match=r"models.torch_threads is 3 and 3 jobs run at once: 9 torch threads on 8"):
        worker_threads(3, 3)  # oversubscribed


def test_parallel_evaluation_matches_sequential(project, monkeypatch):
    records = {}
    for workers in (1, 2):
        p = params(1, parallel_eval=workers)
        run_train_stage(project, p, monkeypatch, f"eval-{workers}")  # the runs evaluate reads
        forget_evaluations(project)  # else the second execution reuses results
        with tracking.stage_run(project, "evaluate", p) as run_id:
            summary = evaluate_stage(p, project, StageRun(run_id=run_id, root=project))
        records[workers] = (project / "data/eval/records.jsonl").read_text().splitlines()
    assert summary["models"] == 4 + 4 * 2  # vanilla, sft, seqkd, teacher + 4 runs x (final, best)
    assert records[2] == records[1] and len(records[1]) == summary["records"]


def forget_evaluations(root):
    shutil.rmtree(root / EVAL_DATA_DIR, ignore_errors=True)
    shutil.rmtree(root / RESUME_DIR / "evaluate", ignore_errors=True)


def child_runs(stage_id):
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_run(stage_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{stage_id}'")
    return {r.info.run_name: (r, sorted(m.step for m in client.get_metric_history(r.info.run_id, "reward")))
            for r in runs}


def test_interrupted_train_stage_resumes_reuses_and_prunes(project, monkeypatch):
    p = params(1, seeds=[0], methods=["atod", "grpo"])  # atod first: its teacher term moves its weights
    _, ref_summary, ref_weights = run_train_stage(project, p, monkeypatch, "resume-ref")
    atod0 = ("atod", "searchqa", 0)
    start = load_file(project / SFT_DIR / "model.safetensors")
    assert any(not torch.equal(ref_weights[atod0][name], t) for name, t in start.items())  # so the check below can fail

    # interrupt the first run (atod) at its 2nd update, after the checkpoint of update 1
    shutil.rmtree(project / RUNS_DIR)
    shutil.rmtree(project / RESUME_DIR / "train")
    log_metrics = tracking.log_metrics

    def interrupt(metrics, step=None, run_id=None):
        if step == 2 and "reward" in metrics:
            raise KeyboardInterrupt("simulated kill")
        log_metrics(metrics, step=step, run_id=run_id)

    monkeypatch.setattr(tracking, "log_metrics", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_train_stage(project, p, monkeypatch, "resume-killed", fresh=False)
    monkeypatch.setattr(tracking, "log_metrics", log_metrics)
    atod_work = work_dir(project, *atod0, run_inputs_digest(p, project, "searchqa"))
    assert (atod_work / "checkpoint").exists() and not (atod_work / "summary.json").exists()
    assert not run_dir(project, *atod0).exists()  # published when finished
    assert not work_dir(project, "grpo", "searchqa", 0, run_inputs_digest(p, project, "searchqa")).exists()
    at_update_1 = load_file(atod_work / "checkpoint" / "model" / "model.safetensors")
    assert any(not torch.equal(ref_weights[atod0][name], t) for name, t in at_update_1.items())  # update 2 moves them
    shutil.rmtree(project / RUNS_DIR)  # as `dvc exp run` does before it starts: the run still resumes
    stale = run_dir(project, "opd", "searchqa", 7)
    (stale / "final").mkdir(parents=True)  # a run the config no longer has

    stage_id, summary, weights = run_train_stage(project, p, monkeypatch, "resume-again", fresh=False)
    assert not stale.exists() and not (project / RUNS_DIR / "opd").exists()
    assert summary["atod"]["searchqa"]["seed0"]["resumed_from_step"] == 1
    assert without_timings(summary) != without_timings(ref_summary)  # resumed_from_step differs, nothing else:
    as_if_uninterrupted = json.loads(json.dumps(summary))
    as_if_uninterrupted["atod"]["searchqa"]["seed0"]["resumed_from_step"] = 0
    assert without_timings(as_if_uninterrupted) == without_timings(ref_summary)
    for job, tensors in ref_weights.items():  # bitwise the weights of the uninterrupted stage
        assert all(torch.equal(weights[job][name], t) for name, t in tensors.items()), job
    runs = child_runs(stage_id)
    assert runs["atod-searchqa-seed0"][0].data.tags["run_state"] == "resume"
    assert runs["grpo-searchqa-seed0"][0].data.tags["run_state"] == "fresh"
    assert all(steps == [1, 2] for _, steps in runs.values())  # step 1 replayed from metrics.jsonl

    # a third execution with the same inputs reuses both runs; another learning rate retrains them
    before = {job: (run_dir(project, *job) / "final" / "model.safetensors").stat().st_mtime_ns for job in ref_weights}
    stage_id, again, _ = run_train_stage(project, p, monkeypatch, "resume-done", fresh=False)
    assert again == summary
    assert all((run_dir(project, *job) / "final" / "model.safetensors").stat().st_mtime_ns == t
               for job, t in before.items())
    runs = child_runs(stage_id)
    assert {r.data.tags["run_state"] for r, _ in runs.values()} == {"done"}
    assert all(r.info.status == "FINISHED" and steps == [1, 2] for r, steps in runs.values())
    shutil.rmtree(project / RUNS_DIR)  # deleted outputs: the finished runs are published again from .atod/resume
    stage_id, again, _ = run_train_stage(project, p, monkeypatch, "resume-deleted", fresh=False)
    assert again == summary
    assert all((run_dir(project, *job) / "final" / "model.safetensors").stat().st_mtime_ns == t
               for job, t in before.items())
    assert not any((run_dir(project, *job) / name).exists() for job in before for name in ("checkpoint", "checkpoint.old"))
    assert {r.data.tags["run_state"] for r, _ in child_runs(stage_id).values()} == {"done"}
    stage_id, _, other = run_train_stage(project, params(1, seeds=[0], methods=["atod", "grpo"], lr=3e-4),
                                         monkeypatch, "resume-lr", fresh=False)
    assert {r.data.tags["run_state"] for r, _ in child_runs(stage_id).values()} == {"fresh"}
    assert any(not torch.equal(other[atod0][name], t) for name, t in ref_weights[atod0].items())


def test_evaluate_stage_reuses_results_saved_with_the_same_inputs(project, monkeypatch):
    p = params(1, seeds=[0])
    run_train_stage(project, p, monkeypatch, "reuse-train")
    forget_evaluations(project)

    def run_evaluate(p):
        with tracking.stage_run(project, "evaluate", p) as run_id:
            evaluate_stage(p, project, StageRun(run_id=run_id, root=project))
        return (project / EVAL_DATA_DIR / "records.jsonl").read_text()

    first = run_evaluate(p)
    saved, store = project / EVAL_DATA_DIR / "jobs", project / RESUME_DIR / "evaluate"

    def stored(name):
        return store / f"{json.loads((saved / name).read_text())['digest']}.json"

    stored("grpo-searchqa-seed0-final.json").unlink()  # never written
    (saved / "grpo-searchqa-seed0-final.json").unlink()
    stored("teacher-searchqa-seed0-final.json").unlink()  # an interrupted write
    (saved / "teacher-searchqa-seed0-final.json").write_text('{"digest": "')
    (saved / "atod-searchqa-seed0-final.json").unlink()  # deleted output (`dvc exp run`): restored from the store
    (saved / "opd-searchqa-seed3-final.json").write_text("{}")  # a model no longer evaluated
    evaluated = []
    real = evaluate_module.evaluate_job
    monkeypatch.setattr(evaluate_module, "evaluate_job",
                        lambda params, job, device, progress=False: evaluated.append(evaluate_module.job_name(job))
                        or real(params, job, device, progress))
    assert run_evaluate(p) == first
    assert sorted(evaluated) == ["grpo-searchqa-seed0-final", "teacher-searchqa-seed0-final"]
    assert not (saved / "opd-searchqa-seed3-final.json").exists() and (saved / "atod-searchqa-seed0-final.json").exists()
    shutil.rmtree(project / EVAL_DATA_DIR)  # all outputs deleted: every result comes from the store
    evaluated.clear()
    assert run_evaluate(p) == first and evaluated == []

    evaluated.clear()  # another evaluation setting: every model again
    other = p.model_copy(update={"evaluate": p.evaluate.model_copy(update={"tasks_per_split": 2})})
    run_evaluate(other)
    assert len(evaluated) == 4 + 2 * 2


def test_the_flows_per_benchmark_evaluation_saves_and_reuses_the_same_results(project, monkeypatch):
    """flows/evaluate.py evaluates one benchmark per Prefect task with `evaluate_benchmark`: the same results
    as the stage, saved and reused the same way."""
    p = params(1, seeds=[0])
    run_train_stage(project, p, monkeypatch, "flow-train")
    forget_evaluations(project)
    computed = evaluate_module.evaluate_benchmark(p, project, "searchqa", progress=False)
    assert len(computed) == 4 + 2 * 2
    with tracking.stage_run(project, "evaluate", p) as run_id:  # the stage reuses all of them
        monkeypatch.setattr(evaluate_module, "evaluate_job", lambda *a, **k: pytest.fail("re-evaluated"))
        evaluate_stage(p, project, StageRun(run_id=run_id, root=project))
    reused = evaluate_module.evaluate_benchmark(p, project, "searchqa", progress=False)
    assert [job for job, _ in reused] == [job for job, _ in computed]
    assert [json.dumps(r, sort_keys=True) for _, r in reused] == [json.dumps(r, sort_keys=True) for _, r in computed]


def test_train_stage_with_data_parallel_processes(project, monkeypatch):
    """`train.processes_per_run: 2`: the stage launches each run with torchrun (2 processes, gloo on CPU);
    the run is published like any other, process 0 logs to the run's MLflow child run, and a second
    execution reuses it."""
    p = params(1, methods=["atod"], seeds=[0], processes_per_run=2)
    job = ("atod", "searchqa", 0)
    stage_id, summary, _ = run_train_stage(project, p, monkeypatch, "ddp")
    weights = load_file(run_dir(project, *job) / "final" / "model.safetensors")
    out = run_dir(project, "atod", "searchqa", 0)
    assert (out / "final" / "model.safetensors").exists() and (out / "summary.json").exists()
    assert not any(n.name.startswith(".") for n in out.iterdir())  # the launch files stay in the work dir
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in records if "reward" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    assert [r["step"] for r in records if "val_success" in r] == [2]
    assert summary["atod"]["searchqa"]["seed0"]["steps"] == 2
    runs = child_runs(stage_id)
    assert runs["atod-searchqa-seed0"][1] == [1, 2]  # logged by process 0
    launch = json.loads((work_dir(project, *job, run_inputs_digest(p, project, "searchqa")) / ".launch.json").read_text())
    assert launch["params"]["train"]["processes_per_run"] == 2 and launch["threads"] >= 1
    _, again, _ = run_train_stage(project, p, monkeypatch, "ddp-again", fresh=False)  # reused, not retrained
    assert again == summary
    reused = load_file(run_dir(project, *job) / "final" / "model.safetensors")
    assert all(torch.equal(reused[n], w) for n, w in weights.items())


def test_data_parallel_failure_names_the_process_error(tmp_path):
    """A run whose processes fail (here: no SFT student under the project root) is reported with what the
    first failing process raised, not only torchrun's exit code; the error files stay in the work dir."""
    from tasks.stages.train import _launch_processes

    p = params(1, methods=["atod"], seeds=[0], processes_per_run=2)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".error.5.json").write_text('{"rank": 5, "error": "stale"}')  # from an earlier launch: dropped
    with pytest.raises(RuntimeError) as exc:
        _launch_processes(p, tmp_path, "atod", "searchqa", 0, "no-run", work)
    message = str(exc.value)
    assert "training run atod / searchqa / seed 0: its 2 data-parallel processes (torchrun) exited with code" in message
    assert "first error a process recorded" in message and str(tmp_path / SFT_DIR) in message
    assert "stale" not in message
    # torchrun stops the other process once one fails: it may not get to record its own error
    assert {path.name for path in work.glob(".error.*.json")} <= {".error.0.json", ".error.1.json"}
