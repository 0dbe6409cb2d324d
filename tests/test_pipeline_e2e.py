"""End to end: the smoke pipeline through `dvc repro` in a throw-away copy of the project, then a Prefect
deployment run of the real pipeline flow against a Prefect server started here (127.0.0.1, free port).

The copy runs the real `smoke` profile (all three benchmarks, grpo/opd/atod, every evaluated model):
about 2 minutes of `dvc repro` on 2 CPU cores, so CI runs it on every submission.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks import tracking
from tasks.sandbox import copy_project, sandbox_env
from tasks.stages import STAGES

BENCHES = ("alfworld", "webshop", "searchqa")
METHODS = ("grpo", "opd", "atod")  # profile smoke trains these (params.yaml train.methods)


def dvc(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=sandbox_env(project),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project copy after one full `dvc repro` of the (shrunk) smoke profile."""
    proj = copy_project(ROOT, tmp_path_factory.mktemp("atod") / "proj", profile="smoke")
    t0 = time.perf_counter()
    out = dvc(proj, "repro")
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    (proj / ".atod" / "test_repro_wall_s").write_text(f"{wall:.2f}")
    return proj


def _mlflow(project: Path):
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    from mlflow import MlflowClient

    return MlflowClient()


def test_outputs_and_metrics(project):
    for path in ("data/tokenizer", "data/models/init/student", "data/models/teacher", "data/models/student_sft",
                 "data/models/student_seqkd", "data/eval/records.jsonl", "reports/report.md", "reports/report.html"):
        assert (project / path).exists(), path
    for bench in BENCHES:
        assert (project / "data/benchmarks" / bench).is_dir() and (project / "data/teacher_cache" / bench).is_dir()
        for method in METHODS:
            run = project / "data/runs" / method / bench / "seed0"
            assert (run / "final").is_dir() and (run / "metrics.jsonl").is_file(), run
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert set(comparison) == {*BENCHES, "average"}
    for bench in (*BENCHES, "average"):
        for method in ("vanilla", "sft", "seqkd", *METHODS, "teacher"):
            cell = comparison[bench][method]
            assert 0.0 <= cell["success"] <= 1.0
            low, high = cell["ci"]
            assert low <= cell["success"] <= high
    evals = {p.stem for p in (project / "metrics/eval").glob("*.json")}
    assert evals == {"vanilla", "sft", "seqkd", *METHODS, "teacher"}
    shown = dvc(project, "metrics", "show", "--json")
    assert shown.returncode == 0 and "comparison.json" in shown.stdout


def test_mlflow_has_one_parent_with_a_run_per_stage(project):
    client = _mlflow(project)
    exp = client.get_experiment_by_name("atod")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    stage_runs = [r for r in runs if r.data.tags.get("atod.kind") == "stage"]
    assert sorted(r.data.tags["atod.stage"] for r in stage_runs) == sorted(STAGES)
    parents = {r.data.tags["mlflow.parentRunId"] for r in stage_runs}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.status == "FINISHED" and parent.data.tags["atod.launcher"] == "dvc"
    assert parent.data.tags["profile"] == "smoke" and len(parent.data.tags["git.commit"]) == 40
    # every stage run carries the digest of its inputs that DVC then recorded in dvc.lock
    for r in stage_runs:
        entry = tracking.lock_entry(project, r.data.tags["atod.stage"])
        assert r.data.tags["dvc.inputs_md5"] == tracking.lock_inputs_digest(entry)
        assert r.data.params["profile"] == "smoke"
    # training runs: per-step metrics and method/benchmark/seed tags; evaluation: per split metrics
    train_runs = [r for r in runs if r.data.tags.get("method") in METHODS and "checkpoint" not in r.data.tags]
    assert len(train_runs) == len(METHODS) * len(BENCHES)
    assert {(r.data.tags["method"], r.data.tags["benchmark"]) for r in train_runs} == {
        (m, b) for m in METHODS for b in BENCHES}
    history = client.get_metric_history(train_runs[0].info.run_id, "reward")
    assert len(history) >= 1
    eval_runs = [r for r in runs if "checkpoint" in r.data.tags]
    assert any("test_in_domain/success" in r.data.metrics for r in eval_runs)
    compare_run = next(r for r in stage_runs if r.data.tags["atod.stage"] == "compare")
    arts = [a.path for a in client.list_artifacts(compare_run.info.run_id, "report")]
    assert "report/report.md" in arts and "report/comparison.json" in arts


def test_second_repro_does_nothing_quickly(project):
    t0 = time.perf_counter()
    out = dvc(project, "repro")
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    assert "Running stage" not in out.stdout
    assert wall < 30, f"no-op dvc repro took {wall:.1f} s"


def test_plots_render_offline(project):
    out = dvc(project, "plots", "show", "-o", str(project / "plots_html"))
    assert out.returncode == 0, out.stderr
    html = (project / "plots_html" / "index.html").read_text()
    assert "<img" in html and "http://" not in html and "https://" not in html
    assert list((project / "plots_html" / "static").glob("*.png"))


def test_prefect_deployment_run_against_a_local_server(project):
    """Serve the real deployments against a server of our own, run the pipeline deployment for the
    evaluate (one concurrent Prefect task per benchmark, then `dvc commit`) and compare stages, forced,
    and check the flow run completed, nested its stages in MLflow and left DVC up to date."""
    from flows.serve import free_port, prefect_server, stop_process

    env = sandbox_env(project)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("PREFECT_", "MLFLOW_"))})
    with prefect_server(project, free_port(), timeout_s=180) as api:
        env = {**env, "PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        os.environ["PREFECT_API_URL"] = api
        server = subprocess.Popen([sys.executable, "-m", "flows.serve", "--deployments-only", "--no-schedule"],
                                  cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True, text=True)
        try:
            from prefect.client.orchestration import get_client
            from prefect.deployments import run_deployment
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: api}):
                deadline = time.monotonic() + 120
                while True:  # wait until the serving process registered the deployment
                    try:
                        run = run_deployment("atod-pipeline/nightly", parameters={"stages": ["evaluate", "compare"], "force": True,
                                                                 "parallel_evaluate": True},
                                             timeout=0)
                        break
                    except Exception:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise
                        time.sleep(1)
                deadline = time.monotonic() + 300
                import asyncio

                async def state():
                    async with get_client() as client:
                        return (await client.read_flow_run(run.id)).state

                while not (st := asyncio.run(state())).is_final():
                    assert time.monotonic() < deadline, f"flow run still {st.name}"
                    time.sleep(2)
                assert st.is_completed(), st
        finally:
            stop_process(server, "serve")
    client = _mlflow(project)
    runs = client.search_runs([client.get_experiment_by_name("atod").experiment_id], max_results=1000)
    prefect_parents = [r for r in runs if r.data.tags.get("atod.launcher") == "prefect"]
    assert len(prefect_parents) == 1 and prefect_parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == prefect_parents[0].info.run_id]
    assert sorted(r.data.tags["atod.stage"] for r in children) == ["compare", "evaluate"]
    status = dvc(project, "status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert "compare" in lock["stages"]
