"""Stages `sft_teacher` and `sft_student`: SFT warm-up on expert demonstrations of every benchmark's train
split, from the initial models of `prepare`. Two stages, so that the cheap student warm-up (and its
params, `sft_warmup.student`) can change without retraining the expensive teacher.

    sft_teacher    data/models/teacher/, metrics/sft_teacher.json (many, cleaner demonstrations)
    sft_student    data/models/student_sft/, metrics/sft_student.json (few, noisy ones)

Both read the params.yaml section `sft_warmup` (`seed` and their own `teacher` / `student` subsection).
The teacher trains with seed `sft_warmup.seed + 0`, the student with `sft_warmup.seed + 1` (the order in
which the former single `sft_warmup` stage warmed them up, so the models are unchanged by the split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.stages.common import (
    INIT_DIR,
    METRICS_DIR,
    SFT_DIR,
    TEACHER_DIR,
    StageRun,
    _LastMetrics,
    _load_benchmarks,
    _save_model,
    write_json,
)

# role -> (seed offset from `sft_warmup.seed`, output directory)
_ROLES = {"teacher": (0, TEACHER_DIR), "student": (1, SFT_DIR)}


def _warm_up(params, root: Path, run: StageRun, role: str) -> dict[str, Any]:
    """Warm up `role` ("teacher" or "student") from data/models/init/<role>/ with `sft_warmup.<role>`, in
    an MLflow child run `sft-<role>`; writes its model and metrics/sft_<role>.json and returns that summary
    ({"demo": demonstration stats, "final": last logged metrics, "steps": SFT steps})."""
    from atod.agent.models import load_model, load_tokenizer, resolve_device
    from atod.train.sft import sft_on_benchmarks

    offset, out = _ROLES[role]
    device = resolve_device(params.models)
    benchmarks = list(_load_benchmarks(root, params.prepare.benchmarks).values())
    cfg = getattr(params.sft_warmup, role)
    init = root / INIT_DIR / role
    tokenizer = load_tokenizer(init)
    model = load_model(init, getattr(params.models, role), device=device)
    with run.child(f"sft-{role}", role=role) as log:
        log_last = _LastMetrics(log)
        model, stats = sft_on_benchmarks(model, tokenizer, benchmarks, cfg, params.sft_warmup.seed + offset,
                                         agent_cfg=params.agent, holdout=params.train.eval_tasks, log=log_last,
                                         device=device)
        log({f"demo/{k}": v for k, v in stats.items()}, cfg.steps)
    _save_model(model, tokenizer, root / out)
    summary = {"demo": stats, "final": log_last.last, "steps": cfg.steps}
    write_json(root / METRICS_DIR / f"sft_{role}.json", summary)
    return summary


def sft_teacher(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Warm up the teacher (many, cleaner demonstrations) with SFT on expert demonstrations of every
    benchmark's train split."""
    return _warm_up(params, root, run, "teacher")


def sft_student(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Warm up the student (few, noisy demonstrations) with SFT on expert demonstrations of every
    benchmark's train split."""
    return _warm_up(params, root, run, "student")
