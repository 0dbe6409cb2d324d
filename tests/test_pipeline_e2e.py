"""End to end: the smoke pipeline through `dvc repro` in a throw-away copy of the project, then a Prefect
deployment run of the real pipeline flow against a Prefect server started here (127.0.0.1, free port).

The copy runs the real `smoke` profile (all three benchmarks, grpo/opd/atod, every evaluated model):
about 2 minutes of `dvc repro` on 2 CPU cores, so CI runs it on every submission.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
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


def test_second_repro_does_nothing(project):
    model = next((project / "data/runs").glob("*/*/*/final/model.safetensors"))
    written = model.stat().st_mtime_ns
    out = dvc(project, "repro")
    assert out.returncode == 0, out.stderr
    assert "Running stage" not in out.stdout
    assert model.stat().st_mtime_ns == written
    status = dvc(project, "status")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_results_archive_of_a_finished_run(project, tmp_path):
    """benchmarks/collect_results.py: the report with its figures beside it (every image link resolves), the
    records, and the per-seed, WebShop and by-task-type tables exactly as their scripts print them."""
    out = tmp_path / "archive"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "collect_results.py"), str(project), str(out),
                          "--title", "smoke"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert images and all((out / image).is_file() for image in images)
    assert (out / "records.jsonl").read_bytes() == (project / "data" / "eval" / "records.jsonl").read_bytes()
    per_seed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "per_seed_success.py"),
                               str(out / "records.jsonl"), "--benchmark", "webshop"], capture_output=True, text=True,
                              check=True).stdout
    assert (out / "per_seed_webshop.txt").read_text().startswith("# final checkpoints\n" + per_seed)
    average = (out / "per_seed_average.txt").read_text()  # the smoke project runs all three benchmarks
    assert average.startswith("# final checkpoints\n")
    assert re.search(r"^atod - opd .*mean [+-]\d", average, re.MULTILINE)
    assert "test goals ask for the product" in (out / "webshop_overlap.txt").read_text()
    claims = (out / "claims_best.txt").read_text()
    assert claims.startswith("# checkpoint asked for: best; used:") and "atod best" in claims
    assert re.search(r"^ATOD beats OPD by about 3-4 points +average \(alfworld, webshop, searchqa\) +[+-]\d", claims,
                     re.MULTILINE)
    purchases = (out / "webshop_purchases.txt").read_text()
    assert re.match(r"an episode that ended before turn \d+ bought", purchases) and "\nteacher " in purchases
    by_type = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "success_by_group.py"), str(out / "records.jsonl"),
                              "--tasks", str(project / "data" / "benchmarks" / "alfworld")], capture_output=True,
                             text=True, check=True).stdout
    assert (out / "success_by_group_alfworld.txt").read_text() == by_type
    assert by_type.startswith("# alfworld: success (%) by task_type")
    assert (out / "success_by_group_searchqa.txt").read_text().startswith("# searchqa: success (%) by kind")
    paired = (out / "paired_training.txt").read_text()
    assert "step 1 identical across methods" in paired and "atod - opd" in paired
    assert (out / "paired_training.png").is_file()
    assert (out / "README.md").read_text().startswith("# smoke\n")
    rerun = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "collect_results.py"), str(project), str(out)],
                           capture_output=True, text=True, check=False)
    assert rerun.returncode != 0 and "exists: an archive is never overwritten" in rerun.stderr


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


def _without_times(line: str) -> dict:
    record = json.loads(line)
    return {k: v for k, v in record.items() if "time" not in k and k not in ("tokens_per_s", "peak_mem_mb")}


def test_a_stage_runs_without_mlflow_prefect_or_dvc(project, tmp_path):
    """`ATOD_TRACKING=off`, as on the accelerator machine (torch and transformers, no MLflow, Prefect or
    DVC): one training run is deleted and `atod stage train` trains it again, in a worker process, with
    those three packages unimportable. It equals the run `dvc repro` made (same seed, same machine), and
    the MLflow store gains no run. Last in this module: it rewrites one run of the shared project."""
    blocked = tmp_path / "blocked"
    for name in ("mlflow", "prefect", "dvc"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    client = _mlflow(project)
    experiment = client.get_experiment_by_name("atod").experiment_id
    runs_before = len(client.search_runs([experiment], max_results=1000))
    run = project / "data/runs/grpo/searchqa/seed0"
    before = [_without_times(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(run)
    for work in (project / ".atod/resume/train").glob("*/grpo/searchqa/seed0"):
        shutil.rmtree(work)
    env = {**sandbox_env(project), "ATOD_TRACKING": "off"}
    env["PYTHONPATH"] = f"{blocked}{os.pathsep}{env['PYTHONPATH']}"
    out = subprocess.run([sys.executable, "-m", "atod.cli", "stage", "train"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "runs without MLflow" in out.stderr
    after = [_without_times(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert after == before and len(after) > 0
    assert len(client.search_runs([experiment], max_results=1000)) == runs_before
    env["ATOD_TRACKING"] = "of"
    out = subprocess.run([sys.executable, "-m", "atod.cli", "stage", "compare"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 2 and "ATOD_TRACKING must be 'on' or 'off', not 'of'" in out.stderr
    assert "Traceback" not in out.stderr


def test_gpu_repro_script_runs_the_stages_without_mlflow_and_its_results_compare_in_a_fresh_copy(project, tmp_path):
    """benchmarks/gpu_repro.py, the accelerator machine's reproduction, on this CPU: the smoke profile,
    one tiny run, packages unimportable as there. What it packs, unpacked into a fresh copy of the project
    (as here after a device run), gives the compare stage's report."""
    blocked = tmp_path / "blocked"
    for name in ("mlflow", "prefect", "dvc"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    device_copy = tmp_path / "device"
    shutil.copytree(project, device_copy, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    env = sandbox_env(device_copy)
    env["PYTHONPATH"] = f"{blocked}{os.pathsep}{env['PYTHONPATH']}"
    out_dir = tmp_path / "out"

    def gpu_repro(budget_s: int) -> dict:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_repro.py"), "--root", str(device_copy),
                              "--profile", "smoke", "--device", "cpu", "--benchmarks", "searchqa", "--workers", "2",
                              "--budget-s", str(budget_s), "--out", str(out_dir), "--set", "train.methods=[grpo]",
                              "--set", "train.seeds=[0]", "--set", "train.steps=2", "--set", "train.anneal.anneal_steps=1"],
                             cwd=device_copy, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return json.loads((out_dir / "gpu_repro.json").read_text())

    record = gpu_repro(0)  # a budget of 0: the stage is stopped at once, nothing finished, still packed
    assert record["stages"] == [{"stage": "train", "wall_s": record["stages"][0]["wall_s"], "rc": "stopped at the budget"}]
    assert record["finished_runs"] == 0 and (out_dir / "gpu_repro.tar.gz").is_file()
    record = gpu_repro(600)  # the same command again: the stages run to the end
    assert [(s["stage"], s["rc"]) for s in record["stages"]] == [("train", 0), ("evaluate", 0)]
    assert record["finished_runs"] == 1 and record["settings"]["train.steps"] == 2
    fresh = copy_project(ROOT, tmp_path / "fresh", profile="smoke")
    with tarfile.open(out_dir / "gpu_repro.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(fresh, filter="data")
    assert {"params.gpu_repro.yaml", "data/eval/records.jsonl", "data/runs/grpo/searchqa/seed0/metrics.jsonl",
            "metrics/train.json"} <= set(names)
    env = {**sandbox_env(fresh), "ATOD_TRACKING": "off"}
    out = subprocess.run([sys.executable, "-m", "atod.cli", "stage", "compare", "--params", "params.gpu_repro.yaml"],
                         cwd=fresh, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    comparison = json.loads((fresh / "metrics/comparison.json").read_text())
    assert 0.0 <= comparison["searchqa"]["grpo"]["success"] <= 1.0 and (fresh / "reports/report.md").is_file()
