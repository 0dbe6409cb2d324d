"""Passage retrieval: BM25 over a corpus of `{"id", "contents"}` passages (the `bm25s` library), and
the `Retriever` interface that the env uses (in-process BM25 here, HTTP in `remote.py`).

The index is built once per corpus and shared by every env of a benchmark; results are cached per
(query, topk), which is exact because retrieval is deterministic. Ties in score are broken by corpus
order, so the in-process index and the HTTP server (the same class) return identical passages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import bm25s
import numpy as np

_STOPWORDS = "en"
_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class Hit:
    """One retrieved passage, as Search-R1's retrieval server returns it (`{"document", "score"}`)."""

    id: str
    contents: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"document": {"id": self.id, "contents": self.contents}, "score": self.score}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Hit:
        document = obj["document"]
        return cls(str(document["id"]), str(document["contents"]), float(obj.get("score", 0.0)))


class Retriever(Protocol):
    """Top-k passage search, one result list per query (best first)."""

    def batch_search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]: ...


def read_corpus_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Passages `{"id", "contents"}` of a FlashRAG/Search-R1 corpus file (one JSON object a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    passages = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                passages.append({"id": str(obj["id"]), "contents": str(obj["contents"])})
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f'{path}:{line_no}: not a corpus line {{"id", "contents"}}: {e}') from e
    if not passages:
        raise ValueError(f"corpus file {path} holds no passages")
    return passages


class BM25Index:
    """BM25 (Lucene variant, k1=1.5, b=0.75, English stopwords, no stemming) over passage contents
    (title line included, as in Search-R1's BM25 index)."""

    def __init__(self, passages: Sequence[dict[str, str]]) -> None:
        if not passages:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        self.ids = [str(p["id"]) for p in passages]
        self.contents = [str(p["contents"]) for p in passages]
        corpus_tokens = bm25s.tokenize(
            self.contents, stopwords=_STOPWORDS, return_ids=False, show_progress=False
        )
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus_tokens, show_progress=False)
        self._cache: dict[tuple[str, int], list[Hit]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, topk: int) -> list[Hit]:
        """The `topk` best passages for `query` that share a word with it (fewer, possibly none, when
        fewer match: like Search-R1's pyserini BM25 retriever)."""
        key = (query, topk)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        tokens = bm25s.tokenize(query, stopwords=_STOPWORDS, return_ids=False, show_progress=False)[0]
        tokens = [t for t in tokens if t in self._bm25.vocab_dict and t]
        hits = []
        if tokens:
            scores_D = self._bm25.get_scores(tokens)  # (num_passages,)
            best_K = np.argsort(-scores_D, kind="stable")[:topk]
            hits = [Hit(self.ids[i], self.contents[i], float(scores_D[i])) for i in best_K if scores_D[i] > 0]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = hits
        return hits

    def batch_search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        return [self.search(q, topk) for q in queries]

    def clear_cache(self) -> None:
        self._cache.clear()
