"""Stage `cache_teacher`: the warmed-up teacher's rollouts on training tasks (the cache) and the SeqKD
student fine-tuned on them (on its won episodes only with `cache_teacher.seqkd_successful_only`, the
default; all episodes if it won none).

    data/teacher_cache/, data/models/student_seqkd/, metrics/cache_teacher.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tasks.stages.common import (
    CACHE_DIR,
    METRICS_DIR,
    SEQKD_DIR,
    SFT_DIR,
    TEACHER_DIR,
    StageRun,
    _LastMetrics,
    _load_benchmarks,
    _save_model,
    fresh_dir,
    write_json,
)


def cache_teacher(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Roll the warmed-up teacher out on training tasks (the cache, one directory per benchmark) and
    fine-tune the SeqKD student (from the SFT student) on the teacher's successful trajectories."""
    from atod.agent.models import load_model, load_tokenizer, resolve_device
    from atod.train.sft import train_sft
    from atod.train.teacher_cache import cache_teacher_trajectories, load_teacher_cache

    device = resolve_device(params.models)
    benchmarks = _load_benchmarks(root, params.prepare.benchmarks)
    cfg = params.cache_teacher
    teacher_tok = load_tokenizer(root / TEACHER_DIR)
    teacher = load_model(root / TEACHER_DIR, params.models.teacher, device=device)
    fresh_dir(root / CACHE_DIR)
    summary: dict[str, Any] = {"cache": {}}
    examples = []
    for name, bench in tqdm(benchmarks.items(), desc="cache_teacher: benchmarks"):
        manifest = cache_teacher_trajectories(teacher, teacher_tok, bench, cfg=cfg, agent_cfg=params.agent,
                                              out_dir=root / CACHE_DIR / name, device=device,
                                              holdout=params.train.eval_tasks)
        summary["cache"][name] = {k: manifest[k] for k in ("success_rate", "mean_reward", "mean_turns",
                                                            "num_episodes", "generated_tokens")}
        run.log_metrics({f"teacher_train/{name}/{k}": v for k, v in summary["cache"][name].items()})
        examples += load_teacher_cache(root / CACHE_DIR / name).sft_examples(successful_only=cfg.seqkd_successful_only)
    del teacher

    tokenizer = load_tokenizer(root / SFT_DIR)
    student = load_model(root / SFT_DIR, params.models.student, device=device)
    with run.child("seqkd", method="seqkd") as log:
        log_last = _LastMetrics(log)
        student = train_sft(student, tokenizer, examples, cfg.seqkd, cfg.seed, agent_cfg=params.agent,
                            log=log_last, device=device)
    _save_model(student, tokenizer, root / SEQKD_DIR)
    summary["seqkd"] = {"examples": len(examples), "final": log_last.last, "steps": cfg.seqkd.steps}
    write_json(root / METRICS_DIR / "cache_teacher.json", summary)
    return summary
