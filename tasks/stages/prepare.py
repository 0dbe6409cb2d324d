"""Stage `prepare`: every benchmark's task sets, the tokenizer and the initial student and teacher.

    data/benchmarks/<bench>/, data/tokenizer/, data/models/init/{student,teacher}/, metrics/prepare.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tasks.stages.common import (
    BENCH_DIR,
    INIT_DIR,
    METRICS_DIR,
    TOKENIZER_DIR,
    StageRun,
    _save_model,
    fresh_dir,
    write_json,
)


def _count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_pretrained_tokenizers(models, tokenizer) -> None:
    """Every pretrained model must have been trained with the pipeline's tokenizer (teacher scoring reads
    the student's token ids): its own tokenizer files must match it (`check_compatible`)."""
    from atod.agent.models import TokenizerMismatchError, check_compatible, load_tokenizer

    for role in ("student", "teacher"):
        spec = getattr(models, role)
        if spec.source != "pretrained" or (role == "student" and models.tokenizer.source == "pretrained"):
            continue  # a tiny model is built over the pipeline's tokenizer; a pretrained one gave it
        try:
            check_compatible(tokenizer, load_tokenizer(spec.name_or_path))
        except TokenizerMismatchError as e:
            source = ("models.student's" if models.tokenizer.source == "pretrained"
                      else "the embedded one, models.tokenizer.source")
            raise TokenizerMismatchError(f"models.{role} ({spec.name_or_path}) was trained with another tokenizer "
                                         f"than the pipeline's ({source}): {e}") from None


def prepare(params, root: Path, run: StageRun) -> dict[str, Any]:
    """Generate every benchmark's task sets, build the tokenizer and the initial student/teacher."""
    from atod.agent.models import build_tiny_model, check_model_available, load_model, load_tokenizer
    from atod.agent.tokenizer import benchmarks_tokenizer
    from atod.envs import build_benchmark

    models = params.models
    for role in ("student", "teacher"):  # a missing or mistyped model stops here, before anything is written
        if getattr(models, role).source == "pretrained":
            check_model_available(getattr(models, role).name_or_path)
    tokenizer = None
    if models.tokenizer.source == "pretrained":  # the student's own, checked before anything is written
        tokenizer = load_tokenizer(models.student.name_or_path)
        _check_pretrained_tokenizers(models, tokenizer)

    summary: dict[str, Any] = {"benchmarks": {}}
    benchmarks = []
    for name in tqdm(params.prepare.benchmarks, desc="prepare: benchmarks"):
        bench = build_benchmark(name, params.prepare)
        bench.save(fresh_dir(root / BENCH_DIR / name))
        summary["benchmarks"][name] = {split: len(bench.tasks(split)) for split in bench.splits}
        benchmarks.append(bench)
        run.log_metrics({f"tasks/{name}/{split}": n for split, n in summary["benchmarks"][name].items()})

    if tokenizer is None:
        tokenizer = benchmarks_tokenizer(benchmarks, models.tokenizer)
        _check_pretrained_tokenizers(models, tokenizer)  # e.g. a teacher trained in an earlier embedded run
    tokenizer.save_pretrained(fresh_dir(root / TOKENIZER_DIR))
    summary["tokenizer"] = {"vocab_size": len(tokenizer)}

    for offset, role in enumerate(("student", "teacher")):
        model_spec = getattr(models, role)
        if model_spec.source == "tiny":
            model = build_tiny_model(model_spec, tokenizer, seed=params.prepare.seed + offset)
        else:
            model = load_model(model_spec.name_or_path, model_spec)
            rows = model.get_input_embeddings().num_embeddings
            if rows < len(tokenizer):
                raise ValueError(f"models.{role} ({model_spec.name_or_path}) has {rows} token embeddings, fewer "
                                 f"than the tokenizer's {len(tokenizer)} tokens")
        _save_model(model, tokenizer, root / INIT_DIR / role)
        summary[role] = {"parameters": _count_parameters(model)}
    run.log_metrics({"tokenizer/vocab_size": summary["tokenizer"]["vocab_size"],
                     "student/parameters": summary["student"]["parameters"],
                     "teacher/parameters": summary["teacher"]["parameters"]})
    write_json(root / METRICS_DIR / "prepare.json", summary)
    return summary
