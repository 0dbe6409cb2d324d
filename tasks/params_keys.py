"""Dotted params.yaml keys (`train.methods`, `profiles.smoke.sft_warmup.teacher`), as DVC addresses
params, looked up in a parsed YAML tree. Used by `tasks.stages.dvc_params` (which keys exist) and
`tasks.tracking` (their values, for the inputs digest)."""

from __future__ import annotations

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
