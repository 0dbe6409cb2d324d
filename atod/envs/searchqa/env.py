"""The Search-QA environment (Search-R1 protocol) and its scripted expert.

One episode = one question. The initial observation is the question itself (the prompt renderer wraps
it in the Search-R1 instruction). Each step takes the canonical action string:
- `<search>query</search>` -> top-k passages as `<information>Doc 1(Title: ...) ...</information>`;
- `<answer>text</answer>`  -> the episode ends, reward = exact match (SQuAD normalisation) against any
  gold answer; the observation is empty, as in Search-R1;
- None or anything without such a tag -> the invalid-turn feedback, `format_error=True`, `invalid=True`.
The episode also ends, with reward 0, once `max_turns` steps were taken without an answer (the
observation of that last step is still returned). Actions are free-form: `admissible_actions` is empty.
An empty search query is answered with the invalid-turn feedback (`invalid=True`, not a format error).
`step` never raises on any action; it only raises when the retriever itself fails (an unreachable HTTP
server: `remote.RetrieverUnavailableError`), which is an infrastructure error, not a model error.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from atod.envs.base import StepInfo, StepResult, Task
from atod.envs.searchqa.protocol import (
    INVALID_FEEDBACK,
    answer_action,
    exact_match,
    format_information,
    parse_action,
    search_action,
)
from atod.envs.searchqa.retrieval import Retriever

BENCHMARK = "searchqa"


class SearchQAEnv:
    """A Search-QA episode runner over any `Retriever` (in-process BM25 or an HTTP server).

    `distractors` are strings the noisy expert uses for wrong queries and wrong answers (entity names,
    years); with none, it falls back to words of the question.
    """

    benchmark = BENCHMARK

    def __init__(
        self, retriever: Retriever, *, max_turns: int = 4, topk: int = 3, distractors: Sequence[str] = ()
    ) -> None:
        self.retriever = retriever
        self.max_turns = max_turns
        self.topk = topk
        self.distractors = tuple(distractors)
        self._task: Task | None = None
        self._golden: tuple[str, ...] = ()
        self._turn = 0
        self._done = False
        self._final: StepResult | None = None
        self._retrieved_ids: set[str] = set()
        self._queries: list[str] = []

    # --- protocol ----------------------------------------------------------------------------------

    def reset(self, task: Task) -> StepResult:
        golden = task.payload.get("golden_answers")
        if not golden:
            raise ValueError(f"Search-QA task {task.task_id!r} has no payload['golden_answers']")
        self._task = task
        self._golden = tuple(str(g) for g in golden)
        self._turn = 0
        self._done = False
        self._final = None
        self._retrieved_ids = set()
        self._queries = []
        return StepResult(task.goal, (), 0.0, False, StepInfo(turn=0))

    def step(self, action: str | None) -> StepResult:
        if self._task is None:
            raise RuntimeError("SearchQAEnv.step() called before reset(task)")
        if self._done:
            assert self._final is not None
            return StepResult(self._final.observation, (), 0.0, True, self._final.info)
        self._turn += 1
        parsed = parse_action(action) if isinstance(action, str) else None
        reward, won, invalid, format_error = 0.0, False, False, parsed is None
        if parsed is None:
            observation, invalid = INVALID_FEEDBACK, True
        elif parsed[0] == "answer":
            won = exact_match(parsed[1], self._golden)
            reward = float(won)
            observation = ""
            self._done = True
        elif not parsed[1].strip():
            observation, invalid = INVALID_FEEDBACK, True
        else:
            query = parsed[1]
            self._queries.append(query)
            hits = self.retriever.batch_search([query], self.topk)[0]
            self._retrieved_ids.update(h.id for h in hits)
            observation = format_information([h.contents for h in hits])
        if self._turn >= self.max_turns:
            self._done = True
        info = StepInfo(
            won=won, score=float(won), invalid=invalid, format_error=format_error, turn=self._turn
        )
        result = StepResult(observation, (), reward, self._done, info)
        if self._done:
            self._final = result
        return result

    # --- scripted expert ---------------------------------------------------------------------------

    def expert_action(self, rng: random.Random, noise: float = 0.0) -> str:
        """Search each hop entity in order (by name), then answer.

        Privileged: it knows the hops (the entities to look up and the passages that hold the facts)
        and the gold answer, but it searches every hop before answering, so its traces look like a real
        agent's: one search per hop, then the answer read from the passages. If a name search missed the
        hop's evidence passage, it searches again with the name plus the question; on the last turn it
        answers whatever it has. With probability `noise` the step is a mistake instead: a search for a wrong
        entity (70%) or a wrong answer (30%). Tasks without hops (e.g. loaded from FlashRAG files)
        get one search with the question, then the gold answer.
        """
        if self._task is None:
            raise RuntimeError("SearchQAEnv.expert_action() called before reset(task)")
        if noise > 0.0 and rng.random() < noise:
            return self._noisy_action(rng)
        last_turn = self._turn + 1 >= self.max_turns
        hops = self._task.payload.get("hops") or []
        if not hops:
            if self._queries or last_turn:
                return answer_action(self._golden[0])
            return search_action(self._task.goal)
        for entity, evidence_id in hops:
            if last_turn:
                break
            if entity not in self._queries:
                return search_action(entity)
            refined = f"{entity} {self._task.goal}"
            if evidence_id not in self._retrieved_ids and refined not in self._queries:
                return search_action(refined)
        return answer_action(self._golden[0])

    def _noisy_action(self, rng: random.Random) -> str:
        words = [w.strip("?,.") for w in self._task.goal.split() if w.strip("?,.")] or ["unknown"]
        pool = self.distractors or tuple(words)
        wrong = rng.choice(pool)
        for _ in range(8):  # a mistake must be wrong: redraw a distractor that happens to be a gold answer
            if not exact_match(wrong, self._golden):
                break
            wrong = rng.choice(pool)
        return search_action(wrong) if rng.random() < 0.7 else answer_action(wrong)
