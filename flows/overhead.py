"""How much of a pipeline run is the pipeline's own overhead (DVC, MLflow, process start-up)?

    python -m flows.overhead [--profile smoke] [--keep DIR]

Copies the project to a temporary directory, runs `dvc repro` there from scratch and compares its wall
time with the stages' compute time (each stage writes `.atod/timing/<stage>.json`: the seconds of its
stage function minus the MLflow calls inside it; library imports such as torch count as compute).
Everything else - DVC hashing and bookkeeping, Python start-up, the CLI, MLflow's import, database and
run bookkeeping - is overhead. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def stage_timings(project: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((project / ".atod" / "timing").glob("*.json")):
        out[p.stem] = json.loads(p.read_text())
    return out


def overhead_report(project: Path, wall_s: float) -> dict:
    timings = stage_timings(project)
    compute = sum(t["compute_s"] for t in timings.values())
    mlflow = sum(t["mlflow_s"] for t in timings.values())
    process = sum(t["process_s"] for t in timings.values())
    return {
        "wall_s": round(wall_s, 2),
        "compute_s": round(compute, 2),
        "overhead_s": round(wall_s - compute, 2),
        "overhead_share": round((wall_s - compute) / wall_s, 4) if wall_s else None,
        "mlflow_calls_s": round(mlflow, 2),
        "outside_stage_functions_s": round(wall_s - process, 2),  # DVC + interpreter/CLI start-up
        "stages": {k: {"compute_s": round(v["compute_s"], 2), "process_s": round(v["process_s"], 2)}
                   for k, v in timings.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="Measure the pipeline's own overhead on a fresh `dvc repro`.")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--keep", type=Path, default=None, help="run in this (new) directory and keep it")
    a = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tasks.sandbox import copy_project, sandbox_env

    base = a.keep or Path(tempfile.mkdtemp(prefix="atod-overhead-"))
    project = copy_project(root, base / "proj", profile=a.profile)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=project, env=sandbox_env(project), check=True)
    report = overhead_report(project, time.perf_counter() - t0)
    report["profile"] = a.profile
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
