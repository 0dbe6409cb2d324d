"""The `sft_teacher` stage on a tiny project: killed half-way, the next execution continues from the last
checkpoint of `sft_warmup.teacher.checkpoint_every` and saves bitwise the model of an execution never
interrupted; its MLflow run shows the whole learning curve; the checkpoint is removed once the model is
saved; a finished warm-up whose output was deleted is published again without training; changed inputs
start over."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atod.config import Params

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import TINY_ARCH, tiny_project

import atod.train.sft as sft_module
from tasks import tracking
from tasks.stages import INIT_DIR, RESUME_DIR, TEACHER_DIR, StageRun
from tasks.stages.sft import sft_teacher, warmup_inputs_digest


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project root holding what `sft_teacher` reads: one benchmark and the initial teacher."""
    torch.set_num_threads(1)
    return tiny_project(tmp_path_factory.mktemp("project"), {INIT_DIR / "teacher": 0})


def params(**teacher) -> Params:
    run = {"episodes_per_benchmark": 6, "expert_noise": 0.1, "steps": 6, "sequences_per_step": 2, "warmup_steps": 1,
           "eval_every": 3, "eval_tasks": 2, "checkpoint_every": 2, **teacher}
    return Params(prepare={"benchmarks": ["searchqa"]}, sft_warmup={"teacher": run},
                  models={"teacher": {"arch": TINY_ARCH}, "device": "cpu", "torch_threads": 1},
                  agent={"max_new_tokens": 12}, train={"eval_tasks": 4, "benchmarks": ["searchqa"]})


def run_stage(root, p, monkeypatch, experiment):
    """The stage in its own MLflow experiment; returns (its `sft-teacher` child run, the saved weights)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, experiment)
    monkeypatch.delenv(tracking.PARENT_RUN_ENV, raising=False)
    with tracking.stage_run(root, "sft_teacher", p) as run_id:
        sft_teacher(p, root, StageRun(run_id=run_id, root=root))
    client = MlflowClient()
    exp = client.get_run(run_id).info.experiment_id
    (child,) = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return child, load_file(root / TEACHER_DIR / "model.safetensors")


def loss_steps(child):
    from mlflow import MlflowClient

    return sorted(m.step for m in MlflowClient().get_metric_history(child.info.run_id, "loss"))


def test_killed_warm_up_continues_from_its_checkpoint(project, monkeypatch):
    p = params()
    work = project / RESUME_DIR / "sft_teacher" / warmup_inputs_digest(p, project, "teacher")
    ref_child, ref = run_stage(project, p, monkeypatch, "sft-ref")
    assert not (work / "checkpoint").exists() and (work / "summary.json").is_file()  # finished: model kept
    shutil.rmtree(work)  # forget it, to interrupt the next execution

    real_loss, calls = sft_module.sft_loss, []

    def dies_at_step_5(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(sft_module, "sft_loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run_stage(project, p, monkeypatch, "sft-killed")
    assert (work / "checkpoint" / "trainer_state.json").is_file()
    shutil.rmtree(project / TEACHER_DIR, ignore_errors=True)  # as `dvc repro` does before it reruns the stage

    resumed_calls = []
    monkeypatch.setattr(sft_module, "sft_loss", lambda *a, **k: resumed_calls.append(1) or real_loss(*a, **k))
    child, weights = run_stage(project, p, monkeypatch, "sft-resumed")
    assert len(resumed_calls) == 2  # steps 5 and 6 only: it continued from the checkpoint of step 4
    assert loss_steps(child) == loss_steps(ref_child) == [1, 2, 3, 4, 5, 6]  # replayed 1-4, then trained 5-6
    assert child.data.metrics == ref_child.data.metrics | {k: v for k, v in child.data.metrics.items()
                                                           if k == "tokens_per_s"}
    assert weights.keys() == ref.keys() and all(torch.equal(weights[k], ref[k]) for k in ref)
    assert not (work / "checkpoint").exists() and (work / "final" / "model.safetensors").is_file()

    # killed after the model was saved, before DVC recorded it: `dvc repro` deletes the output and reruns
    # the stage, which publishes the finished model again instead of training
    shutil.rmtree(project / TEACHER_DIR)
    monkeypatch.setattr(sft_module, "sft_loss", lambda *a, **k: pytest.fail("trained again"))
    again_child, again = run_stage(project, p, monkeypatch, "sft-published-again")
    assert again.keys() == ref.keys() and all(torch.equal(again[k], ref[k]) for k in ref)
    assert again_child.data.tags["run_state"] == "done" and child.data.tags["run_state"] == "resume"
    assert ref_child.data.tags["run_state"] == "fresh"
    assert (project / TEACHER_DIR / "tokenizer.json").is_file()
    monkeypatch.setattr(sft_module, "sft_loss", real_loss)

    other = params(lr=5e-4)  # other inputs: another work directory, trained from the start
    assert warmup_inputs_digest(other, project, "teacher") != warmup_inputs_digest(p, project, "teacher")
    assert warmup_inputs_digest(params(checkpoint_every=3), project, "teacher") == \
        warmup_inputs_digest(p, project, "teacher")
    _, changed = run_stage(project, other, monkeypatch, "sft-other")
    assert any(not torch.equal(changed[k], ref[k]) for k in ref)
    assert not work.exists()  # a finished warm-up of other inputs: deleted once this one finished


def test_warmup_digest_covers_the_code_dvc_reruns_the_stage_for():
    import yaml

    from tasks.stages.sft import WARMUP_CODE

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    for name in ("sft_teacher", "sft_student"):
        code = [d for d in stages[name]["deps"] if not d.startswith("data/")]
        assert sorted(code) == sorted(WARMUP_CODE), name
