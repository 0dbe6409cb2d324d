"""Dotted params.yaml keys (`train.methods`, `profiles.smoke.sft_warmup.teacher`), as DVC addresses
params, looked up in a parsed YAML tree; which of them each DVC stage must list (`dvc_params`) and which
dvc.yaml fails to list (`undeclared_dvc_params`, checked by `atod config validate` and before every
stage). Also used by `tasks.tracking` (their values, for the inputs digest). Imports nothing heavy: the
CLI's `config validate` loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MISSING: Any = object()  # `lookup`'s default that no YAML value can equal


def lookup(tree: Any, dotted: str, default: Any = None) -> Any:
    """The value at `dotted` in the nested dicts `tree`, or `default` where a part is missing or a node on
    the way is not a dict. A key that is present with a null value gives None, not `default`."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def has(tree: Any, dotted: str) -> bool:
    """Whether `dotted` is present in `tree`, also when its value is null (DVC accepts such a key)."""
    return lookup(tree, dotted, MISSING) is not MISSING


# The params.yaml keys each stage reads (besides `profile`); dotted keys name a part of a section. dvc.yaml
# lists these and the matching `profiles.<name>.<key>` overrides that exist; `dvc_params` computes that
# list (tests compare).
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare", "models"),
    "sft_teacher": ("prepare.benchmarks", "sft_warmup.seed", "sft_warmup.teacher", "models", "agent", "train.eval_tasks"),
    "sft_student": ("prepare.benchmarks", "sft_warmup.seed", "sft_warmup.student", "models", "agent", "train.eval_tasks"),
    "cache_teacher": ("prepare.benchmarks", "cache_teacher", "models", "agent", "train.eval_tasks"),
    "train": ("train", "models", "agent"),
    "evaluate": ("evaluate", "models", "agent", "train.methods", "train.benchmarks", "train.seeds"),
    "compare": ("compare", "train.methods", "train.benchmarks", "train.seeds"),
}


def dvc_params(stage: str, raw_params: dict[str, Any]) -> list[str]:
    """The params a DVC stage must depend on: `profile`, the keys it reads, and every profile's override
    of those keys that exists in the parsed params.yaml `raw_params` (DVC refuses missing keys)."""
    keys = STAGE_PARAMS[stage]
    profiles = raw_params.get("profiles") or {}
    overrides = [f"profiles.{p}.{k}" for p in profiles for k in keys if has(profiles[p], k)]
    return ["profile", *keys, *overrides]


def undeclared_dvc_params(dvc_yaml: dict[str, Any], raw_params: dict[str, Any]) -> list[tuple[str, str]]:
    """(stage, key) for every key a stage reads (`dvc_params`) that the parsed dvc.yaml's stage does not list
    under `params`: DVC would not rerun the stage when that key changes (typically a profile override
    added to params.yaml, e.g. `profiles.gpu.agent`). As DVC does, a listed key covers the keys under it
    (`profiles.gpu` covers `profiles.gpu.agent`) and a `{params.yaml: null}` entry the whole file. Stages
    missing from dvc.yaml are not checked."""
    stages = (dvc_yaml or {}).get("stages") or {}
    missing = []
    for stage in STAGE_PARAMS:
        if stage not in stages:
            continue
        listed: set[str] = set()
        whole_file = False
        for entry in stages[stage].get("params") or []:
            if isinstance(entry, str):
                listed.add(entry)
            elif isinstance(entry, dict):  # {params file: [keys]}, or {params file: null}: all of it
                for file, keys in entry.items():
                    whole_file |= file == "params.yaml" and not keys
                    listed.update(keys or [])
        missing += [(stage, key) for key in dvc_params(stage, raw_params)
                    if not whole_file and not _covered(key, listed)]
    return missing


def _covered(key: str, listed: set[str]) -> bool:
    """Whether `key` or a dotted ancestor of it (`profiles.gpu` for `profiles.gpu.agent`) is in `listed`."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in listed for i in range(1, len(parts) + 1))


def undeclared_message(missing: list[tuple[str, str]], dvc_yaml_path: str = "dvc.yaml") -> str:
    """The error for `undeclared_dvc_params`' findings: what to add where."""
    lines = [f"  stages.{stage}.params: add `- {key}`" for stage, key in missing]
    return (f"{dvc_yaml_path} does not list params that its stages read, so `dvc repro` would not rerun them "
            "when these change:\n" + "\n".join(lines))


def check_dvc_params(params_path: Path) -> None:
    """Raise ValueError (`undeclared_message`) when the dvc.yaml beside `params_path` does not list a key its
    stages read. Only for the file DVC reads, `params.yaml` beside a dvc.yaml: another params file (e.g.
    `benchmarks/gpu_repro.py`'s `params.gpu_repro.yaml`, run with `atod stage --params`) is not DVC's."""
    import yaml

    dvc_yaml = params_path.parent / "dvc.yaml"
    if params_path.name != "params.yaml" or not dvc_yaml.is_file() or not params_path.is_file():
        return
    missing = undeclared_dvc_params(yaml.safe_load(dvc_yaml.read_text()), yaml.safe_load(params_path.read_text()) or {})
    if missing:
        raise ValueError(undeclared_message(missing, str(dvc_yaml)))
