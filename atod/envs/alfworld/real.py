"""Adapter to the real ALFWorld engine (alfworld 0.4.2 + TextWorld's PDDL backend).

Needs the optional extra: `pip install 'atod[alfworld]'` (alfworld==0.4.2, textworld[pddl]; the
fast-downward-textworld dependency builds from source for several minutes). Nothing here is imported
by the rest of atod unless asked for.

Two uses:
- `export_game(task, directory)` writes one of OUR generated tasks as an ALFWorld game
  (`game.tw-pddl` = JSON {pddl_domain, grammar, pddl_problem, solvable, walkthrough}, next to a
  `traj_data.json` with task_type and pddl_params), using the domain and grammar shipped in the
  alfworld wheel. `RealAlfworldEnv` then plays it in the real engine, which is how
  tests/test_env_alfworld_real.py checks our engine text for text.
- `load_official(data_dir, split)` + `RealAlfworldEnv` run the official ALFWorld games when
  `$ALFWORLD_DATA` holds them (`json_2.1.1/{train,valid_seen,valid_unseen}/.../game.tw-pddl`).

Entity ids in the exported problem are chosen so that ALFWorld's demangler gives every entity the
name our generator gave it ("cabinet 3", "sinkbasin 1"): it numbers the ids of each type, sorted,
from the highest number down, and names `Sink|...|SinkBasin` "sinkbasin".
"""

from __future__ import annotations

import importlib.resources
import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

from atod.envs.alfworld import constants as C
from atod.envs.alfworld.engine import NOTHING_HAPPENS, AlfworldEnv
from atod.envs.base import StepInfo, StepResult, Task

EXTRA_HINT = "the real ALFWorld engine needs the optional extra: pip install 'atod[alfworld]'"


def _require_alfworld():
    """Import alfworld + textworld lazily, with an error that names the extra when they are missing."""
    try:
        import alfworld  # noqa: F401
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT} (import failed: {exc})") from exc
    try:
        import fast_downward  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT}; textworld is installed without its [pddl] extra "
                          f"(fast-downward-textworld): {exc}") from exc
    return textworld, AlfredDemangler, AlfredInfos


def game_logic() -> dict[str, str]:
    """ALFWorld's PDDL domain and TextWorld grammar, as shipped in the alfworld wheel."""
    _require_alfworld()
    data = importlib.resources.files("alfworld") / "data"
    return {"pddl_domain": (data / "alfred.pddl").read_text(), "grammar": (data / "alfred.twl2").read_text()}


# ---------------------------------------------------------------------------- export of generated tasks
def _entity_ids(payload: dict) -> dict[str, str]:
    """PDDL ids for our receptacles and objects such that ALFWorld's demangler names them as we do."""
    names = [r["name"] for r in payload["receptacles"]] + [o["name"] for o in payload["objects"]]
    types = {r["name"]: r["type"] for r in payload["receptacles"]} | {o["name"]: o["type"] for o in payload["objects"]}
    count: dict[str, int] = {}
    for name in names:
        base = name.rpartition(" ")[0]
        count[base] = count.get(base, 0) + 1
    ids = {}
    for name in names:
        base, _, num = name.rpartition(" ")
        rank = count[base] - int(num)  # sorted first = highest number
        t = types[name]
        if t.endswith("Basin"):  # "Sink|...|SinkBasin" -> "sinkbasin"
            ids[name] = f"{t[:-len('Basin')]}_bar__plus_{rank:02d}_dot_00_bar__plus_00_dot_00_bar_{t}"
        else:
            ids[name] = f"{t}_bar__plus_{rank:02d}_dot_00_bar__plus_00_dot_00"
    return ids


def _goal_pddl(payload: dict) -> str:
    goal = payload["goal"]
    task_type = payload["task_type"]
    obj_t, parent_t = goal["object"] + "Type", goal["parent"] + "Type"
    if task_type == "look_at_obj_in_light":
        lamp_t = goal["toggle"] + "Type"
        return (f"(and (exists (?ot - object ?l - location) (and (objectType ?ot {lamp_t}) (toggleable ?ot) "
                f"(isToggled ?ot) (objectAtLocation ?ot ?l) (atLocation agent1 ?l))) "
                f"(exists (?o - object) (and (objectType ?o {obj_t}) (holds agent1 ?o))))")
    if task_type == "pick_two_obj_and_place":
        return (f"(exists (?r - receptacle ?o1 - object ?o2 - object) (and (not (= ?o1 ?o2)) "
                f"(receptacleType ?r {parent_t}) (objectType ?o1 {obj_t}) (objectType ?o2 {obj_t}) "
                f"(inReceptacle ?o1 ?r) (inReceptacle ?o2 ?r)))")
    state = {"pick_clean_then_place_in_recep": "(isClean ?o) ", "pick_heat_then_place_in_recep": "(isHot ?o) ",
             "pick_cool_then_place_in_recep": "(isCool ?o) "}.get(task_type, "")
    return (f"(exists (?r - receptacle ?o - object) (and (receptacleType ?r {parent_t}) "
            f"(objectType ?o {obj_t}) {state}(inReceptacle ?o ?r)))")


def pddl_problem(task: Task) -> str:
    """The PDDL problem of one generated task, over ALFWorld's `alfred` domain."""
    p = task.payload
    ids = _entity_ids(p)
    rec_type = {r["name"]: r["type"] for r in p["receptacles"]}
    rec_loc = {r["name"]: f"loc_bar_{k:03d}" for k, r in enumerate(p["receptacles"])}
    start = "loc_bar_start"
    object_types = set(C.OBJECT_TYPES) | set(C.LAMPS)
    objects = ["agent1 - agent"]
    objects += [f"{t}Type - rtype" for t in sorted(C.RECEPTACLE_TYPES)]
    objects += [f"{t}Type - otype" for t in sorted(object_types)]
    objects += [f"{ids[r['name']]} - receptacle" for r in p["receptacles"]]
    objects += [f"{ids[o['name']]} - object" for o in p["objects"]]
    objects += [f"{loc} - location" for loc in [*rec_loc.values(), start]]
    init = [f"(atLocation agent1 {start})"]
    for r in p["receptacles"]:
        rid = ids[r["name"]]
        init += [f"(receptacleType {rid} {r['type']}Type)", f"(receptacleAtLocation {rid} {rec_loc[r['name']]})"]
        if r["type"] in C.OPENABLE:
            init.append(f"(openable {rid})")
    present_objects = sorted({o["type"] for o in p["objects"]})
    for rt in sorted(set(rec_type.values())):
        init += [f"(canContain {rt}Type {ot}Type)" for ot in present_objects if ot in C.CAN_CONTAIN[rt]]
    for o in p["objects"]:
        oid, t = ids[o["name"]], o["type"]
        init += [f"(objectType {oid} {t}Type)", f"(inReceptacle {oid} {ids[o['receptacle']]})",
                 f"(objectAtLocation {oid} {rec_loc[o['receptacle']]})"]
        flags = {"pickupable": t not in C.TOGGLEABLE, "isReceptacleObject": t in C.RECEPTACLE_OBJECTS,
                 "heatable": t in C.HEATABLE, "coolable": t in C.COOLABLE, "cleanable": t in C.CLEANABLE,
                 "toggleable": t in C.TOGGLEABLE, "sliceable": t in C.SLICEABLE}
        init += [f"({flag} {oid})" for flag, on in flags.items() if on]
    name = re.sub(r"[^A-Za-z0-9_]", "_", task.task_id)
    return (f"(define (problem {name})\n(:domain alfred)\n(:objects\n    " + "\n    ".join(objects) + "\n)\n"
            "(:init\n    " + "\n    ".join(init) + "\n)\n" f"(:goal\n    {_goal_pddl(p)}\n)\n)\n")


def expert_walkthrough(task: Task, max_turns: int = 50) -> list[str]:
    """Our scripted expert's noise-free commands for `task` (the game's walkthrough)."""
    env = AlfworldEnv(max_turns=max_turns)
    result = env.reset(task)
    rng = random.Random(0)
    commands = []
    while not result.done:
        commands.append(env.expert_action(rng, 0.0))
        result = env.step(commands[-1])
    return commands


def export_game(task: Task, directory: str | Path, max_turns: int = 50) -> Path:
    """Write `task` as an ALFWorld game under `directory`/json_2.1.1/<split>/<task_type>-.../trial_<id>/.

    Returns the path of its `game.tw-pddl`. The grammar has the task's goal text baked in, as
    `alfworld-generate` does (`add_task_to_grammar`).
    """
    logic = game_logic()
    p = task.payload
    split = {"train": "train", "valid_seen": "valid_seen", "valid_unseen": "valid_unseen"}.get(task.split, "train")
    goal = p["goal"]
    folder = (Path(directory) / "json_2.1.1" / split /
              f"{p['task_type']}-{goal['object']}-None-{goal['parent'] or 'None'}-{p['layout']}" /
              f"trial_{task.task_id}")
    folder.mkdir(parents=True, exist_ok=True)
    game = {
        "pddl_domain": logic["pddl_domain"],
        "grammar": logic["grammar"].replace("UNKNOWN GOAL", task.goal),
        "pddl_problem": pddl_problem(task),
        "solvable": True,
        "walkthrough": expert_walkthrough(task, max_turns),
    }
    (folder / "game.tw-pddl").write_text(json.dumps(game))
    traj = {"task_type": p["task_type"], "task_id": task.task_id, "scene": {"scene_type": p["scene"],
                                                                               "floor_plan": p["layout"]},
            "pddl_params": {"object_target": goal["object"], "parent_target": goal["parent"],
                            "toggle_target": goal["toggle"], "mrecep_target": "", "object_sliced": False},
            "turk_annotations": {"anns": [{"task_desc": task.goal}]}}
    (folder / "traj_data.json").write_text(json.dumps(traj, indent=1))
    return folder / "game.tw-pddl"


# ---------------------------------------------------------------------------- official data
def load_official(data_dir: str | Path | None = None, split: str = "valid_seen",
                  max_tasks: int | None = None) -> list[Task]:
    """Tasks of the official ALFWorld games under `data_dir` (default `$ALFWORLD_DATA`), filtered as
    AlfredTWEnv does (no movable/sliced trajectories, solvable games only)."""
    data_dir = Path(data_dir or os.environ.get("ALFWORLD_DATA", ""))
    root = data_dir / "json_2.1.1" / split
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found: set ALFWORLD_DATA to the ALFWorld data directory "
                                "(alfworld-download) to run the official games")
    tasks = []
    for traj_path in sorted(root.rglob("traj_data.json")):
        folder = traj_path.parent
        game_path = folder / "game.tw-pddl"
        if "movable" in str(folder) or "Sliced" in str(folder) or not game_path.is_file():
            continue
        game = json.loads(game_path.read_text())
        if not game.get("solvable", False):
            continue
        found = re.search(r"Your task is to: (.*?)\.\"", game["grammar"])
        goal = found.group(1) if found else ""
        task_type = json.loads(traj_path.read_text())["task_type"]
        tasks.append(Task("alfworld", split, str(folder.relative_to(root)), goal,
                          {"gamefile": str(game_path), "task_type": task_type}))
        if max_tasks is not None and len(tasks) >= max_tasks:
            break
    return tasks


class OfficialAlfworldBenchmark:
    """The official ALFWorld games under `$ALFWORLD_DATA` as a Benchmark (train / valid_seen / valid_unseen).

    `save(directory)` writes the task lists (game file paths), `load_official_benchmark` reads either
    the data directory or such a saved listing.
    """

    name = "alfworld"
    splits = ("train", "valid_seen", "valid_unseen")

    def __init__(self, tasks_by_split: dict[str, list[Task]], max_turns: int = 50) -> None:
        self._tasks = tasks_by_split
        self.max_turns = max_turns

    def tasks(self, split: str) -> list[Task]:
        return list(self._tasks[split])

    def make_env(self) -> RealAlfworldEnv:
        return RealAlfworldEnv(max_turns=self.max_turns)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "world.json").write_text(json.dumps({"benchmark": self.name, "source": "official",
                                                          "max_turns": self.max_turns}) + "\n")
        for split in self.splits:
            with open(directory / f"{split}.jsonl", "w") as f:
                f.writelines(json.dumps(task.to_json(), sort_keys=True) + "\n" for task in self._tasks[split])

    def copy_terms(self) -> list[str]:
        """None: every argument (objects, receptacles) is a frequent word of the vocabulary."""
        return []

    def corpus_texts(self, episodes_per_split: int = 5) -> list[str]:
        """Observations and commands of a few planner-expert episodes per split."""
        texts: list[str] = [NOTHING_HAPPENS]
        env = self.make_env()
        rng = random.Random(0)
        for split in self.splits:
            for task in self._tasks[split][:episodes_per_split]:
                result = env.reset(task)
                texts += [task.goal, result.observation, *result.admissible_actions]
                while not result.done:
                    action = env.expert_action(rng)
                    result = env.step(action)
                    texts += [action, result.observation]
        env.close()
        return texts


def load_official_benchmark(data_dir: str | Path | None = None, max_tasks_per_split: int | None = None,
                            max_turns: int = 50) -> OfficialAlfworldBenchmark:
    """The official games of every split under `data_dir` (default `$ALFWORLD_DATA`)."""
    tasks = {split: load_official(data_dir, split, max_tasks_per_split)
             for split in OfficialAlfworldBenchmark.splits}
    return OfficialAlfworldBenchmark(tasks, max_turns)


class RealAlfworldEnv:
    """The Env protocol over the real engine. A task is either an official game (payload["gamefile"])
    or one of our generated tasks, exported on the fly to `workdir` (a temporary directory by default).

    Texts, admissible commands (sorted, `help` dropped), reward and limits as in `AlfworldEnv`;
    `expert_action` follows the real engine's planner (`policy_commands`).
    """

    benchmark = "alfworld"

    def __init__(self, max_turns: int = 50, workdir: str | Path | None = None) -> None:
        self._textworld, self._demangler, self._infos = _require_alfworld()
        self.max_turns = max_turns
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="atod-alfworld-")  # removed with self
        self._workdir = Path(workdir) if workdir else Path(self._tmp.name)
        self._env: Any = None
        self._state: Any = None

    def _gamefile(self, task: Task) -> str:
        if "gamefile" in task.payload:
            return task.payload["gamefile"]
        return str(export_game(task, self._workdir, self.max_turns))

    def _admissible(self) -> tuple[str, ...]:
        return tuple(c for c in self._state["admissible_commands"] if c != "help")

    def reset(self, task: Task) -> StepResult:
        if self._env is not None:
            self._env.close()
        request = self._textworld.EnvInfos(won=True, admissible_commands=True, policy_commands=True,
                                           extras=["gamefile"])
        self._env = self._textworld.start(self._gamefile(task), request_infos=request,
                                          wrappers=[self._demangler(), self._infos])
        self._state = self._env.reset()
        self.turn, self.done, self.won = 0, False, False
        self.last_observation = self._state.feedback
        return StepResult(self.last_observation, self._admissible(), 0.0, False, StepInfo(turn=0))

    def step(self, action: str | None) -> StepResult:
        if self._env is None:
            raise RuntimeError("call reset(task) before step()")
        if self.done:
            return StepResult(self.last_observation, self._admissible(), 0.0, True,
                              StepInfo(won=self.won, score=float(self.won), turn=self.turn))
        self.turn += 1
        command = action.strip() if isinstance(action, str) else ""
        invalid = command not in self._admissible()
        if invalid:  # the engine would answer the same; keep `help` (not offered) inadmissible too
            observation = NOTHING_HAPPENS
        else:
            self._state, _score, _done = self._env.step(command)
            observation = self._state.feedback
            self.won = bool(self._state["won"])
        self.done = self.won or self.turn >= self.max_turns
        self.last_observation = observation
        return StepResult(observation, self._admissible(), 1.0 if self.won else 0.0, self.done,
                          StepInfo(won=self.won, score=float(self.won), invalid=invalid,
                                   format_error=not isinstance(action, str), turn=self.turn))

    def expert_action(self, rng: random.Random, noise: float = 0.0) -> str:
        admissible = self._admissible()
        plan = self._state["policy_commands"] or []
        if (noise > 0.0 and rng.random() < noise) or not plan or plan[0] not in admissible:
            return rng.choice(admissible)
        return plan[0]

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
