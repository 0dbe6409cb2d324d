"""Stages `sft_teacher` and `sft_student`: SFT warm-up on expert demonstrations of every benchmark's train
split minus its last `train.eval_tasks` tasks (the validation slice training never sees), from the
initial models of `prepare`. Two stages, so that the cheap student warm-up (and its
params, `sft_warmup.student`) can change without retraining the expensive teacher.

    sft_teacher    data/models/teacher/, metrics/sft_teacher.json (many, cleaner demonstrations)
    sft_student    data/models/student_sft/, metrics/sft_student.json (few, noisy ones)

Both read the params.yaml section `sft_warmup` (`seed` and their own `teacher` / `student` subsection),
`models`, `agent`, `prepare.benchmarks` and `train.eval_tasks`.
The teacher trains with seed `sft_warmup.seed + 0`, the student with `sft_warmup.seed + 1` (the order in
which the former single `sft_warmup` stage warmed them up, so the models are unchanged by the split).

An interrupted warm-up continues from its last checkpoint (every `checkpoint_every` steps), under
`dvc repro` or a Prefect flow alike: it trains in .atod/resume/sft_<role>/<digest>/ (untracked, outside
every DVC output, like the `train` stage's runs), where `digest` covers the code, data and resolved
config the warm-up depends on (`warmup_inputs_digest`). A finished warm-up keeps its model there
(`final/`, then `summary.json`, written last) and publishes it to the stage's output (hard links where
the file system allows); its checkpoint is removed. An execution whose output DVC did not keep (killed
after the model was saved but before `dvc.lock` was written: `dvc repro` deletes a stage's outputs before
it reruns it) publishes that model again instead of training hours over; the finished warm-ups of other
inputs are deleted then (unfinished ones stay, to be resumed if their inputs come back).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tasks.stages.common import (
    BENCH_DIR,
    INIT_DIR,
    METRICS_DIR,
    RESUME_DIR,
    SFT_DIR,
    TEACHER_DIR,
    StageRun,
    _LastMetrics,
    _load_benchmarks,
    _save_model,
    inputs_digest,
    publish_dir,
    read_json,
    write_json,
)

# role -> (seed offset from `sft_warmup.seed`, output directory)
_ROLES = {"teacher": (0, TEACHER_DIR), "student": (1, SFT_DIR)}

# The code a warm-up executes (dvc.yaml lists the same as the stages' deps).
WARMUP_CODE = ("tasks/stages/common.py", "tasks/stages/sft.py", "atod/config.py", "atod/envs", "atod/agent",
               "atod/train/sft.py", "atod/train/relabel.py", "atod/train/splits.py", "atod/train/config.py",
               "atod/train/checkpoint.py", "atod/train/complete.py")


def warmup_inputs_digest(params, root: Path, role: str) -> str:
    """md5 of everything `role`'s warm-up depends on: the code (WARMUP_CODE), the task sets and the initial
    model it reads, and the resolved config (`sft_warmup.seed`, `sft_warmup.<role>` minus checkpoint_every,
    `models`, `agent`, `prepare.benchmarks`, `train.eval_tasks`: the held-out validation slice)."""
    data = {str(BENCH_DIR / b): root / BENCH_DIR / b for b in params.prepare.benchmarks}
    data[str(INIT_DIR / role)] = root / INIT_DIR / role
    config = {"seed": params.sft_warmup.seed, "role": role,
              "run": getattr(params.sft_warmup, role).model_dump(mode="json", exclude={"checkpoint_every"}),
              "models": params.models.model_dump(mode="json"), "agent": params.agent.model_dump(mode="json"),
              "benchmarks": list(params.prepare.benchmarks), "holdout": params.train.eval_tasks}
    return inputs_digest(WARMUP_CODE, data, config)


def _warm_up(params, root: Path, run: StageRun, role: str) -> dict[str, Any]:
    """Warm up `role` ("teacher" or "student") from data/models/init/<role>/ with `sft_warmup.<role>`, in
    an MLflow child run `sft-<role>`; writes its model and metrics/sft_<role>.json and returns that summary
    ({"demo": demonstration stats, "final": last logged metrics, "steps": SFT steps})."""
    from atod.agent.models import load_model, load_tokenizer, resolve_device
    from atod.train.checkpoint import find_checkpoint
    from atod.train.sft import sft_on_benchmarks

    offset, out = _ROLES[role]
    cfg = getattr(params.sft_warmup, role)
    work = root / RESUME_DIR / f"sft_{role}" / warmup_inputs_digest(params, root, role)
    summary = read_json(work / "summary.json") if (work / "final").is_dir() else None
    if summary is not None:  # finished with the same inputs by an execution whose outputs DVC did not keep
        tqdm.write(f"sft_{role}: the warm-up finished earlier with the same inputs: its model is published again")
        with run.child(f"sft-{role}", role=role, run_state="done") as log:
            log({k: v for k, v in summary["final"].items() if isinstance(v, (int, float))}, summary["steps"])
    else:
        device = resolve_device(params.models)
        benchmarks = list(_load_benchmarks(root, params.prepare.benchmarks).values())
        init = root / INIT_DIR / role
        tokenizer = load_tokenizer(init)
        model = load_model(init, getattr(params.models, role), device=device)
        state = "resume" if find_checkpoint(work / "checkpoint") is not None else "fresh"
        with run.child(f"sft-{role}", role=role, run_state=state) as log:
            log_last = _LastMetrics(log)
            model, stats = sft_on_benchmarks(model, tokenizer, benchmarks, cfg, params.sft_warmup.seed + offset,
                                             agent_cfg=params.agent, holdout=params.train.eval_tasks, log=log_last,
                                             device=device, checkpoint_dir=work / "checkpoint")
            log({f"demo/{k}": v for k, v in stats.items()}, cfg.steps)
        shutil.rmtree(work / "final", ignore_errors=True)  # a save an earlier execution did not finish
        _save_model(model, tokenizer, work / "final")
        summary = {"demo": stats, "final": log_last.last, "steps": cfg.steps}
        write_json(work / "summary.json", summary)  # last: the warm-up is finished
        shutil.rmtree(work / "checkpoint", ignore_errors=True)  # the model is saved: nothing left to resume
    publish_dir(work / "final", root / out)
    for other in work.parent.iterdir():  # other inputs' finished warm-ups (an unfinished one may be resumed)
        if other != work and (other / "summary.json").is_file():
            shutil.rmtree(other, ignore_errors=True)
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
