"""Prefect tasks: the DVC commands the flows run, and the per-benchmark evaluation task.

Flows run each stage through DVC (`dvc repro --single-item STAGE`, `dvc exp run`), so a run started from
Prefect leaves the same DVC-tracked outputs and dvc.lock as `dvc repro`. The one exception is
`flows.evaluate`, which evaluates the benchmarks concurrently (`evaluate_benchmark_task`, the stage's own
per-benchmark function), writes the stage's outputs with `write_evaluation` and then `dvc commit`s them. Retries only where I/O can fail: none on compute,
and none on DVC commands (they either reproduce or fail for a reason worth reading).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from prefect import get_run_logger, task


def dvc_command(root: Path) -> list[str]:
    """How to call DVC: the `dvc` of this interpreter's environment (so `atod` is found too)."""
    return [sys.executable, "-m", "dvc"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for DVC subprocesses: ours (configure_environment already ran), the venv's bin
    directory first on PATH (stage commands call `atod`), plus `extra`."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def run_logged(cmd: list[str], root: Path, env: dict[str, str], what: str) -> str:
    """Run `cmd` in `root`, streaming its output to the Prefect log; raise with the output's tail on failure."""
    logger = get_run_logger()
    logger.info("running: %s", " ".join(cmd[2:] if cmd[:2] == dvc_command(root)[:2] else cmd))
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            print(line, end="", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); last lines:\n" + "\n".join(tail))
    return "\n".join(tail)


@task(name="dvc-repro-stage", task_run_name="dvc repro {stage}")
def dvc_repro_stage(root: str, stage: str, env: dict[str, str], force: bool = False) -> str:
    """`dvc repro --single-item STAGE` (DVC skips it when nothing changed, via its lock and run cache)."""
    cmd = [*dvc_command(Path(root)), "repro", "--single-item", stage, *(["--force"] if force else [])]
    return run_logged(cmd, Path(root), child_env(env), f"dvc repro {stage}")


@task(name="dvc-exp-run", task_run_name="dvc exp run {name}")
def dvc_exp_run(root: str, name: str, set_params: list[str], env: dict[str, str]) -> str:
    """`dvc exp run -n NAME -S key=value ...` in the workspace (one experiment per ablation setting)."""
    cmd = [*dvc_command(Path(root)), "exp", "run", "-n", name]
    for item in set_params:
        cmd += ["-S", item]
    return run_logged(cmd, Path(root), child_env(env), f"dvc exp run {name}")


@task(name="evaluate-benchmark", task_run_name="evaluate {benchmark}")
def evaluate_benchmark_task(root: str, benchmark: str, profile: str | None = None) -> list:
    """Every model on one benchmark (tasks.stages.evaluate_benchmark); flows run one per benchmark
    concurrently. Returns [(EvalJob, results)] in memory (thread task runner: nothing is serialised)."""
    from atod.config import load_params
    from tasks.stages import evaluate_benchmark

    params = load_params(Path(root) / "params.yaml", profile=profile)
    return evaluate_benchmark(params, Path(root), benchmark, progress=False)


@task(name="dvc-stage-changed", retries=1, retry_delay_seconds=2)
def dvc_stage_changed(root: str, stage: str) -> bool:
    """Whether `dvc status STAGE` reports changes (retried once: another DVC command may hold the lock)."""
    import json

    out = subprocess.run([*dvc_command(Path(root)), "status", "--json", stage], cwd=root, env=child_env(),
                         capture_output=True, text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"dvc status {stage} failed: {out.stderr.strip()[-2000:]}")
    return bool(json.loads(out.stdout or "{}"))


@task(name="dvc-commit", task_run_name="dvc commit {stage}", retries=1, retry_delay_seconds=2)
def dvc_commit(root: str, stage: str) -> str:
    """Record a stage's current deps and outs in dvc.lock (after the flow computed them itself)."""
    return run_logged([*dvc_command(Path(root)), "commit", "--force", stage], Path(root), child_env(),
                      f"dvc commit {stage}")
