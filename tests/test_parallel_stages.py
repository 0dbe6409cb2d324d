"""The `train` and `evaluate` stages on a tiny project: one MLflow child run per training run, and jobs in
parallel worker processes (`train.parallel_runs`, `evaluate.parallel_jobs`) give the same models,
metrics and evaluation records as one after another."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atod.agent.config import ModelSpec, TinyArch
from atod.agent.models import build_tiny_model
from atod.config import Params

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import TINY_ARCH, tiny_searchqa

from tasks import tracking
from tasks.parallel import worker_threads
from tasks.stages import BENCH_DIR, INIT_DIR, SEQKD_DIR, SFT_DIR, TEACHER_DIR, StageRun, run_dir
from tasks.stages.evaluate import evaluate as evaluate_stage
from tasks.stages.train import train as train_stage

ARCH = TINY_ARCH


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project root holding what `train` reads: one benchmark, the SFT student and the teacher."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("project")
    bench, tok = tiny_searchqa()
    bench.save(root / BENCH_DIR / "searchqa")
    spec = ModelSpec(arch=TinyArch(**ARCH))
    for out, seed in ((SFT_DIR, 0), (TEACHER_DIR, 1), (INIT_DIR / "student", 2), (SEQKD_DIR, 3)):
        build_tiny_model(spec, tok, seed).save_pretrained(root / out)
        tok.save_pretrained(root / out)
    return root


def params(parallel_runs: int, parallel_eval: int = 1) -> Params:
    return Params(evaluate={"tasks_per_split": 3, "bootstrap_samples": 20, "num_transcripts": 1,
                            "parallel_jobs": parallel_eval},
                  models={"student": {"arch": ARCH}, "teacher": {"arch": ARCH}, "device": "cpu", "torch_threads": 1},
                  agent={"max_new_tokens": 12},
                  train={"methods": ["grpo", "atod"], "benchmarks": ["searchqa"], "seeds": [0, 1], "steps": 2,
                         "tasks_per_step": 2, "samples_per_task": 2, "checkpoint_every": 1, "eval_every": 2,
                         "eval_tasks": 4, "anneal": {"anneal_steps": 1}, "parallel_runs": parallel_runs})


def run_train_stage(root, p, monkeypatch, experiment):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, experiment)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    with tracking.stage_run(root, "train", p) as run_id:
        summary = train_stage(p, root, StageRun(run_id=run_id, root=root))
    weights = {job: load_file(run_dir(root, *job) / "final" / "model.safetensors")
               for job in (("grpo", "searchqa", 0), ("grpo", "searchqa", 1), ("atod", "searchqa", 0),
                           ("atod", "searchqa", 1))}
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
    assert worker_threads(3, 2) == 3  # models.torch_threads wins


def test_parallel_evaluation_matches_sequential(project, monkeypatch):
    records = {}
    for workers in (1, 2):
        p = params(1, parallel_eval=workers)
        run_train_stage(project, p, monkeypatch, f"eval-{workers}")  # the runs evaluate reads
        with tracking.stage_run(project, "evaluate", p) as run_id:
            summary = evaluate_stage(p, project, StageRun(run_id=run_id, root=project))
        records[workers] = (project / "data/eval/records.jsonl").read_text().splitlines()
    assert summary["models"] == 4 + 4 * 2  # vanilla, sft, seqkd, teacher + 4 runs x (final, best)
    assert records[2] == records[1] and len(records[1]) == summary["records"]
