"""What the stage modules share: output paths (dvc.yaml declares the same ones), small file helpers,
`StageRun` (the MLflow side of a running stage) and the helpers several stages use.

Every stage function has the signature `(params, root, run) -> dict` where `run` is a `StageRun` and the
returned dict is the stage's metrics summary. DVC lists this module as a dependency of every stage.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Output locations (relative to the project root). dvc.yaml declares the same paths.
BENCH_DIR = Path("data/benchmarks")
TOKENIZER_DIR = Path("data/tokenizer")
INIT_DIR = Path("data/models/init")
TEACHER_DIR = Path("data/models/teacher")
SFT_DIR = Path("data/models/student_sft")
SEQKD_DIR = Path("data/models/student_seqkd")
CACHE_DIR = Path("data/teacher_cache")
RUNS_DIR = Path("data/runs")
EVAL_DATA_DIR = Path("data/eval")
METRICS_DIR = Path("metrics")
EVAL_METRICS_DIR = METRICS_DIR / "eval"
TRAIN_PLOTS_DIR = Path("plots/train")
REPORTS_DIR = Path("reports")
TIMING_DIR = Path(".atod/timing")  # untracked: compute vs. wall seconds per stage (overhead measurement)
# Untracked: the resumable stages' work (training runs in progress and finished, per-model evaluation
# results), keyed by the digest of its inputs. It lives outside every DVC output because `dvc exp run`
# (and `dvc checkout`) delete outputs DVC has no hash for, such as a stage's half-written outputs, even
# `persist` ones: an interrupted experiment would otherwise start over. Safe to delete when no stage runs.
RESUME_DIR = Path(".atod/resume")

# Models evaluated besides the trained methods, and where they live.
FIXED_MODELS = {"vanilla": INIT_DIR / "student", "sft": SFT_DIR, "seqkd": SEQKD_DIR, "teacher": TEACHER_DIR}
UNTRAINED_METHODS = ("seqkd",)  # may be listed in train.methods, but cache_teacher makes it (always)


CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding atod/ and tasks/


# ---------------------------------------------------------------- small helpers
def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically (tmp file + rename), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable (e.g. a file an interrupted write left)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# Code that only renders the report (tables, deltas, figures) from finished results: left out of the
# digests below, so that editing the report reuses finished training runs and evaluations.
REPORT_CODE = ("atod/eval/compare.py", "atod/eval/plots.py")


def inputs_digest(code: tuple[str, ...], data: dict[str, Path], config: dict[str, Any]) -> str:
    """md5 of the code files/directories `code` (relative to CODE_ROOT, minus REPORT_CODE), the data paths
    `data` and a JSON config: what a stage job depends on, so that a finished job can be reused by a later
    execution (the resumable stages: `train`, `evaluate` and the warm-ups)."""
    import hashlib

    from tasks.tracking import dvc_md5

    def code_md5(path: str) -> str | None:
        inside = [r[len(path) + 1:] for r in REPORT_CODE if r.startswith(path + "/")]
        return dvc_md5(CODE_ROOT / path, exclude=inside)

    inputs = {"code": {path: code_md5(path) for path in code},
              "data": {name: dvc_md5(path) for name, path in data.items()}, "config": config}
    return hashlib.md5(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


def require_inputs(stage: str, root: Path, needs: dict[Path, str]) -> None:
    """Before any compute: raise FileNotFoundError naming every directory of `needs` (relative to `root` ->
    the stage that makes it) that is not there."""
    missing = [f"{path} (stage {made_by})" for path, made_by in needs.items() if not (root / path).is_dir()]
    if missing:
        raise FileNotFoundError(f"{stage} needs {len(missing)} input(s) that are not there: {', '.join(missing)}; "
                                "run those stages first (`dvc repro` runs every stage in order)")


def remove_path(path: Path) -> None:
    """Delete a file or a directory tree."""
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def publish_dir(src: Path, dst: Path, ignore: Callable[[str, list[str]], set[str]] | None = None) -> Path:
    """Replace the directory `dst` by a copy of `src` (files hard-linked where the file system allows:
    neither side is written in place afterwards), atomically: `dst` is either the old or the new tree."""
    tmp, old = dst.with_name(f".{dst.name}.tmp"), dst.with_name(f".{dst.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp, ignore=ignore, copy_function=_link_or_copy)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (a stage owns its outputs: stale files from an earlier run go)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_dir(root: Path, method: str, benchmark: str, seed: int) -> Path:
    return root / RUNS_DIR / method / benchmark / f"seed{seed}"


def trained_methods(params) -> list[str]:
    return [m for m in params.train.methods if m not in UNTRAINED_METHODS]


def trained_runs(params) -> list[tuple[str, str, int]]:
    """(method, benchmark, seed) of every training run `train` asks for, in the order the stage starts them."""
    return [(m, b, s) for m in trained_methods(params) for b in params.train.benchmarks for s in params.train.seeds]


@dataclass
class StageRun:
    """The MLflow side of a running stage, handed to the stage function (keeps `atod` free of MLflow)."""

    run_id: str
    root: Path

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        from tasks import tracking

        tracking.log_metrics(metrics, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        from tasks import tracking

        tracking.log_artifact(path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        from tasks import tracking

        tracking.log_text(text, artifact_file)

    @contextmanager
    def child(self, name: str, **tags: Any) -> Iterator[Callable[[dict[str, Any], int], None]]:
        """A nested run (tags such as method, benchmark, seed); yields a `log(metrics, step)` callback."""
        from tasks import tracking

        with tracking.child_run(name, tags) as child_id:
            yield lambda metrics, step: tracking.log_metrics(metrics, step=step, run_id=child_id)


# ---------------------------------------------------------------- used by several stages
def _load_benchmarks(root: Path, names) -> dict[str, Any]:
    from atod.envs import load_benchmark

    return {name: load_benchmark(name, root / BENCH_DIR / name) for name in names}


class _LastMetrics:
    """A `log(metrics, step)` callback that forwards to MLflow and remembers the last values."""

    def __init__(self, log: Callable[[dict[str, Any], int], None]):
        self.log, self.last = log, {}

    def __call__(self, metrics: dict[str, Any], step: int) -> None:
        self.last = dict(metrics)
        self.log(metrics, step)


def _save_model(model, tokenizer, out: Path) -> None:
    from atod.agent.models import quiet_hf_progress

    with quiet_hf_progress():  # no "Writing model shards" bar among the stage's own
        model.save_pretrained(fresh_dir(out))
    tokenizer.save_pretrained(out)
