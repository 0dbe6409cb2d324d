"""Agent prompts (verl-agent style) and action extraction.

One user message per step: a one-line role, the last `history_length` (observation, action) pairs,
the current observation, the admissible actions, then the task, then the answer instruction. The task
sits near the end on purpose: a probe with tiny models trained from scratch (../shared/ENVIRONMENT.md)
found that it helps them. Prompts stay short (a few hundred words at most) for the same reason.

ALFWorld and WebShop answer in `<action> ... </action>` (optionally after `<think> ... </think>`);
Search-QA follows Search-R1: `<search> query </search>` or `<answer> text </answer>`, with retrieved
passages shown inside `<information> ... </information>` by the environment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from atod.envs.searchqa.protocol import extract_action as searchqa_extract_action

ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL)

ROLE_LINES = {
    "alfworld": "You are an expert agent in the ALFRED household environment.",
    "webshop": "You are an expert agent shopping online in the WebShop environment.",
    "searchqa": "You are an expert agent answering a question step by step with a search engine.",
}

MAX_ADMISSIBLE_SHOWN = 60  # hard cap so a page with many clickables cannot blow up the prompt
MAX_OBSERVATION_CHARS = 2000  # the current observation is cut (with a marker) beyond this
# Past observations are cut shorter, except Search-QA's retrieved passages, which the answer needs.
MAX_HISTORY_CHARS = {"alfworld": 300, "webshop": 300, "searchqa": 1000}


def _clip(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def render_prompt(
    benchmark: str,
    task_goal: str,
    history: Sequence[tuple[str, str]],
    observation: str,
    admissible: Sequence[str],
    *,
    step: int,
    history_length: int,
    think: bool,
) -> str:
    """Render the user message of one step.

    benchmark: "alfworld", "webshop" or "searchqa".
    task_goal: the task text (ALFWorld goal, WebShop instruction, Search-QA question).
    history: every past (observation, action) pair of the episode, oldest first; only the last
        `history_length` are shown. `action` is the extracted action (`NO_ACTION` where the response
        was malformed: what the rollouts pass).
    observation: the current observation text.
    admissible: admissible actions (empty where free-form, e.g. Search-QA).
    step: number of steps already taken (0 at the first prompt).
    think: ask for reasoning inside <think> </think> first (tiny models skip it).
    """
    if benchmark not in ROLE_LINES:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(ROLE_LINES)}")
    lines = [ROLE_LINES[benchmark]]
    shown = list(history)[-history_length:] if history_length > 0 else []
    if shown:
        first = step - len(shown) + 1
        lines.append(f"You have taken {step} step(s). Your last {len(shown)} step(s):")
        for k, (obs, act) in enumerate(shown):
            lines.append(f"[Step {first + k} observation] {_clip(obs, MAX_HISTORY_CHARS[benchmark])}")
            lines.append(f"[Step {first + k} action] {act}")
    lines.append(f"[Step {step + 1} observation, now] {_clip(observation)}")
    if benchmark == "searchqa":
        lines.append(f"Question: {task_goal.strip()}")
        reason = "First reason inside <think> </think>. Then either " if think else "Either "
        lines.append(
            reason + "search with <search> query </search> (results come back inside <information> "
            "</information>) or give the final answer with <answer> answer </answer>."
        )
    else:
        if admissible:
            shown_actions = list(admissible)[:MAX_ADMISSIBLE_SHOWN]
            lines.append("Admissible actions: " + " | ".join(shown_actions))
        lines.append(f"Your task is to: {task_goal.strip()}")
        reason = "First reason inside <think> </think>, then give " if think else "Give "
        lines.append(reason + "one admissible action inside <action> </action>.")
    return "\n".join(lines)


def _extract_tagged_action(response: str) -> str | None:
    """Lower-cased stripped text inside the last <action>...</action>; None when missing or empty."""
    matches = ACTION_RE.findall(response)
    if not matches:
        return None
    action = " ".join(matches[-1].split()).lower()
    return action or None


NO_ACTION = "(no valid action)"  # what the history shows for a malformed response


def extract_action(benchmark: str, response: str) -> str | None:
    """The action string the environment is stepped with, or None for a malformed response.

    ALFWorld / WebShop: the lower-cased text inside the LAST `<action>...</action>` (inner whitespace
    collapsed, ends stripped); None if there is none or it is empty.
    Search-QA: the canonical tag string of the last `<search>` / `<answer>` tag
    (`atod.envs.searchqa.protocol.extract_action`). Never raises.
    """
    if not isinstance(response, str):
        return None
    if benchmark == "searchqa":
        return searchqa_extract_action(response)
    return _extract_tagged_action(response)


def stop_strings(benchmark: str) -> tuple[str, ...]:
    """Closing tags that end a response: generation stops right after one of them."""
    return ("</search>", "</answer>") if benchmark == "searchqa" else ("</action>",)
