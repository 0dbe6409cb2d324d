"""Relabelled demonstrations: each expert episode gets its own names, so facts cannot be memorised.

A model warmed up from scratch on Search-QA demonstrations can answer "In which year was Wowex Gibram
born?" two ways: read the year out of the retrieved passage, or remember Wowex Gibram's year from the
other demonstrations that showed it. The second is learnt first and does not carry over to questions
about entities it has not been trained on (`benchmarks/diagnose_answers.py`). Relabelling removes it: every
demonstration episode renames the benchmark's copy terms (`Benchmark.copy_terms`: Search-QA's name
words, WebShop's product ids) by a random one-to-one map, the same map in every prompt and response of
the episode, and renumbers Search-QA's years by a random order-preserving map. Inside an episode the
facts stay consistent (the passage that says "born 1917" and the answer "1917" become the same new
year; a search for a renamed city finds the renamed passages), and every relation the answer depends on
survives (one-to-one keeps "same birthplace?" answers, order-preserving keeps "who was born first?"
answers); across episodes the same name has different facts, so only reading works.

Demonstrations only (`sft_warmup.<role>.relabel_terms`, off by default): the environments, the checks
and every evaluation play the real tasks. Measured (README, "Relabelled demonstrations"): on Search-QA at
6,000 steps it taught less than plain demonstrations (the model learnt to copy nothing, not even the
question's entity); what taught reading was more steps. With `kinds`, names move within their kind:
`benchmarks/diagnose_answers.py --relabel` uses that to tell a read answer from a remembered one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

# Benchmarks whose 3-4 digit numbers are years whose order, not value, answers questions, and the
# range new years are drawn from (Search-QA's knowledge base: cities 900-1700, people 1700-1980,
# organisations up to about 2040).
YEARS = {"searchqa": (900, 2040)}
_YEAR = re.compile(r"\b\d{3,4}\b")


@lru_cache(maxsize=8)
def _term_index(terms: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str], tuple[str, ...], dict[str, str]]:
    """(a whole-word pattern matching any term, longest first; term -> its case-folded group key;
    the group keys, sorted; key -> its mixed-case spelling, e.g. a Search-QA name, else the key).
    WebShop's ids come in two cases, one group."""
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)) + r")\b")
    group = {t: t.lower() for t in terms}
    forms = {group[t]: t for t in terms if not (t.isupper() or t.islower())}
    keys = tuple(sorted(set(group.values())))
    return pattern, group, keys, {k: forms.get(k, k) for k in keys}


def _spelled(key: str, like: str, forms: dict[str, str]) -> str:
    """Group `key` written in the case of the occurrence `like` (all upper, all lower, or as listed)."""
    if like.isupper():
        return key.upper()
    if like.islower():
        return key
    return forms[key]


def relabel_episode(texts: Sequence[str], terms: Sequence[str], rng: random.Random,
                    years: tuple[int, int] | None = None, kinds: Mapping[str, str] | None = None) -> list[str]:
    """`texts` (one episode's prompts and responses) with every copy term replaced through one random
    one-to-one map onto `terms` (whole words; case kept: `B07X` and `b07x` move together) and, when
    `years` = (low, high) is given, every 3-4 digit number replaced through one random increasing map
    onto distinct years in [low, high]. `kinds` (term -> kind, e.g. a country's name -> "country"): each
    term moves to a term of its own kind (terms without one form one kind). Deterministic in `rng`'s state."""
    out = list(texts)
    if terms:
        pattern, group, keys, forms = _term_index(tuple(sorted(set(terms))))
        present = sorted({group[m] for text in out for m in pattern.findall(text)})
        kind_of = {group[t]: (kinds or {}).get(t, "") for t in sorted(group)}
        target: dict[str, str] = {}
        for kind in sorted({kind_of[k] for k in present}):
            sources = [k for k in present if kind_of[k] == kind]
            target |= zip(sources, rng.sample([k for k in keys if kind_of[k] == kind], len(sources)), strict=True)
        out = [pattern.sub(lambda m: _spelled(target[group[m.group(0)]], m.group(0), forms), t) for t in out]
    if years is not None:
        low, high = years
        found = sorted({int(m) for text in out for m in _YEAR.findall(text)})
        new = sorted(rng.sample(range(low, high + 1), len(found)))
        renumber = {str(a): str(b) for a, b in zip(found, new, strict=True)}
        out = [_YEAR.sub(lambda m: renumber[m.group(0)], t) for t in out]
    return out
