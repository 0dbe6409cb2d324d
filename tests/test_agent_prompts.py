"""Prompts and action extraction on hand-written cases."""

from __future__ import annotations

import pytest

from atod.agent.prompts import NO_ACTION, extract_action, render_prompt, stop_strings


def test_alfworld_prompt_order_history_and_task_last():
    history = [("obs a", "go to desk 1"), ("obs b", "open drawer 1"), ("obs c", "look")]
    p = render_prompt("alfworld", "put a clean apple in fridge 1", history, "You see nothing.",
                      ["look", "inventory", "go to desk 1"], step=3, history_length=2, think=False)
    assert "obs a" not in p and "go to desk 1" in p  # only the last 2 pairs (desk appears in admissible)
    assert p.index("obs b") < p.index("obs c") < p.index("You see nothing.") < p.index("Admissible actions")
    assert p.index("Admissible actions") < p.index("put a clean apple in fridge 1")
    assert "look | inventory | go to desk 1" in p
    assert p.rstrip().endswith("<action> </action>.")
    assert "<think>" not in p
    assert len(p.split()) < 300


def test_history_length_zero_and_think():
    p = render_prompt("webshop", "i want red shoes", [("o1", "search[red shoes]")], "page", ["click[buy now]"],
                      step=1, history_length=0, think=True)
    assert "o1" not in p and "search[red shoes]" not in p
    assert "<think> </think>" in p and "<action> </action>" in p


def test_searchqa_prompt_uses_search_r1_tags():
    p = render_prompt("searchqa", "who founded the city of Valdor?", [("who founded...", "<search>valdor</search>")],
                      "<information>Doc 1(Title: \"Valdor\") text</information>", [], step=1, history_length=2,
                      think=False)
    for tag in ("<search>", "</search>", "<answer>", "</answer>", "<information>"):
        assert tag in p
    assert "<action>" not in p and "<think>" not in p
    assert p.index("<information>Doc 1") < p.index("Question: who founded")


def test_unknown_benchmark_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        render_prompt("nope", "g", [], "o", [], step=0, history_length=1, think=False)


@pytest.mark.parametrize("response, expected", [
    ("<action>go to cabinet 1</action>", "go to cabinet 1"),
    ("<think>hmm <action>x</action></think> <action> Take Apple 1 From Cabinet 1 </action>", "take apple 1 from cabinet 1"),
    ("<action>search[Red  Shoes]</action>", "search[red shoes]"),
    ("<action>click[< prev]</action>", "click[< prev]"),
    ("go to cabinet 1", None),
    ("<action>go to cabinet 1", None),
    ("<action>   </action>", None),
    ("", None),
    ("</action><action>", None),
])
def test_extract_action_alfworld_webshop(response, expected):
    assert extract_action("alfworld", response) == expected
    assert extract_action("webshop", response) == expected


@pytest.mark.parametrize("response, expected", [
    ("<think>x</think><search> capital of valdor </search>", "<search>capital of valdor</search>"),
    ("<search>a</search> then <answer> Paris </answer>", "<answer>Paris</answer>"),
    ("<answer>Paris", None),
    ("<action>paris</action>", None),
])
def test_extract_action_searchqa(response, expected):
    assert extract_action("searchqa", response) == expected


def test_extract_action_never_raises():
    for junk in [None, 3, b"<action>x</action>", "<" * 1000, "\x00<action>\x00</action>"]:
        extract_action("alfworld", junk)  # type: ignore[arg-type]
        extract_action("searchqa", junk)  # type: ignore[arg-type]
    assert extract_action("alfworld", None) is None  # type: ignore[arg-type]


def test_stop_strings_and_no_action_marker():
    assert stop_strings("alfworld") == ("</action>",)
    assert set(stop_strings("searchqa")) == {"</search>", "</answer>"}
    assert extract_action("alfworld", NO_ACTION) is None
