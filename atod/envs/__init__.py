"""Benchmarks: generated offline versions of ALFWorld, WebShop and Search-QA (and real-engine adapters).

Each benchmark package exposes `build(config, seed) -> Benchmark` and `load(directory) -> Benchmark`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from atod.envs.base import Benchmark, Env, StepInfo, StepResult, Task

if TYPE_CHECKING:
    from atod.config import PrepareConfig

BENCHMARKS = ("alfworld", "webshop", "searchqa")
SPLITS = {
    "alfworld": ("train", "valid_seen", "valid_unseen"),
    "webshop": ("train", "test"),
    "searchqa": ("train", "test_in_domain", "test_out_of_domain"),
}
EVAL_SPLITS = {name: tuple(s for s in splits if s != "train") for name, splits in SPLITS.items()}


def _module(name: str):
    if name == "alfworld":
        from atod.envs import alfworld as mod
    elif name == "webshop":
        from atod.envs import webshop as mod
    elif name == "searchqa":
        from atod.envs import searchqa as mod
    else:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return mod


def build_benchmark(name: str, prepare: PrepareConfig, seed: int | None = None) -> Benchmark:
    """Generate benchmark `name` from its `prepare.<name>` section (deterministic in the seed)."""
    mod = _module(name)
    return mod.build(getattr(prepare, name), prepare.seed if seed is None else seed)


def load_benchmark(name: str, directory: str | Path) -> Benchmark:
    """Load a benchmark written by `Benchmark.save(directory)` (the prepare stage's output)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"benchmark data for {name!r} not found at {directory}: run the prepare stage first")
    return _module(name).load(directory)


__all__ = ["BENCHMARKS", "SPLITS", "EVAL_SPLITS", "Benchmark", "Env", "StepInfo", "StepResult", "Task",
           "build_benchmark", "load_benchmark"]
