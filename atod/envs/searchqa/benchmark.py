"""The embedded Search-QA benchmark: a generated knowledge base, its corpus, three question splits and
an env factory sharing one BM25 index.

Files written by `save(directory)` (and read by `load`):
    meta.json                      name, seed, config, max_turns, topk, splits
    kb.json                        the knowledge base's facts (countries, cities, organisations, people)
    corpus.jsonl                   the passages, `{"id", "contents"}` (servable by serve_retriever)
    train.jsonl, test_in_domain.jsonl, test_out_of_domain.jsonl   one Task (JSON) a line
"""

from __future__ import annotations

import json
import random
from functools import cached_property
from pathlib import Path

from atod.envs.base import Task
from atod.envs.searchqa.config import SearchQAConfig
from atod.envs.searchqa.env import BENCHMARK, SearchQAEnv
from atod.envs.searchqa.kb import ORGANISATION_KINDS, KnowledgeBase, Passage, generate_kb
from atod.envs.searchqa.protocol import INVALID_FEEDBACK
from atod.envs.searchqa.questions import TEMPLATES, check_out_of_domain_templates, sample_questions
from atod.envs.searchqa.retrieval import BM25Index, read_corpus_jsonl

SPLITS = ("train", "test_in_domain", "test_out_of_domain")
_CORPUS_EPISODES_PER_SPLIT = 5


class SearchQABenchmark:
    """Tasks per split over one knowledge base; `make_env()` envs share the BM25 index (built on
    first use)."""

    name = BENCHMARK
    splits = SPLITS

    def __init__(
        self,
        kb: KnowledgeBase,
        tasks: dict[str, list[Task]],
        *,
        max_turns: int,
        topk: int,
        seed: int,
        config: SearchQAConfig,
    ) -> None:
        missing = [s for s in SPLITS if s not in tasks]
        if missing:
            raise ValueError(f"Search-QA benchmark lacks splits {missing}")
        self.kb = kb
        self._tasks = tasks
        self.max_turns = max_turns
        self.topk = topk
        self.seed = seed
        self.config = config

    def tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            raise KeyError(f"unknown Search-QA split {split!r}; splits: {', '.join(SPLITS)}")
        return list(self._tasks[split])

    @cached_property
    def index(self) -> BM25Index:
        return BM25Index([p.to_json() for p in self.kb.passages])

    @cached_property
    def distractors(self) -> tuple[str, ...]:
        """Plausible wrong answers and queries for the noisy expert: names, years, occupations, yes/no."""
        values: list[str] = [e.name for e in self.kb.entities()]
        values += sorted(
            {str(p.born) for p in self.kb.people} | {str(o.founded) for o in self.kb.organisations}
        )
        values += sorted({p.occupation for p in self.kb.people}) + ["yes", "no"]
        return tuple(values)

    def make_env(self) -> SearchQAEnv:
        return SearchQAEnv(self.index, max_turns=self.max_turns, topk=self.topk, distractors=self.distractors)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "seed": self.seed,
            "config": self.config.model_dump(mode="json"),
            "max_turns": self.max_turns,
            "topk": self.topk,
            "splits": list(SPLITS),
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (directory / "kb.json").write_text(json.dumps(self.kb.to_json()) + "\n", encoding="utf-8")
        _write_jsonl(directory / "corpus.jsonl", [p.to_json() for p in self.kb.passages])
        for split in SPLITS:
            _write_jsonl(directory / f"{split}.jsonl", [t.to_json() for t in self._tasks[split]])

    def copy_terms(self) -> list[str]:
        """Every generated name word (countries, cities, people's first and last names, the first word
        of organisations), as written in passages and questions."""
        words = {w for e in self.kb.entities() for w in e.name.split()}
        return sorted(words - set(ORGANISATION_KINDS))

    def corpus_texts(self) -> list[str]:
        """Every passage and question (so every entity name is in the vocabulary), the feedback text,
        and the observations and actions of a few expert episodes per split."""
        texts = [p.contents for p in self.kb.passages] + [INVALID_FEEDBACK]
        env = self.make_env()
        rng = random.Random(self.seed)
        for split in SPLITS:
            tasks = self._tasks[split]
            texts += [t.goal for t in tasks]
            for task in tasks[:_CORPUS_EPISODES_PER_SPLIT]:
                result = env.reset(task)
                while not result.done:
                    action = env.expert_action(rng)
                    result = env.step(action)
                    texts += [action, result.observation]
        return [t for t in texts if t]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"Search-QA benchmark file missing: {path}")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build(config: SearchQAConfig, seed: int) -> SearchQABenchmark:
    """Generate the knowledge base and the three splits (deterministic in `config` and `seed`)."""
    check_out_of_domain_templates(config.out_of_domain_templates)
    rng = random.Random(seed)
    kb = generate_kb(config.num_entities, random.Random(rng.random()))
    held_out = list(config.out_of_domain_templates)
    in_domain = [name for name in TEMPLATES if name not in held_out]
    question_rng = random.Random(rng.random())
    drawn = sample_questions(
        kb,
        in_domain,
        {"train": config.train_tasks, "test_in_domain": config.test_in_domain_tasks},
        config.one_hop_fraction,
        question_rng,
    )
    drawn |= sample_questions(
        kb,
        held_out,
        {"test_out_of_domain": config.test_out_of_domain_tasks},
        config.one_hop_fraction,
        question_rng,
    )
    tasks = {
        split: [
            Task(BENCHMARK, split, f"searchqa-{split}-{i:05d}", q.question, q.to_payload())
            for i, q in enumerate(drawn[split])
        ]
        for split in SPLITS
    }
    return SearchQABenchmark(
        kb, tasks, max_turns=config.max_turns, topk=config.topk, seed=seed, config=config
    )


def load(directory: Path) -> SearchQABenchmark:
    """Read a benchmark written by `SearchQABenchmark.save(directory)`."""
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    if meta.get("name") != BENCHMARK:
        raise ValueError(f"{directory}/meta.json is not a Search-QA benchmark (name={meta.get('name')!r})")
    passages = [Passage(p["id"], p["contents"]) for p in read_corpus_jsonl(directory / "corpus.jsonl")]
    kb = KnowledgeBase.from_json(json.loads((directory / "kb.json").read_text(encoding="utf-8")), passages)
    tasks = {
        split: [Task.from_json(obj) for obj in _read_jsonl(directory / f"{split}.jsonl")] for split in SPLITS
    }
    return SearchQABenchmark(
        kb,
        tasks,
        max_turns=int(meta["max_turns"]),
        topk=int(meta["topk"]),
        seed=int(meta["seed"]),
        config=SearchQAConfig(**meta["config"]),
    )
