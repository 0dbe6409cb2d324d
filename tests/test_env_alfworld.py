"""The generated ALFWorld benchmark: determinism, splits, texts, rules, expert, save/load, robustness."""

from __future__ import annotations

import json
import random
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atod.config import load_params
from atod.envs import build_benchmark, load_benchmark
from atod.envs.alfworld import AlfworldConfig, AlfworldEnv, build, load
from atod.envs.alfworld import constants as C
from atod.envs.alfworld.engine import NOTHING_HAPPENS, render_list
from atod.envs.alfworld.generator import goal_combos, task_content_key
from atod.envs.base import Benchmark, Env, Task

SMALL = AlfworldConfig(train_tasks=60, valid_seen_tasks=24, valid_unseen_tasks=24)


@cache
def small(seed: int = 0):
    return build(SMALL, seed)


def run_episode(env, task, rng, noise=0.0, policy="expert"):
    result = env.reset(task)
    transcript = [result.observation]
    while not result.done:
        action = env.expert_action(rng, noise) if policy == "expert" else rng.choice(result.admissible_actions)
        result = env.step(action)
        transcript += [action, result.observation]
    return result, transcript


def manual_task(task_type="pick_and_place_simple", goal=("Apple", "Fridge", ""), objects=None, receptacles=None,
                text="put a apple in fridge") -> Task:
    receptacles = receptacles or [("cabinet 2", "Cabinet"), ("cabinet 1", "Cabinet"), ("countertop 1", "CounterTop"),
                                  ("fridge 1", "Fridge"), ("microwave 1", "Microwave"), ("sinkbasin 1", "SinkBasin")]
    objects = objects or [("apple 1", "Apple", "countertop 1"), ("mug 1", "Mug", "cabinet 1")]
    payload = {"task_type": task_type, "scene": "Kitchen", "layout": "manual",
               "receptacles": [{"name": n, "type": t} for n, t in receptacles],
               "objects": [{"name": n, "type": t, "receptacle": r} for n, t, r in objects],
               "goal": {"object": goal[0], "parent": goal[1], "toggle": goal[2]}}
    return Task("alfworld", "train", "manual-0", text, payload)


# ---------------------------------------------------------------- protocol, determinism, splits
def test_protocols_and_config_section():
    bench = small()
    assert isinstance(bench, Benchmark)
    assert isinstance(bench.make_env(), Env)
    assert bench.splits == ("train", "valid_seen", "valid_unseen")
    assert bench.max_turns == 50
    with pytest.raises(ValueError):
        AlfworldConfig(min_objects=5, max_objects=2)
    with pytest.raises(ValueError):
        AlfworldConfig(task_types=["pick_and_slice"])


def test_build_is_deterministic_and_seed_dependent():
    a, b, c = build(SMALL, 3), build(SMALL, 3), build(SMALL, 4)
    for split in a.splits:
        assert [t.to_json() for t in a.tasks(split)] == [t.to_json() for t in b.tasks(split)]
    assert [t.to_json() for t in a.tasks("train")] != [t.to_json() for t in c.tasks("train")]
    assert a.corpus_texts() == b.corpus_texts()


def test_sizes_task_types_and_names():
    bench = small()
    for split, n in [("train", 60), ("valid_seen", 24), ("valid_unseen", 24)]:
        tasks = bench.tasks(split)
        assert len(tasks) == n and all(t.split == split for t in tasks)
        assert {t.payload["task_type"] for t in tasks} == set(C.TASK_TYPES)
        for t in tasks:
            p = t.payload
            assert SMALL.min_receptacles <= len(p["receptacles"]) <= max(SMALL.max_receptacles, 4)
            movable = [o for o in p["objects"] if o["type"] not in C.TOGGLEABLE]
            assert SMALL.min_objects <= len(movable) <= max(SMALL.max_objects, 2)
            goal = p["goal"]
            templates = [tpl.format(obj=goal["object"].lower(), recep=goal["parent"].lower(),
                                    toggle=goal["toggle"].lower()) for tpl in C.GOAL_TEMPLATES[p["task_type"]]]
            assert t.goal in templates
            names = [r["name"] for r in p["receptacles"]] + [o["name"] for o in p["objects"]]
            assert len(set(names)) == len(names)
            for o in p["objects"]:  # every object sits in a receptacle that can hold it
                host = next(r for r in p["receptacles"] if r["name"] == o["receptacle"])
                assert o["type"] in C.TOGGLEABLE or o["type"] in C.CAN_CONTAIN[host["type"]]


def test_splits_disjoint_and_unseen_is_unseen():
    bench = small()
    ids = [t.task_id for s in bench.splits for t in bench.tasks(s)]
    assert len(ids) == len(set(ids))
    contents = [task_content_key(t) for s in bench.splits for t in bench.tasks(s)]
    assert len(contents) == len(set(contents))
    train, seen, unseen = (bench.tasks(s) for s in bench.splits)
    layouts = {s: {t.payload["layout"] for t in bench.tasks(s)} for s in bench.splits}
    assert not layouts["valid_unseen"] & layouts["train"]
    assert not layouts["valid_unseen"] & layouts["valid_seen"]
    assert layouts["valid_seen"] <= {lay.layout_id for lay in bench.layouts} - layouts["valid_unseen"]

    def combo(t):
        g = t.payload["goal"]
        return t.payload["task_type"], g["object"], g["parent"], g["toggle"]

    assert not {combo(t) for t in unseen} & {combo(t) for t in train + seen}
    for task_type in C.TASK_TYPES:
        assert goal_combos(task_type), task_type


def test_save_load_round_trip(tmp_path):
    bench = small()
    bench.save(tmp_path)
    loaded = load(tmp_path)
    assert loaded.config == bench.config and loaded.max_turns == bench.max_turns
    for split in bench.splits:
        assert [t.to_json() for t in loaded.tasks(split)] == [t.to_json() for t in bench.tasks(split)]
    for task in bench.tasks("valid_unseen")[:6]:
        a = run_episode(bench.make_env(), task, random.Random(5), noise=0.3)[1]
        b = run_episode(loaded.make_env(), task, random.Random(5), noise=0.3)[1]
        assert a == b
    assert load_benchmark("alfworld", tmp_path).tasks("train")[0] == bench.tasks("train")[0]
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing")


# ---------------------------------------------------------------- exact texts (BENCHMARKS.md, alfred.twl2)
def test_exact_texts_and_rules():
    env = AlfworldEnv()
    r = env.reset(manual_task())
    assert r.observation == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, "
        "you see a cabinet 2, a cabinet 1, a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1.\n\n"
        "Your task is to: put a apple in fridge.")
    assert r.admissible_actions == tuple(sorted(r.admissible_actions))
    assert "help" not in r.admissible_actions and "go to fridge 1" in r.admissible_actions
    assert r.info.turn == 0 and r.reward == 0.0 and not r.done
    steps = [
        ("look", "You are in the middle of a room. Looking quickly around you, you see nothing."),
        ("inventory", "You are not carrying anything."),
        ("take apple 1 from countertop 1", NOTHING_HAPPENS),
        ("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed."),
        ("take mug 1 from cabinet 1", NOTHING_HAPPENS),
        ("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a mug 1."),
        ("look", "You are facing the cabinet 1. Next to it, you see nothing."),
        ("take mug 1 from cabinet 1", "You pick up the mug 1 from the cabinet 1."),
        ("examine mug 1", "This is a normal mug 1. In it, you see nothing."),
        ("close cabinet 1", "You close the cabinet 1."),
        ("examine cabinet 1", "The cabinet 1 is closed."),
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a apple 1."),
        ("move mug 1 to countertop 1", "You move the mug 1 to the countertop 1."),
        ("examine countertop 1", "On the countertop 1, you see a apple 1, and a mug 1."),
        ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
        ("inventory", "You are carrying: a apple 1."),
        ("examine apple 1", "There's nothing special about apple 1."),
        ("heat apple 1 with microwave 1", NOTHING_HAPPENS),  # not at the microwave
        ("go to microwave 1", "You arrive at microwave 1. The microwave 1 is closed."),
        ("heat apple 1 with microwave 1", "You heat the apple 1 using the microwave 1."),  # closed is fine
        ("examine apple 1", "This is a hot apple 1."),
        ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing."),
        ("clean apple 1 with sinkbasin 1", "You clean the apple 1 using the sinkbasin 1."),
        ("examine apple 1", "This is a hot and clean apple 1."),
        ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed."),
        ("cool apple 1 with fridge 1", "You cool the apple 1 using the fridge 1."),
        ("examine apple 1", "This is a cool and clean apple 1."),
        ("move apple 1 to fridge 1", NOTHING_HAPPENS),  # the fridge is closed
        ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see nothing."),
    ]
    for k, (action, expected) in enumerate(steps, start=1):
        r = env.step(action)
        assert r.observation == expected, action
        assert r.info.invalid == (expected == NOTHING_HAPPENS) and not r.info.format_error
        assert r.info.turn == k and not r.done and r.reward == 0.0
    assert "go to fridge 1" not in r.admissible_actions  # no "go to" the receptacle you are at
    r = env.step("move apple 1 to fridge 1")
    assert r.observation == "You move the apple 1 to the fridge 1."
    assert r.reward == 1.0 and r.done and r.info.won and r.info.score == 1.0
    again = env.step("look")
    assert again.observation == r.observation and again.done and again.reward == 0.0


def test_look_task_lamp_and_slice():
    task = manual_task(
        "look_at_obj_in_light", ("Book", "", "DeskLamp"),
        receptacles=[("bed 1", "Bed"), ("desk 1", "Desk"), ("drawer 1", "Drawer")],
        objects=[("book 1", "Book", "bed 1"), ("desklamp 1", "DeskLamp", "desk 1")],
        text="look at book under the desklamp")
    env = AlfworldEnv()
    env.reset(task)
    r = env.step("go to desk 1")
    assert r.observation == "You arrive at desk 1. On the desk 1, you see a desklamp 1."
    assert "take desklamp 1 from desk 1" not in r.admissible_actions and "use desklamp 1" in r.admissible_actions
    assert env.step("use desklamp 1").observation == "You turn on the desklamp 1."
    assert not env.won  # the book must be in hand
    env.step("go to bed 1")
    env.step("take book 1 from bed 1")
    assert env.step("examine book 1").observation == "There's nothing special about book 1."
    r = env.step("go to desk 1")
    assert r.done and r.reward == 1.0  # holding the book next to the lit lamp

    knife = manual_task(objects=[("apple 1", "Apple", "countertop 1"), ("knife 1", "Knife", "countertop 1")])
    env.reset(knife)
    env.step("go to countertop 1")
    env.step("take knife 1 from countertop 1")
    r = env.step("slice apple 1 with knife 1")
    assert r.observation == "You sliced the apple 1 with the knife 1."
    env.step("move knife 1 to countertop 1")
    env.step("take apple 1 from countertop 1")
    assert env.step("examine apple 1").observation == "This is a sliced apple 1."


def test_render_list():
    assert render_list([]) == "nothing"
    assert render_list(["a x"]) == "a x"
    assert render_list(["a x", "a y"]) == "a x, and a y"
    assert render_list(["a x", "a y", "a z"]) == "a x, a y, and a z"


def test_format_error_and_turn_limit():
    env = AlfworldEnv(max_turns=3)
    env.reset(manual_task())
    r = env.step(None)
    assert r.observation == NOTHING_HAPPENS and r.info.format_error and r.info.invalid and r.info.turn == 1
    assert not env.step("go to cabinet 1").info.invalid
    r = env.step("dance")
    assert r.done and not r.info.won and r.reward == 0.0 and r.info.turn == 3


def test_an_action_that_is_not_text_is_a_format_error_not_a_crash():
    env = AlfworldEnv(max_turns=3)
    env.reset(manual_task())
    r = env.step(123)  # the protocol's step() never raises (it used to: AttributeError on .strip())
    assert r.observation == NOTHING_HAPPENS and r.info.format_error and r.info.invalid and not r.done


# ---------------------------------------------------------------- expert and random policy
def test_expert_solves_every_split_of_the_default_profile():
    prepare = load_params("params.yaml", profile="default").prepare
    rng = random.Random(0)
    for seed in (0, 1):
        bench = build_benchmark("alfworld", prepare, seed=seed)
        env = bench.make_env()
        for split in bench.splits:
            tasks = bench.tasks(split)
            results = [run_episode(env, task, rng)[0] for task in tasks]
            success = sum(r.info.won for r in results) / len(tasks)
            assert success >= 0.99, (seed, split, success)
            assert max(r.info.turn for r in results) < bench.max_turns // 2
            assert all(r.info.turn for r in results)


def test_expert_acts_through_admissible_actions_and_copes_with_noise():
    bench = small()
    env = bench.make_env()
    rng = random.Random(1)
    wins = 0
    for task in bench.tasks("train")[:30]:
        result = env.reset(task)
        while not result.done:
            action = env.expert_action(rng, 0.0)
            assert action in result.admissible_actions
            result = env.step(action)
        noisy, _ = run_episode(env, task, rng, noise=0.2)
        wins += noisy.info.won
    assert wins >= 27


def test_random_policy_is_far_worse():
    bench = small()
    env = bench.make_env()
    rng = random.Random(2)
    tasks = bench.tasks("train")
    random_success = sum(run_episode(env, t, rng, policy="random")[0].info.won for t in tasks) / len(tasks)
    expert_success = sum(run_episode(env, t, rng)[0].info.won for t in tasks) / len(tasks)
    assert expert_success == 1.0
    assert random_success < 0.5


def test_corpus_texts_cover_the_vocabulary():
    bench = small()
    texts = bench.corpus_texts()
    words = set(" ".join(texts).split())
    assert NOTHING_HAPPENS in texts
    for split in bench.splits:
        for task in bench.tasks(split):
            assert set(task.goal.split()) <= words


# ---------------------------------------------------------------- robustness (hypothesis)
_BENCH = small()
_TASKS = _BENCH.tasks("train")[:12]


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, len(_TASKS) - 1), prefix=st.integers(0, 6),
       action=st.one_of(st.none(), st.text(max_size=40),
                        st.sampled_from(["go to", "take apple", "move", "open", "heat x with y", "help", "use",
                                         "examine", "go to cabinet 99", " look", "look ", "LOOK"])))
def test_step_never_raises_and_invalid_leaves_state_unchanged(index, prefix, action):
    env = _BENCH.make_env()
    rng = random.Random(index)
    env.reset(_TASKS[index])
    for _ in range(prefix):
        env.step(env.expert_action(rng, 0.5))
    if env.done:
        return
    before, admissible, turn = env.snapshot(), env.admissible_actions, env.turn
    result = env.step(action)
    assert result.info.turn == turn + 1
    command = None if action is None else action.strip()
    if command not in admissible:
        assert result.observation == NOTHING_HAPPENS and result.info.invalid
        assert result.info.format_error == (action is None)
        assert env.snapshot() == before and result.admissible_actions == admissible
    else:
        assert not result.info.invalid


def test_payload_is_json_serialisable():
    for task in small().tasks("valid_seen"):
        assert Task.from_json(json.loads(json.dumps(task.to_json()))) == task


def test_real_adapter_without_the_extra_names_it():
    from atod.envs.alfworld import real

    try:
        import alfworld  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"atod\[alfworld\]"):
            real.RealAlfworldEnv()
    else:
        pytest.skip("alfworld is installed: tests/test_env_alfworld_real.py covers the adapter")


def test_pddl_problem_of_a_generated_task():
    from atod.envs.alfworld.real import _entity_ids, pddl_problem

    task = manual_task(objects=[("apple 2", "Apple", "countertop 1"), ("apple 1", "Apple", "cabinet 1"),
                                ("desklamp 1", "DeskLamp", "countertop 1")])
    ids = _entity_ids(task.payload)
    # ALFWorld's demangler numbers each type's sorted ids from the highest number down.
    assert sorted([ids["apple 1"], ids["apple 2"]]) == [ids["apple 2"], ids["apple 1"]]
    assert sorted([ids["cabinet 1"], ids["cabinet 2"]]) == [ids["cabinet 2"], ids["cabinet 1"]]
    assert ids["sinkbasin 1"].startswith("Sink_bar_") and ids["sinkbasin 1"].endswith("_bar_SinkBasin")
    problem = pddl_problem(task)
    assert "(:domain alfred)" in problem and "(atLocation agent1 loc_bar_start)" in problem
    assert f"(openable {ids['fridge 1']})" in problem and f"(heatable {ids['apple 1']})" in problem
    assert f"(toggleable {ids['desklamp 1']})" in problem and f"(pickupable {ids['desklamp 1']})" not in problem
    assert "(canContain FridgeType AppleType)" in problem and "(receptacleType ?r FridgeType)" in problem
    assert problem.count("(") == problem.count(")")
