"""Ablations as DVC experiments: one `dvc exp run -S ...` per method, all in one MLflow experiment.

    ablation_flow(methods, seeds, benchmarks, profile="smoke", experiment="atod-ablation")

For each method m: `dvc exp run -n abl-<m>-<profile> -S profile=<profile> -S <train.methods>=[m]
-S <train.seeds>=[...] -S <train.benchmarks>=[...]`, under an MLflow parent run of its own in the MLflow
experiment `experiment`, so the MLflow UI lists the settings side by side (and `dvc exp show` /
`dvc metrics diff` compare them on the DVC side). Only the stages that depend on `train.{methods,seeds,benchmarks}` rerun;
prepare, sft_teacher, sft_student and cache_teacher come from DVC's cache after the first setting.

When the chosen profile overrides a key itself (e.g. `profiles.gpu.train.methods`), the flow sets that
override instead, because profile overrides win over the top-level sections.

Experiments run one after the other in the workspace (`dvc exp run` needs a git commit; afterwards the
workspace holds the last setting's results: `dvc exp apply NAME` switches). Queueing
(`dvc exp run --queue` + `dvc queue start -j N`) would run them in parallel temporary copies, which the
2-core CPU profile does not benefit from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from prefect import flow

from flows.pipeline import end_parent_run, set_profile, start_parent_run
from tasks.prefect_tasks import dvc_exp_run


def override_key(raw: dict[str, Any], profile: str, dotted: str) -> str:
    """The params.yaml key that decides `dotted` under `profile`: the profile's own override if it has
    one (e.g. profiles.gpu.train.methods), else the top-level key."""
    node: Any = (raw.get("profiles") or {}).get(profile) or {}
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return dotted
        node = node[part]
    return f"profiles.{profile}.{dotted}"


def setting_overrides(raw: dict[str, Any], profile: str, method: str, seeds: list[int],
                      benchmarks: list[str]) -> dict[str, Any]:
    """{params.yaml key: value} of one ablation setting (what `-S key=value` sets)."""
    values = {"train.methods": [method], "train.seeds": list(seeds), "train.benchmarks": list(benchmarks)}
    return {"profile": profile, **{override_key(raw, profile, k): v for k, v in values.items()}}


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with dotted keys set (to validate a setting before running it)."""
    import copy

    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@flow(name="atod-ablation", log_prints=True)
def ablation_flow(methods: list[str] | None = None, seeds: list[int] | None = None,
                  benchmarks: list[str] | None = None, profile: str = "smoke",
                  experiment: str = "atod-ablation") -> list[dict[str, Any]]:
    """One DVC experiment per method (seeds x benchmarks each), logged into one MLflow experiment.

    methods: default the paper's ablation set (atod, atod_no_anneal, atod_uniform, atod_token);
    seeds: default [0]; benchmarks: default [alfworld]; profile: smoke | default | gpu."""
    from atod.config import resolve
    from atod.project_env import configure_environment
    from tasks.tracking import EXPERIMENT_ENV, PARENT_RUN_ENV

    root = configure_environment()
    methods = list(methods or ["atod", "atod_no_anneal", "atod_uniform", "atod_token"])
    seeds = list(seeds if seeds is not None else [0])
    benchmarks = list(benchmarks or ["alfworld"])
    params_path = root / "params.yaml"
    set_profile(params_path, profile)
    raw = yaml.safe_load(params_path.read_text())
    settings = {m: setting_overrides(raw, profile, m, seeds, benchmarks) for m in methods}
    # Validate every setting before any compute (a typo in a method name fails here, not an hour in).
    for method, overrides in settings.items():
        resolve(apply_overrides(raw, overrides), profile=profile, source=f"params.yaml + ablation setting {method}")

    results = []
    for method in methods:
        name = f"abl-{method}-{profile}"
        overrides = [f"{k}={json.dumps(v)}" for k, v in settings[method].items()]
        parent = start_parent_run(str(root), profile, "ablation", name=name,
                                  tags={"method": method, "ablation.seeds": json.dumps(seeds),
                                        "ablation.benchmarks": json.dumps(benchmarks)},
                                  experiment=experiment)
        status = "FAILED"
        try:
            dvc_exp_run(str(root), name, overrides, {PARENT_RUN_ENV: parent, EXPERIMENT_ENV: experiment})
            status = "FINISHED"
        finally:
            end_parent_run(parent, status)
        comparison = Path(root) / "metrics" / "comparison.json"
        results.append({"method": method, "experiment": name, "mlflow_parent_run": parent,
                        "comparison": json.loads(comparison.read_text()) if comparison.is_file() else None})
    print(f"{len(results)} settings done: compare with `dvc exp show` or the MLflow experiment '{experiment}'")
    return results
