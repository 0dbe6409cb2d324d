"""BM25 product search (bm25s), WebShop's 50 results for any query.

WebShop searches a Lucene BM25 index (pyserini) and shows the top 50 products, 10 per page. We index
each product's title and description with bm25s (English stop words, bm25s' default token pattern)
and rank every product by score; ties (including queries with no known word, where every score is 0)
keep catalogue order, so a query always yields min(50, catalogue size) results, deterministically.
The index is built once per benchmark and shared by all its environments; results are cached per query.
"""

from __future__ import annotations

import re

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from atod.envs.webshop.catalogue import Product

NUM_RESULTS = 50
CACHE_SIZE = 8192  # queries kept (cleared when full)
TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenize's default token_pattern
STOPWORDS = frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """The same tokens bm25s.tokenize(text, stopwords="en") gives: lower-cased words of 2+ characters."""
    return [t for t in TOKEN_PATTERN.findall(text.lower()) if t not in STOPWORDS]


class SearchEngine:
    """Top-50 BM25 search over a fixed catalogue."""

    def __init__(self, products: list[Product]) -> None:
        if not products:
            raise ValueError("cannot build a search index over an empty catalogue")
        self.asins = [p.asin for p in products]
        corpus = [f"{p.title} {p.description}" for p in products]
        corpus_tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
        self.vocab = set(corpus_tokens.vocab)
        self.retriever = bm25s.BM25()
        self.retriever.index(corpus_tokens, show_progress=False)
        self._cache: dict[str, tuple[str, ...]] = {}

    def search(self, query: str) -> tuple[str, ...]:
        """ASINs of the best min(50, catalogue size) products for `query`, best first."""
        hit = self._cache.get(query)
        if hit is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            hit = self._cache[query] = self._rank(query)
        return hit

    def _rank(self, query: str) -> tuple[str, ...]:
        tokens = [t for t in tokenize(query) if t in self.vocab]
        if tokens:
            scores_N = np.asarray(self.retriever.get_scores(tokens), dtype=np.float64)
        else:
            scores_N = np.zeros(len(self.asins))
        order = np.argsort(-scores_N, kind="stable")[:NUM_RESULTS]
        return tuple(self.asins[i] for i in order)
