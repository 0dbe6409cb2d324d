"""Our ALFWorld engine against the real one (alfworld 0.4.2 + textworld[pddl], the `atod[alfworld]` extra).

Generated tasks are exported as ALFWorld games (`export_game`) and played in both engines with the same
actions (the expert with some random admissible actions mixed in, to exercise more of the grammar);
observations, admissible commands, rewards and `done` must agree text for text at every step.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("alfworld")
pytest.importorskip("fast_downward")

from atod.envs.alfworld import AlfworldConfig, AlfworldEnv, build
from atod.envs.alfworld.real import RealAlfworldEnv, export_game
from atod.envs.base import Task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    return build(AlfworldConfig(train_tasks=24, valid_seen_tasks=6, valid_unseen_tasks=12), seed=7)


def test_export_game_layout(bench, tmp_path):
    task = bench.tasks("valid_unseen")[0]
    game_path = export_game(task, tmp_path)
    assert game_path.name == "game.tw-pddl"
    assert game_path.parent.parent.parent.name == "valid_unseen"
    game = json.loads(game_path.read_text())
    assert set(game) == {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
    assert f"Your task is to: {task.goal}." in game["grammar"] and game["solvable"]
    traj = json.loads((game_path.parent / "traj_data.json").read_text())
    assert traj["task_type"] == task.payload["task_type"]
    assert traj["pddl_params"]["object_target"] == task.payload["goal"]["object"]


@pytest.mark.parametrize("split,noise", [("train", 0.0), ("train", 0.4), ("valid_unseen", 0.8)])
def test_transcripts_match_the_real_engine(bench, tmp_path, split, noise):
    ours, real = bench.make_env(), RealAlfworldEnv(max_turns=bench.max_turns, workdir=tmp_path)
    tasks = bench.tasks(split)[:12] if noise < 0.5 else bench.tasks(split)[:6]
    wins = 0
    for task in tasks:
        rng = random.Random(task.task_id)
        a, b = ours.reset(task), real.reset(task)
        step = 0
        while True:
            where = f"{task.task_id} step {step}"
            assert a.observation == b.observation, where
            assert a.admissible_actions == b.admissible_actions, where
            assert (a.reward, a.done, a.info) == (b.reward, b.done, b.info), where
            if a.done:
                break
            action = ours.expert_action(rng, noise)
            a, b = ours.step(action), real.step(action)
            step += 1
        wins += a.info.won
    if noise == 0.0:
        assert wins == len(tasks)
    real.close()


def test_real_env_rejects_what_ours_rejects(bench, tmp_path):
    task = bench.tasks("train")[0]
    ours, real = bench.make_env(), RealAlfworldEnv(workdir=tmp_path)
    ours.reset(task)
    real.reset(task)
    for action in [None, "help", "go to nowhere 1", "take x from y", "  look  "]:
        a, b = ours.step(action), real.step(action)
        assert (a.observation, a.info) == (b.observation, b.info), action
    real.close()


def test_official_data_path_runs_exported_games(bench, tmp_path):
    """`load_official_benchmark` over an $ALFWORLD_DATA-style tree (here: our exported games); the real
    engine's planner expert solves them and the walkthroughs replay identically in our engine."""
    from atod.envs.alfworld.real import load_official_benchmark

    ours = {t.task_id: t for s in bench.splits for t in bench.tasks(s)[:2]}
    for task in ours.values():
        export_game(task, tmp_path)
    official = load_official_benchmark(tmp_path)
    assert {s: len(official.tasks(s)) for s in official.splits} == {s: 2 for s in bench.splits}
    env, mine = official.make_env(), bench.make_env()
    rng = random.Random(0)
    for split in official.splits:
        for task in official.tasks(split):
            original = ours[task.task_id.rsplit("trial_", 1)[1]]
            assert task.goal == original.goal and task.payload["task_type"] == original.payload["task_type"]
            walkthrough = json.loads(Path(task.payload["gamefile"]).read_text())["walkthrough"]
            a, b = env.reset(task), mine.reset(original)
            for action in walkthrough:
                assert a.observation == b.observation and a.admissible_actions == b.admissible_actions
                a, b = env.step(action), mine.step(action)
            assert a.observation == b.observation and a.done and b.done and a.info.won and b.info.won
            result = env.reset(task)  # the planner (policy_commands) solves it too
            while not result.done:
                result = env.step(env.expert_action(rng))
            assert result.info.won
    env.close()


KITCHEN = [("cabinet 2", "Cabinet"), ("cabinet 1", "Cabinet"), ("countertop 1", "CounterTop"), ("fridge 1", "Fridge"),
           ("microwave 1", "Microwave"), ("sinkbasin 1", "SinkBasin")]
SCRIPT = [
    "look", "inventory", "go to cabinet 1", "take mug 1 from cabinet 1", "open cabinet 1", "look",
    "take mug 1 from cabinet 1", "examine mug 1", "close cabinet 1", "examine cabinet 1", "go to microwave 1",
    "heat mug 1 with microwave 1", "examine mug 1", "go to countertop 1", "examine desklamp 1", "use desklamp 1",
    "move mug 1 to countertop 1", "take knife 1 from countertop 1", "slice apple 1 with knife 1", "examine knife 1",
    "go to fridge 1", "slice egg 1 with knife 1", "open fridge 1", "go to countertop 1",
    "move knife 1 to countertop 1", "take apple 1 from countertop 1", "examine apple 1", "go to microwave 1",
    "heat apple 1 with microwave 1", "examine apple 1", "go to sinkbasin 1", "clean apple 1 with sinkbasin 1",
    "examine apple 1", "go to fridge 1", "cool apple 1 with fridge 1", "examine apple 1", "move apple 1 to fridge 1",
    "take egg 1 from fridge 1", "examine egg 1", "go to cabinet 1", "open cabinet 1", "move egg 1 to cabinet 1",
    "inventory", "go to countertop 1", "examine countertop 1", "help", "take mug 1 from countertop 1",
]


def test_scripted_corner_cases_match(tmp_path):
    """Texts the random walks rarely reach: slicing, receptacle objects, lamps, closed receptacles, help."""
    objects = [("apple 1", "Apple", "countertop 1"), ("knife 1", "Knife", "countertop 1"),
               ("mug 1", "Mug", "cabinet 1"), ("desklamp 1", "DeskLamp", "countertop 1"), ("egg 1", "Egg", "fridge 1")]
    payload = {"task_type": "pick_cool_then_place_in_recep", "scene": "Kitchen", "layout": "manual",
               "receptacles": [{"name": n, "type": t} for n, t in KITCHEN],
               "objects": [{"name": n, "type": t, "receptacle": r} for n, t, r in objects],
               "goal": {"object": "Mug", "parent": "CounterTop", "toggle": ""}}
    task = Task("alfworld", "train", "manual-0", "put a cool mug in countertop", payload)
    ours, real = AlfworldEnv(max_turns=len(SCRIPT) + 1), RealAlfworldEnv(max_turns=len(SCRIPT) + 1, workdir=tmp_path)
    a, b = ours.reset(task), real.reset(task)
    seen = []
    for action in SCRIPT:
        a, b = ours.step(action), real.step(action)
        assert (a.observation, a.admissible_actions, a.info) == (b.observation, b.admissible_actions, b.info), action
        seen.append(b.observation)
    for text in ["This is a normal mug 1. In it, you see nothing.", "You sliced the apple 1 with the knife 1.",
                 "This is a hot and clean sliced apple 1.", "You turn on the desklamp 1.", "This is a sliced egg 1."]:
        assert text in seen
    real.close()
