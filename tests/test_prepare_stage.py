"""`prepare` with pretrained models: the tokenizers are checked before anything is generated or written."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from atod.agent.config import ModelSpec, TinyArch, TokenizerSpec
from atod.agent.models import TokenizerMismatchError, build_tiny_model
from atod.agent.tokenizer import benchmarks_tokenizer, build_tokenizer
from atod.config import resolve
from atod.envs import build_benchmark
from tasks.stages.common import BENCH_DIR, INIT_DIR, TOKENIZER_DIR
from tasks.stages.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
ARCH = TinyArch(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
TEXTS = ["go to cabinet 1", "search[red shoes]", "click[buy now]", "the answer is Valdor"] * 3


class _Run:
    def log_metrics(self, metrics, step=None):
        pass


def _pretrained(path: Path, texts: list[str], rows_short_by: int = 0) -> str:
    """A local 'pretrained' model directory: a tiny model saved with its own tokenizer."""
    tok = build_tokenizer(texts, TokenizerSpec(vocab_size=300))
    model = build_tiny_model(ModelSpec(arch=ARCH), tok, seed=0)
    if rows_short_by:
        model.resize_token_embeddings(len(tok) - rows_short_by)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _params(student: str, teacher: str):
    raw = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["models"]["tokenizer"]["source"] = "pretrained"
    raw["models"]["student"] = {"source": "pretrained", "name_or_path": student}
    raw["models"]["teacher"] = {"source": "pretrained", "name_or_path": teacher}
    return resolve(raw, profile="smoke")


def test_mismatched_tokenizers_stop_prepare_before_it_writes(tmp_path):
    student = _pretrained(tmp_path / "student", TEXTS)
    teacher = _pretrained(tmp_path / "teacher", TEXTS + ["a wholly different vocabulary of words"] * 5)
    root = tmp_path / "project"
    with pytest.raises(TokenizerMismatchError, match="vocabularies differ"):
        prepare(_params(student, teacher), root, _Run())
    assert not root.exists()  # no benchmark, tokenizer or model written


def test_shared_tokenizer_prepares_both_models(tmp_path):
    student = _pretrained(tmp_path / "student", TEXTS)
    teacher = _pretrained(tmp_path / "teacher", TEXTS)
    root = tmp_path / "project"
    summary = prepare(_params(student, teacher), root, _Run())
    vocab = build_tokenizer(TEXTS, TokenizerSpec(vocab_size=300)).get_vocab()
    assert summary["tokenizer"]["vocab_size"] == len(vocab)
    for role in ("student", "teacher"):
        assert (root / INIT_DIR / role / "model.safetensors").is_file()
    assert (root / TOKENIZER_DIR / "tokenizer.json").is_file() and (root / BENCH_DIR / "alfworld").is_dir()


def test_a_model_with_fewer_embeddings_than_tokens_is_refused(tmp_path):
    student = _pretrained(tmp_path / "student", TEXTS)
    teacher = _pretrained(tmp_path / "teacher", TEXTS, rows_short_by=7)
    n = len(build_tokenizer(TEXTS, TokenizerSpec(vocab_size=300)))
    with pytest.raises(ValueError, match=rf"models.teacher \(.*teacher\) has {n - 7} token embeddings, fewer than "
                                         rf"the tokenizer's {n} tokens"):
        prepare(_params(student, teacher), tmp_path / "project", _Run())


def test_a_teacher_from_an_earlier_embedded_run_must_share_the_embedded_tokenizer(tmp_path):
    """tokenizer.source 'embedded' with a pretrained teacher (e.g. one trained by an earlier run): its own
    tokenizer files must be the tokenizer this run builds; a tiny student is built over it."""
    raw = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    smoke = resolve(raw, profile="smoke")
    embedded = benchmarks_tokenizer([build_benchmark(n, smoke.prepare) for n in smoke.prepare.benchmarks],
                                    smoke.models.tokenizer)
    same, other = tmp_path / "same", tmp_path / "other"
    for path, tok in ((same, embedded), (other, build_tokenizer(TEXTS, TokenizerSpec(vocab_size=300)))):
        build_tiny_model(ModelSpec(arch=ARCH), tok, seed=0).save_pretrained(path)
        tok.save_pretrained(path)

    raw["models"]["teacher"] = {"source": "pretrained", "name_or_path": str(other)}
    with pytest.raises(TokenizerMismatchError, match=r"models.teacher \(.*other\) was trained with another "
                                                     r"tokenizer than the pipeline's \(the embedded one"):
        prepare(resolve(raw, profile="smoke"), tmp_path / "p1", _Run())
    assert not (tmp_path / "p1" / TOKENIZER_DIR).exists() and not (tmp_path / "p1" / INIT_DIR).exists()

    raw["models"]["teacher"]["name_or_path"] = str(same)
    summary = prepare(resolve(raw, profile="smoke"), tmp_path / "p2", _Run())
    assert summary["tokenizer"]["vocab_size"] == len(embedded)
    assert (tmp_path / "p2" / INIT_DIR / "teacher" / "model.safetensors").is_file()


def test_a_missing_pretrained_model_stops_prepare_before_it_writes(tmp_path):
    """With the embedded tokenizer (built from the generated benchmarks), a mistyped teacher path used to be
    found only after the task sets and the tokenizer were written."""
    from atod.agent.models import ModelNotFoundError

    raw = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["models"]["teacher"] = {"source": "pretrained", "name_or_path": str(tmp_path / "no-such-teacher")}
    root = tmp_path / "project"
    with pytest.raises(ModelNotFoundError, match=r"model '.*no-such-teacher' could not be loaded"):
        prepare(resolve(raw, profile="smoke"), root, _Run())
    assert not root.exists()
