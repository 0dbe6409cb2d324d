"""MLflow tracking for the pipeline: one parent run per pipeline execution, one nested run per stage.

How stage processes find their parent run (every stage runs in its own process, started by DVC):
1. `ATOD_MLFLOW_PARENT_RUN_ID` in the environment: set by the Prefect flows (`flows/pipeline.py`) for
   every `dvc repro` / `dvc exp run` they start. The flow owns that run and ends it.
2. Otherwise the stage looks for the `dvc repro` / `dvc exp run` process it runs under (an ancestor
   process) and keys a small state file, `.atod/parent_run.json`, by that process's id and start time.
   The first stage of an invocation creates the parent run and writes the file; later stages of the same
   invocation reuse it. So plain `dvc repro` nests its stages under one parent too. Each stage marks
   the parent FINISHED (or FAILED) when it ends and RUNNING again when the next one starts, so the
   parent's status and end time are right whichever stage turns out to be the last.
3. No DVC ancestor (`atod stage NAME` typed by hand): a parent run of its own, holding this one stage.
A parent run of cases 2 and 3 is tagged with its invocation (`atod.invocation`: 'pid:start_time'). A
killed pipeline (Ctrl-C aside: SIGKILL, a closed session) leaves its runs RUNNING; the next stage that
starts marks every RUNNING parent whose invocation process is gone, and the RUNNING runs under it, KILLED
(`end_orphaned_runs`), so the MLflow UI does not show dead executions as running.

Every run gets the whole resolved config as params (`Params.flat()`), and tags: git commit, profile,
stage, the DVC digest of the stage's inputs (`dvc.inputs_md5`, computed with DVC's own hashing rules so
that it equals `lock_inputs_digest(dvc.lock's entry)` once DVC has recorded the run), and, for
training/evaluation runs, method, benchmark and seed.

Nothing here runs on import: entry points call `atod.project_env.configure_environment()` first, which
points MLflow at `sqlite:///<project>/mlflow.db`.

`ATOD_TRACKING=off` runs the stages without MLflow, on a machine that does not have it (the accelerator
machine has torch and transformers, not MLflow, Prefect or DVC): every function below then logs nothing
and opens no run (run ids are ""), and mlflow is never imported. The stages' files (data/, metrics/,
reports/, .atod/timing/) are written as always.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tasks.params_keys import lookup

TRACKING_ENV = "ATOD_TRACKING"  # "on" (default) or "off": no MLflow at all
PARENT_RUN_ENV = "ATOD_MLFLOW_PARENT_RUN_ID"
EXPERIMENT_ENV = "ATOD_MLFLOW_EXPERIMENT"
LAUNCHER_ENV = "ATOD_LAUNCHER"  # "prefect", "dvc" or "cli": a tag on the parent run
DEFAULT_EXPERIMENT = "atod"
STATE_FILE = Path(".atod") / "parent_run.json"
# Directory entries DVC skips for us via .dvcignore; the digest below must skip the same ones.
IGNORED_NAMES = ("__pycache__", ".pytest_cache", ".ruff_cache")
IGNORED_SUFFIXES = (".pyc",)


def tracking_on() -> bool:
    """False when `ATOD_TRACKING=off` (see the module docstring); any value but on/off is an error."""
    value = os.environ.get(TRACKING_ENV, "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{TRACKING_ENV} must be 'on' or 'off', not {os.environ[TRACKING_ENV]!r}")
    return value == "on"


# ---------------------------------------------------------------- time spent in MLflow calls
class TrackingClock:
    """Seconds spent inside MLflow calls in this process (part of the pipeline's own overhead)."""

    seconds: float = 0.0

    @classmethod
    @contextmanager
    def measure(cls) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            cls.seconds += time.perf_counter() - t0


# ---------------------------------------------------------------- git and DVC fingerprints
def git_commit(root: Path) -> tuple[str, bool]:
    """(HEAD commit or 'none', whether the work tree has uncommitted changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=False, timeout=20)
        sha = head.stdout.strip() if head.returncode == 0 else ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=20, check=False).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return "none", False
    return (sha or "none"), dirty


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ignored(name: str) -> bool:
    return name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)


def dvc_md5(path: Path, exclude: Collection[str] = ()) -> str | None:
    """DVC 3's md5 of a file (plain md5) or directory (md5 of its sorted JSON listing + '.dir'), or None
    if the path does not exist. Matches the `md5` DVC writes to dvc.lock for the same content, unless
    `exclude` names files of the directory (relative POSIX paths) to leave out of the listing."""
    if path.is_file():
        return _md5_file(path)
    if not path.is_dir():
        return None
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not _ignored(d)]
        for name in filenames:
            if _ignored(name):
                continue
            full = Path(dirpath) / name
            rel = posixpath.join(*full.relative_to(path).parts)
            if rel in exclude:
                continue
            entries.append({"md5": _md5_file(full), "relpath": rel})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def _digest(deps: Mapping[str, str | None], params: Mapping[str, Any]) -> str:
    blob = json.dumps({"deps": dict(sorted(deps.items())), "params": params}, sort_keys=True, default=str)
    return hashlib.md5(blob.encode("utf-8")).hexdigest()


def lock_inputs_digest(lock_stage: Mapping[str, Any]) -> str:
    """Digest of a dvc.lock stage entry's inputs (deps' md5s and params' values)."""
    deps = {d["path"]: d.get("md5") for d in lock_stage.get("deps", [])}
    params = {f: dict(sorted(v.items())) for f, v in sorted((lock_stage.get("params") or {}).items())}
    return _digest(deps, params)


def current_inputs_digest(root: Path, stage: str) -> str | None:
    """The same digest computed now, from dvc.yaml's declaration of `stage` and the files on disk
    (None when dvc.yaml does not declare the stage)."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return None
    spec = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}).get(stage)
    if spec is None:
        return None
    deps = {str(d): dvc_md5(root / str(d)) for d in spec.get("deps", [])}
    params: dict[str, dict[str, Any]] = {}
    for item in spec.get("params", []):
        file, keys = ("params.yaml", [item]) if isinstance(item, str) else next(iter(item.items()))
        raw = yaml.safe_load((root / file).read_text()) if (root / file).is_file() else {}
        params.setdefault(file, {}).update({k: lookup(raw, k) for k in keys})
    return _digest(deps, {f: dict(sorted(v.items())) for f, v in sorted(params.items())})


def lock_entry(root: Path, stage: str) -> dict[str, Any] | None:
    """`stage`'s entry in dvc.lock (what DVC recorded for its last run), if any."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage)


# ---------------------------------------------------------------- the parent run of one pipeline execution
def invocation_key() -> tuple[str, str]:
    """(launcher, key) identifying the pipeline execution this process belongs to: the nearest ancestor
    `dvc repro` / `dvc exp ...` process as 'pid:start_time', else this process ('cli')."""
    import psutil

    proc = psutil.Process()
    for parent in proc.parents():
        try:
            cmd = parent.cmdline()
            started = parent.create_time()
        except (psutil.Error, OSError):
            continue
        words = [Path(c).name for c in cmd[:4]]
        if "dvc" in words and ("repro" in cmd or "exp" in cmd):
            return "dvc", f"{parent.pid}:{started:.3f}"
    return "cli", f"{proc.pid}:{proc.create_time():.3f}"


def experiment_id(root: Path, name: str | None = None) -> str:
    """Id of the MLflow experiment `name` (default: $ATOD_MLFLOW_EXPERIMENT or 'atod'), created if new
    with its artifacts under `<root>/mlartifacts/`."""
    import mlflow

    name = name or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    with TrackingClock.measure():
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return mlflow.create_experiment(name, artifact_location=(root / "mlartifacts" / name).resolve().as_uri())


def _str_param(value: Any) -> str:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[: MAX_PARAM_VAL_LENGTH - 3] + "..."


def log_config(run_id: str, flat: Mapping[str, Any]) -> None:
    """Log a flattened config as params (lists as JSON, values cut to MLflow's length limit)."""
    if not tracking_on():
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param

    items = [Param(k, _str_param(v)) for k, v in sorted(flat.items())]
    client = MlflowClient()
    with TrackingClock.measure():
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=items[i: i + 100], synchronous=True)


def base_tags(root: Path, profile: str) -> dict[str, str]:
    commit, dirty = git_commit(root)
    return {"git.commit": commit, "git.dirty": str(dirty).lower(), "profile": profile}


def create_parent_run(root: Path, params: Any, *, launcher: str, run_name: str | None = None,
                      extra_tags: Mapping[str, str] | None = None, experiment: str | None = None) -> str:
    """Start (and leave running) a parent run for one pipeline execution in MLflow experiment
    `experiment` (default: $ATOD_MLFLOW_EXPERIMENT or 'atod'); returns its id ("" with tracking off)."""
    if not tracking_on():
        return ""
    from mlflow import MlflowClient

    exp_id = experiment_id(root, experiment)
    tags = {**base_tags(root, params.profile), "atod.kind": "pipeline", "atod.launcher": launcher,
            **dict(extra_tags or {})}
    name = run_name or f"pipeline-{params.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    with TrackingClock.measure():
        run = MlflowClient().create_run(exp_id, run_name=name, tags=tags)
    log_config(run.info.run_id, params.flat())
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    if not tracking_on():
        return
    from mlflow import MlflowClient

    with TrackingClock.measure():
        MlflowClient().set_terminated(run_id, status=status)


def _alive(invocation: str) -> bool:
    """Whether the process of an invocation key 'pid:start_time' still runs (same pid, same start)."""
    import psutil

    try:
        pid, started = invocation.split(":", 1)
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 1.0
    except (ValueError, psutil.Error, OSError):
        return False


def end_orphaned_runs(experiment: str, current: str | None = None) -> list[str]:
    """Mark KILLED every RUNNING parent run of `experiment` (an id) whose invocation process is gone
    (other than `current`), and every RUNNING run nested under it; returns their ids. Parents without
    an invocation tag (owned by a Prefect flow, which ends them itself) are left alone."""
    from mlflow import MlflowClient

    client = MlflowClient()
    with TrackingClock.measure():
        parents = client.search_runs([experiment], filter_string="attributes.status = 'RUNNING' and "
                                     "tags.`atod.kind` = 'pipeline'", max_results=1000)
    dead = [r.info.run_id for r in parents if (inv := r.data.tags.get("atod.invocation"))
            and inv != current and not _alive(inv)]
    ended, todo = [], list(dead)
    while todo:
        run_id = todo.pop()
        with TrackingClock.measure():
            client.set_terminated(run_id, status="KILLED")
            todo += [r.info.run_id for r in client.search_runs(
                [experiment], filter_string=f"attributes.status = 'RUNNING' and tags.mlflow.parentRunId = '{run_id}'",
                max_results=10000)]
        ended.append(run_id)
    return ended


def _parent_exists(run_id: str) -> bool:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        with TrackingClock.measure():
            run = MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return run.info.lifecycle_stage == "active"


def resolve_parent_run(root: Path, params: Any) -> tuple[str, bool]:
    """(parent run id, whether this process manages its status) - see the module docstring."""
    from_env = os.environ.get(PARENT_RUN_ENV)
    if from_env:
        return from_env, False
    launcher, key = invocation_key()
    state = root / STATE_FILE
    if launcher == "dvc" and state.is_file():
        try:
            saved = json.loads(state.read_text())
        except json.JSONDecodeError:
            saved = {}
        if saved.get("key") == key and _parent_exists(saved.get("run_id", "")):
            return saved["run_id"], True
    end_orphaned_runs(experiment_id(root), current=key)
    run_id = create_parent_run(root, params, launcher=launcher, extra_tags={"atod.invocation": key},
                               run_name=f"{'dvc-repro' if launcher == 'dvc' else 'stage'}-{params.profile}-"
                                        f"{time.strftime('%Y%m%d-%H%M%S')}")
    if launcher == "dvc":
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "run_id": run_id}))
        tmp.replace(state)
    return run_id, True


# ---------------------------------------------------------------- runs
@contextmanager
def stage_run(root: Path, stage: str, params: Any) -> Iterator[str]:
    """An active MLflow run for one stage, nested under the pipeline's parent run; yields its id.
    Ends FINISHED, or FAILED if the body raises (and marks a self-managed parent the same way).
    With tracking off, yields "" and logs nothing."""
    if not tracking_on():
        print(f"tracking: {TRACKING_ENV}=off, stage {stage!r} runs without MLflow", file=sys.stderr)
        yield ""
        return
    import mlflow
    from mlflow import MlflowClient

    parent_id, manage_parent = resolve_parent_run(root, params)
    exp_id = MlflowClient().get_run(parent_id).info.experiment_id
    tags = {**base_tags(root, params.profile), "atod.kind": "stage", "atod.stage": stage}
    digest = current_inputs_digest(root, stage)
    if digest:
        tags["dvc.inputs_md5"] = digest
    with TrackingClock.measure():
        if manage_parent:
            MlflowClient().update_run(parent_id, status="RUNNING")
        run = mlflow.start_run(experiment_id=exp_id, run_name=stage, parent_run_id=parent_id, tags=tags)
    status = "FAILED"
    try:
        log_config(run.info.run_id, params.flat())
        yield run.info.run_id
        status = "FINISHED"
    finally:
        with TrackingClock.measure():
            mlflow.end_run(status=status)
            if manage_parent:
                MlflowClient().set_terminated(parent_id, status=status)


@contextmanager
def child_run(name: str, tags: Mapping[str, Any] | None = None) -> Iterator[str]:
    """A run nested under the active (stage) run, e.g. one per method x benchmark x seed; yields its id
    ("" with tracking off)."""
    if not tracking_on():
        yield ""
        return
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("child_run needs an active stage run (use it inside tracking.stage_run)")
    with TrackingClock.measure():
        run = mlflow.start_run(run_name=name, nested=True, experiment_id=parent.info.experiment_id,
                               tags={k: str(v) for k, v in (tags or {}).items()})
    status = "FAILED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    finally:
        with TrackingClock.measure():
            mlflow.end_run(status=status)


def open_child_run(name: str, tags: Mapping[str, Any] | None = None) -> str:
    """Create a run nested under the active (stage) run without making it active, and return its id: for
    runs whose metrics are logged from other processes (`log_metrics(..., run_id=...)`), such as parallel
    training runs. Close it with `end_run(run_id, status)`. With tracking off, returns ""."""
    if not tracking_on():
        return ""
    import mlflow
    from mlflow import MlflowClient

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("open_child_run needs an active stage run (use it inside tracking.stage_run)")
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    all_tags["mlflow.parentRunId"] = parent.info.run_id
    with TrackingClock.measure():
        run = MlflowClient().create_run(parent.info.experiment_id, tags=all_tags, run_name=name)
    return run.info.run_id


def log_metrics(metrics: Mapping[str, Any], step: int | None = None, run_id: str | None = None) -> None:
    """Log the finite numeric entries of `metrics` in one batch (non-numbers are skipped)."""
    if not tracking_on():
        return
    import mlflow

    run_id = run_id or mlflow.active_run().info.run_id
    _log_batch(run_id, ((key, value, int(step or 0)) for key, value in metrics.items()))


def log_metric_history(records: Sequence[Mapping[str, Any]], run_id: str) -> None:
    """Log saved per-step metrics (dicts with a "step" key, e.g. the lines of a run's metrics.jsonl) to
    `run_id` in batches: how a training run that was resumed or reused shows its earlier steps."""
    _log_batch(run_id, ((key, value, int(rec["step"])) for rec in records for key, value in rec.items()
                        if key != "step"))


def _log_batch(run_id: str, entries: Iterable[tuple[str, Any, int]]) -> None:
    """Log (key, value, step) entries whose value is a finite number, 1000 per request."""
    if not tracking_on():
        return
    import math

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(_metric_key(key), float(value), now, step) for key, value, step in entries
             if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)]
    with TrackingClock.measure():
        for i in range(0, len(items), 1000):
            MlflowClient().log_batch(run_id, metrics=items[i: i + 1000], synchronous=True)


def _metric_key(key: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /:")
    return "".join(c if c in allowed else "_" for c in key)[:250]


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    if not tracking_on():
        return
    import mlflow

    if not path.exists():
        return
    with TrackingClock.measure():
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    if not tracking_on():
        return
    import mlflow

    with TrackingClock.measure():
        mlflow.log_text(text, artifact_file)
