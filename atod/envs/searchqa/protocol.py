"""The Search-R1 text protocol: action tags, the invalid-turn feedback, the retrieval observation and
exact-match scoring (SQuAD normalisation).

These are pure string functions shared by the embedded env, the HTTP adapter and the prompt code.
Search-R1 (search_r1/llm_agent/generation.py) takes the FIRST `<search>`/`<answer>` tag of a response;
atod takes the LAST one (ARCHITECTURE.md), so a model that thinks aloud about a tag before using it is
not penalised. Everything else follows the original: the observation for a search is
`<information>Doc 1(Title: {title}) {text}\\nDoc 2(Title: ...) ...</information>` where `title` is the
first line of the passage's `contents` (quotes included, as in the Wikipedia corpus) and `text` the rest.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Literal

INVALID_FEEDBACK = (
    "My previous action is invalid. If I want to search, I should put the query between <search> and "
    "</search>. If I want to give the final answer, I should put the answer between <answer> and "
    "</answer>. Let me try again."
)

ActionKind = Literal["search", "answer"]

_TAG_RE = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)
_CANONICAL_RE = re.compile(r"<(search|answer)>(.*)</\1>", re.DOTALL)
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def extract_action(response: str) -> str | None:
    """The canonical action string of a model response: the LAST `<search>...</search>` or
    `<answer>...</answer>` in it, as `<search>query</search>` / `<answer>text</answer>` with the inner
    text stripped; None when the response holds neither (a format error)."""
    if not isinstance(response, str):
        return None
    last = None
    for last in _TAG_RE.finditer(response):
        pass
    if last is None:
        return None
    tag, content = last.group(1), last.group(2).strip()
    return f"<{tag}>{content}</{tag}>"


def parse_action(action: str | None) -> tuple[ActionKind, str] | None:
    """(kind, content) of an action given to `Env.step`: a canonical tag string, tolerant of
    surrounding whitespace or text (the last tag counts). None when there is no well-formed tag."""
    canonical = extract_action(action) if isinstance(action, str) else None
    if canonical is None:
        return None
    match = _CANONICAL_RE.fullmatch(canonical)
    assert match is not None, canonical  # extract_action only builds strings of this shape
    kind: ActionKind = "search" if match.group(1) == "search" else "answer"
    return kind, match.group(2)


def search_action(query: str) -> str:
    return f"<search>{query.strip()}</search>"


def answer_action(answer: str) -> str:
    return f"<answer>{answer.strip()}</answer>"


def split_contents(contents: str) -> tuple[str, str]:
    """(title, text) of a corpus passage `"\\"Title\\"\\ntext"`: the first line and the rest."""
    title, _, text = contents.partition("\n")
    return title, text


def format_information(contents: Sequence[str]) -> str:
    """The observation after a search, from the retrieved passages' `contents` (best first)."""
    lines = []
    for rank, passage in enumerate(contents, start=1):
        title, text = split_contents(passage)
        lines.append(f"Doc {rank}(Title: {title}) {text}")
    return "<information>" + "\n".join(lines).strip() + "</information>"


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation, drop the articles a/an/the, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golden_answers: Iterable[str]) -> bool:
    """True when the normalised prediction equals any normalised gold answer."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(gold) for gold in golden_answers)
