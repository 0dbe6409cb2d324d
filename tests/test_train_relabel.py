"""Relabelled demonstrations (atod.train.relabel): one-to-one names, order-preserving years, facts kept."""

import random
import re
from pathlib import Path

from atod.train.relabel import relabel_episode

ROOT = Path(__file__).resolve().parents[1]
TERMS = ["Karboth", "Valdor", "Tolmek", "Zephrin", "Quorra", "Ulmet"]


def test_names_move_one_to_one_and_consistently():
    texts = ['Doc 1(Title: "Karboth") Karboth was born in Valdor. Valdorian tea.', "<search>Valdor</search>",
             "Tolmek met Karboth.", "<answer>Tolmek</answer>"]
    out = relabel_episode(texts, TERMS, random.Random(3))
    # Read the map off the output: the same source word gives the same target everywhere.
    karboth, valdor, tolmek = out[0].split('"')[1], out[1][8:-9], out[3][8:-9]
    assert len({karboth, valdor, tolmek}) == 3 and {karboth, valdor, tolmek} <= set(TERMS)
    assert out[0] == f'Doc 1(Title: "{karboth}") {karboth} was born in {valdor}. Valdorian tea.'  # whole words only
    assert out[2] == f"{tolmek} met {karboth}."
    assert relabel_episode(texts, TERMS, random.Random(3)) == out  # deterministic in the rng
    assert any(relabel_episode(texts, TERMS, random.Random(s)) != out for s in range(4, 10))  # not a fixed map
    assert relabel_episode(texts, [], random.Random(3)) == texts  # no terms, no years: unchanged


def test_kinds_keep_each_name_within_its_kind():
    kinds = {"Karboth": "person", "Tolmek": "person", "Zephrin": "person", "Valdor": "city", "Quorra": "city",
             "Ulmet": "city"}
    for seed in range(20):
        person, city = relabel_episode(["Karboth", "Valdor"], TERMS, random.Random(seed), kinds=kinds)
        assert kinds[person] == "person" and kinds[city] == "city"


def test_upper_and_lower_case_ids_move_together():
    ids = ["B07ABC", "b07abc", "B09XYZ", "b09xyz", "B01QQQ", "b01qqq"]
    out = relabel_episode(["[SEP] B07ABC [SEP] Red Shoes | click[b07abc]"], ids, random.Random(0))[0]
    upper, lower = re.search(r"\[SEP\] (\w+) \[SEP\]", out).group(1), re.search(r"click\[(\w+)\]", out).group(1)
    assert upper == lower.upper() and lower in ids


def test_years_are_renumbered_in_order_within_the_range():
    texts = ["A (born 1917) founded it in 1950.", "B (born 1850) was born in 1850.", "<answer>1917</answer>", "Doc 1"]
    for seed in range(20):
        out = relabel_episode(texts, [], random.Random(seed), years=(900, 2040))
        born_a, founded, born_b = (int(y) for y in re.findall(r"\d{3,4}", out[0] + out[1])[:3])
        assert born_b < born_a < founded and all(900 <= y <= 2040 for y in (born_a, founded, born_b))
        assert out[1].count(str(born_b)) == 2 and out[2] == f"<answer>{born_a}</answer>" and out[3] == "Doc 1"


def test_relabelled_searchqa_demonstrations_keep_their_facts():
    """Same episodes as without relabelling; an answer that was in its prompt is in the relabelled prompt."""
    from atod.agent.config import AgentConfig
    from atod.config import load_params
    from atod.envs import build_benchmark
    from atod.train.sft import expert_demonstrations

    bench = build_benchmark("searchqa", load_params(ROOT / "params.yaml", profile="smoke").prepare)
    plain, _ = expert_demonstrations(bench, n_episodes=30, noise=0.0, seed=0, agent_cfg=AgentConfig())
    relab, _ = expert_demonstrations(bench, n_episodes=30, noise=0.0, seed=0, agent_cfg=AgentConfig(), relabel=True)
    assert [e.task_id for e in relab] == [e.task_id for e in plain]
    assert sum(a.prompt != b.prompt for a, b in zip(plain, relab, strict=True)) > len(plain) // 2
    checked = 0
    for a, b in zip(plain, relab, strict=True):
        answer = re.fullmatch(r"<answer>(.*)</answer>", a.response)
        if answer and answer.group(1) in a.prompt.split("[Step")[-1]:
            new = re.fullmatch(r"<answer>(.*)</answer>", b.response).group(1)
            assert new in b.prompt.split("[Step")[-1]
            checked += 1
    assert checked >= 10
