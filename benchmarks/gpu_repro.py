"""The reproduction on the accelerator machine: the pipeline's own `train` and `evaluate` stages (the code
DVC runs, tasks/stages/) with the reproduction's settings, many runs at once, without MLflow, Prefect or
DVC (that machine has torch and transformers, not those: `ATOD_TRACKING=off`, see tasks/tracking.py).

    # there, from the repository root, with the default's stage outputs in data/ (carried: data/benchmarks,
    # data/models/{init/student,student_sft,student_seqkd,teacher}) and the wheels installed:
    python benchmarks/gpu_repro.py --benchmarks searchqa,webshop --workers 12 --budget-s 540 --out $OUT
    # here, in a clone of the same commit, with what came back:
    tar -xzf gpu_repro.tar.gz && ATOD_TRACKING=off atod stage compare --params params.gpu_repro.yaml

Settings: the default profile, REPRO_SETTINGS (what `scripts/run.sh repro` sets; a test keeps the two
equal), the chosen benchmarks, `--workers` training runs and model evaluations at once (one process each,
one torch thread each, all on the one GPU), `models.device: cuda`, then any `--set KEY=VALUE` (a YAML
value). They go into the profile's section of params.gpu_repro.yaml (so they win over its overrides),
which travels back with the results. (`--profile smoke --device cpu --set train.steps=2 ...` runs the
same path on a CPU in a minute: that is how the tests check it.) Stages run one after another; a stage still
running when `--budget-s` is spent is stopped (its process group killed) and what it finished is kept:
run the same command again on the same (still warm) machine and the stages resume (finished runs and
evaluations are reused, unfinished runs continue from their last checkpoint), as under DVC.

Back in $OUT: gpu_repro.tar.gz (the params file, metrics/train.json and eval/, data/runs/*/*/*/{metrics.jsonl,summary.json,
inputs.json}, data/eval/records.jsonl and jobs/, plots/train/, the work directories' metrics of unfinished
runs, .atod/timing/) and gpu_repro.json (machine, settings, each stage's wall time and exit status).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atod.config import load_params
from atod.envs import BENCHMARKS

# `scripts/run.sh repro` (dvc exp run -S ...): the reproduction on top of the default profile.
REPRO_SETTINGS = {
    "train.methods": ["grpo", "opd", "atod", "atod_no_anneal", "atod_uniform", "atod_token", "seqkd"],
    "train.seeds": [0, 1, 2],
    "train.steps": 90,
    "train.anneal.anneal_steps": 48,
}
PARAMS_FILE = "params.gpu_repro.yaml"
NEEDED = ("data/models/init/student", "data/models/student_sft", "data/models/student_seqkd", "data/models/teacher")
PACKED = ("metrics/train.json", "metrics/eval/*.json", "data/runs/*/*/*/metrics.jsonl", "data/runs/*/*/*/summary.json",
          "data/runs/*/*/*/inputs.json", "data/eval/records.jsonl", "data/eval/jobs/*.json", "plots/train/*.png",
          ".atod/resume/train/*/*/*/*/metrics.jsonl", ".atod/resume/train/*/*/*/*/summary.json",
          ".atod/resume/train/*/*/*/*/inputs.json", ".atod/timing/*.json")


def set_key(raw: dict, dotted: str, value) -> None:
    """raw['a']['b']['c'] = value for dotted 'a.b.c' (the way `dvc exp run -S` edits params.yaml)."""
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def write_params(root: Path, profile: str, settings: dict) -> Path:
    """params.gpu_repro.yaml: params.yaml with `profile` active and `settings` in its profile section."""
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["profile"] = profile
    for key, value in settings.items():
        set_key(raw, f"profiles.{profile}.{key}", value)
    path = root / PARAMS_FILE
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_params(path)  # validate before any compute
    return path


STAGE_CALL = "import sys; from tasks.stages import run_stage; run_stage(sys.argv[1], params_path=sys.argv[2])"


def run_stage(root: Path, stage: str, params: Path, timeout_s: float) -> dict:
    """The stage (`tasks.stages.run_stage`, what `atod stage` calls, without the CLI's typer) in its own
    process group, killed with its workers after `timeout_s`."""
    env = {**os.environ, "ATOD_TRACKING": "off", "PYTHONPATH": os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", STAGE_CALL, stage, str(params)], cwd=root, env=env,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=max(timeout_s, 0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = "stopped at the budget"
    return {"stage": stage, "wall_s": round(time.perf_counter() - t0, 1), "rc": rc}


def finished_runs(root: Path, params_path: Path) -> int:
    """How many of the runs `params_path` asks for are finished with its inputs (as the stage decides)."""
    from tasks.stages.common import run_dir, trained_runs
    from tasks.stages.train import run_inputs_digest, run_state

    params = load_params(params_path)
    digests = {b: run_inputs_digest(params, root, b) for b in params.train.benchmarks}  # hashes code and data
    return sum(run_state(run_dir(root, m, b, s), digests[b]) == "done" for m, b, s in trained_runs(params))


def pack(root: Path, out: Path) -> Path:
    """The results (PACKED) and the params file as one tar.gz, paths relative to the project root."""
    target = out / "gpu_repro.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        tar.add(root / PARAMS_FILE, arcname=PARAMS_FILE)
        for pattern in PACKED:
            for path in sorted(root.glob(pattern)):
                tar.add(path, arcname=str(path.relative_to(root)))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--workers", type=int, default=12, help="training runs / model evaluations at once")
    parser.add_argument("--stages", default="train,evaluate")
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop a stage still running after this")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one more setting")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=ROOT, help="the project (default: this checkout)")
    args = parser.parse_args()
    benchmarks = [b for b in args.benchmarks.split(",") if b]
    unknown = sorted(set(benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    root = args.root.resolve()
    missing = [p for p in (*NEEDED, *(f"data/benchmarks/{b}" for b in benchmarks)) if not (root / p).is_dir()]
    if missing:
        parser.error(f"missing inputs (carry them from a checkout where the default ran): {', '.join(missing)}")
    settings = {**REPRO_SETTINGS, "train.benchmarks": benchmarks, "train.parallel_runs": args.workers,
                "evaluate.parallel_jobs": args.workers, "models.torch_threads": 1, "models.device": args.device}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        settings[key] = yaml.safe_load(value)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: this script is for the accelerator machine (on a CPU: `bash scripts/run.sh repro`)")
    args.out.mkdir(parents=True, exist_ok=True)
    params = write_params(root, args.profile, settings)
    record = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "cpus": os.cpu_count(), "profile": args.profile, "settings": settings,
              "stages": []}
    t0 = time.perf_counter()
    for stage in [s for s in args.stages.split(",") if s]:
        result = run_stage(root, stage, params, args.budget_s - (time.perf_counter() - t0))
        record["stages"].append(result)
        print(json.dumps(result), flush=True)
        if result["rc"] != 0:
            break
    record["finished_runs"] = finished_runs(root, params)
    (args.out / "gpu_repro.json").write_text(json.dumps(record, indent=1))
    print(f"packed {pack(root, args.out)}; {record['finished_runs']} runs finished", flush=True)


if __name__ == "__main__":
    main()
