"""The ALFWorld text engine: alfworld 0.4.x (TextWorld PDDL mode) texts, rules and admissible commands.

This re-implements, for our generated tasks, what TextWorld computes from ALFWorld's `alfred.pddl`
domain and `alfred.twl2` grammar (both read from the alfworld 0.4.2 wheel):

- admissible commands: the grounded actions whose PDDL precondition holds, rendered with the
  grammar's templates, as a sorted set (`help` is dropped, as verl-agent does for prompts), with one
  narrowing: `examine` is offered for the held object and the current receptacle only (BENCHMARKS.md),
  not for every object in a visible receptacle;
- feedback texts: the grammar's rules, including its list rendering (", " and ", and "; "nothing"
  when empty; indefinite article always "a") and its listing order (entities sorted by id, i.e. by
  type then decreasing number, see `generator.listing_key`);
- anything that is not an admissible command: "Nothing happens." and an unchanged state;
- reward 1.0 on the step that satisfies the goal (the PDDL goal of the task type), then done.

`atod.envs.alfworld.real` exports the same tasks as PDDL games for the real engine, and
tests/test_env_alfworld_real.py compares both engines' transcripts text for text.
"""

from __future__ import annotations

import random

from atod.envs.alfworld import constants as C
from atod.envs.alfworld.generator import listing_key
from atod.envs.base import StepInfo, StepResult, Task

NOTHING_HAPPENS = "Nothing happens."
WELCOME = "-= Welcome to TextWorld, ALFRED! =-"


def render_list(items: list[str]) -> str:
    """TextWorld's list rendering: "nothing", "a x", "a x, and a y", "a x, a y, and a z"."""
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


class AlfworldEnv:
    """One ALFWorld episode at a time on a generated task (see `generator` for the payload)."""

    benchmark = "alfworld"

    def __init__(self, max_turns: int = 50) -> None:
        self.max_turns = max_turns
        self.task: Task | None = None

    # ------------------------------------------------------------------ episode state
    def reset(self, task: Task) -> StepResult:
        if task.benchmark != "alfworld" or "receptacles" not in task.payload:
            raise ValueError(f"task {task.task_id!r} is not a generated alfworld task (benchmark {task.benchmark!r}); "
                             "official games run in atod.envs.alfworld.real.RealAlfworldEnv")
        p = task.payload
        self.task = task
        self.task_type: str = p["task_type"]
        self.goal_obj: str = p["goal"]["object"]
        self.goal_parent: str = p["goal"]["parent"]
        self.goal_toggle: str = p["goal"]["toggle"]
        receptacles = sorted(p["receptacles"], key=lambda r: listing_key(r["name"]))
        objects = sorted(p["objects"], key=lambda o: listing_key(o["name"]))  # TextWorld's listing order
        self.rec_names = [r["name"] for r in receptacles]
        self.rec_types = [r["type"] for r in receptacles]
        self.rec_index = {n: i for i, n in enumerate(self.rec_names)}
        self.rec_openable = [t in C.OPENABLE for t in self.rec_types]
        self.obj_names = [o["name"] for o in objects]
        self.obj_types = [o["type"] for o in objects]
        self.obj_index = {n: i for i, n in enumerate(self.obj_names)}
        self.obj_loc = [self.rec_index[o["receptacle"]] for o in objects]  # -1 = held by the agent
        n_obj = len(self.obj_names)
        self.hot = [False] * n_obj
        self.cool = [False] * n_obj
        self.clean = [False] * n_obj
        self.sliced = [False] * n_obj
        self.toggled = [False] * n_obj
        self.opened = [False] * len(self.rec_names)
        self.agent_at = -1  # -1 = the middle of the room (no receptacle)
        self.held = -1
        self.turn = 0
        self.done = False
        self.won = False
        # Expert memory: receptacles whose contents the agent has seen this episode.
        self.checked = [False] * len(self.rec_names)
        self._admissible = self._compute_admissible()
        intro = f"{WELCOME}\n\n{self._look(intro=True)}\n\nYour task is to: {task.goal}."
        self.last_observation = intro
        return StepResult(intro, self._admissible, 0.0, False, StepInfo(turn=0))

    @property
    def admissible_actions(self) -> tuple[str, ...]:
        return self._admissible

    def snapshot(self) -> tuple:
        """The world state (agent, objects, receptacles, object states), for tests and debugging."""
        return (self.agent_at, self.held, tuple(self.obj_loc), tuple(self.opened), tuple(self.hot),
                tuple(self.cool), tuple(self.clean), tuple(self.sliced), tuple(self.toggled))

    # ------------------------------------------------------------------ texts
    def _indef(self, names: list[str]) -> list[str]:
        return ["a " + n for n in names]

    def _visible(self, r: int) -> bool:
        return not self.rec_openable[r] or self.opened[r]

    def _contents(self, r: int) -> list[str]:
        return [self.obj_names[o] for o in range(len(self.obj_names)) if self.obj_loc[o] == r]

    def _examine_receptacle(self, r: int) -> str:
        name = self.rec_names[r]
        if self.rec_openable[r]:
            if self.opened[r]:
                return f"The {name} is open. In it, you see {render_list(self._indef(self._contents(r)))}."
            return f"The {name} is closed."
        return f"On the {name}, you see {render_list(self._indef(self._contents(r)))}."

    def _examine_object(self, o: int) -> str:
        name, t = self.obj_names[o], self.obj_types[o]
        if t in C.RECEPTACLE_OBJECTS:
            return f"This is a normal {name}. In it, you see nothing."
        clean, hot, cool, sliced = self.clean[o], self.hot[o], self.cool[o], self.sliced[o]
        if sliced:
            if clean and hot:
                return f"This is a hot and clean sliced {name}."
            if clean and cool:
                return f"This is a cool and clean sliced {name}."
            if clean:
                return f"This is a clean sliced {name}."
            if hot:
                return f"This is a hot sliced {name}."
            if cool:
                return f"This is a cool sliced {name}."
        if clean and hot:
            return f"This is a hot and clean {name}."
        if clean and cool:
            return f"This is a cool and clean {name}."
        if hot:
            return f"This is a hot {name}."
        if clean:
            return f"This is a clean {name}."
        if cool:
            return f"This is a cold {name}."
        if t in C.TOGGLEABLE:
            return f"This {name} is {'on' if self.toggled[o] else 'off'}."
        if sliced:
            return f"This is a sliced {name}."
        return f"There's nothing special about {name}."

    def _look(self, intro: bool = False) -> str:
        """look.feedback. Away from every receptacle the grammar lists the receptacles at the agent's
        location, which is none ("you see nothing."), except in the intro, where no location is bound
        and it lists them all."""
        if self.agent_at < 0:
            seen = render_list(self._indef(self.rec_names)) if intro else "nothing"
            return f"You are in the middle of a room. Looking quickly around you, you see {seen}."
        return f"You are facing the {self.rec_names[self.agent_at]}. Next to it, you see nothing."

    # ------------------------------------------------------------------ rules (alfred.pddl preconditions)
    def _compute_admissible(self) -> tuple[str, ...]:
        cmds = {"look", "inventory"}
        at = self.agent_at
        for r, name in enumerate(self.rec_names):
            if r != at:
                cmds.add(f"go to {name}")
        held = self.held
        if held >= 0:
            hname, htype = self.obj_names[held], self.obj_types[held]
            cmds.add(f"examine {hname}")
        if at >= 0:
            rname, rtype = self.rec_names[at], self.rec_types[at]
            cmds.add(f"examine {rname}")
            if self.rec_openable[at]:
                cmds.add(f"close {rname}" if self.opened[at] else f"open {rname}")
            visible = self._visible(at)
            for o in range(len(self.obj_names)):
                if self.obj_loc[o] != at:
                    continue
                oname, otype = self.obj_names[o], self.obj_types[o]
                if otype in C.TOGGLEABLE:
                    cmds.add(f"use {oname}")
                if held >= 0 and htype in C.KNIVES and otype in C.SLICEABLE:
                    cmds.add(f"slice {oname} with {hname}")
                if visible and held < 0 and otype not in C.TOGGLEABLE:
                    cmds.add(f"take {oname} from {rname}")
            if held >= 0:
                if visible and htype in C.CAN_CONTAIN.get(rtype, ()):
                    cmds.add(f"move {hname} to {rname}")
                if rtype == "Microwave" and htype in C.HEATABLE:
                    cmds.add(f"heat {hname} with {rname}")
                if rtype == "Fridge" and htype in C.COOLABLE:
                    cmds.add(f"cool {hname} with {rname}")
                if rtype == "SinkBasin" and htype in C.CLEANABLE:
                    cmds.add(f"clean {hname} with {rname}")
        return tuple(sorted(cmds))

    def _goal_satisfied(self) -> bool:
        t, parent = self.goal_obj, self.goal_parent
        if self.task_type == "look_at_obj_in_light":
            if self.held < 0 or self.obj_types[self.held] != t or self.agent_at < 0:
                return False
            return any(self.obj_types[o] == self.goal_toggle and self.toggled[o] and self.obj_loc[o] == self.agent_at
                       for o in range(len(self.obj_names)))
        counts = [0] * len(self.rec_names)
        for o, r in enumerate(self.obj_loc):
            if r < 0 or self.obj_types[o] != t or self.rec_types[r] != parent:
                continue
            if self.task_type == "pick_clean_then_place_in_recep" and not self.clean[o]:
                continue
            if self.task_type == "pick_heat_then_place_in_recep" and not self.hot[o]:
                continue
            if self.task_type == "pick_cool_then_place_in_recep" and not self.cool[o]:
                continue
            counts[r] += 1
        need = 2 if self.task_type == "pick_two_obj_and_place" else 1
        return any(c >= need for c in counts)

    def _apply(self, action: str) -> str:
        """Apply an admissible command and return its feedback text."""
        if action == "look":
            return self._look()
        if action == "inventory":
            if self.held < 0:
                return "You are not carrying anything."
            return f"You are carrying: a {self.obj_names[self.held]}."
        verb, _, rest = action.partition(" ")
        if verb == "go":
            r = self.rec_index[rest[len("to "):]]
            self.agent_at = r
            if self._visible(r):
                self.checked[r] = True
            return f"You arrive at {self.rec_names[r]}. {self._examine_receptacle(r)}"
        if verb == "open":
            r = self.rec_index[rest]
            self.opened[r] = True
            self.checked[r] = True
            return f"You open the {rest}. {self._examine_receptacle(r)}"
        if verb == "close":
            self.opened[self.rec_index[rest]] = False
            return f"You close the {rest}."
        if verb == "examine":
            if rest in self.rec_index:
                r = self.rec_index[rest]
                if self._visible(r):
                    self.checked[r] = True
                return self._examine_receptacle(r)
            return self._examine_object(self.obj_index[rest])
        if verb == "take":
            oname, _, rname = rest.partition(" from ")
            o = self.obj_index[oname]
            self.obj_loc[o] = -1
            self.held = o
            return f"You pick up the {oname} from the {rname}."
        if verb == "move":
            oname, _, rname = rest.partition(" to ")
            o = self.obj_index[oname]
            self.obj_loc[o] = self.rec_index[rname]
            self.held = -1
            self.checked[self.obj_loc[o]] = True
            return f"You move the {oname} to the {rname}."
        if verb in ("heat", "cool", "clean"):
            oname, _, rname = rest.partition(" with ")
            o = self.obj_index[oname]
            if verb == "heat":
                self.hot[o], self.cool[o] = True, False
            elif verb == "cool":
                self.cool[o], self.hot[o] = True, False
            else:
                self.clean[o] = True
            return f"You {verb} the {oname} using the {rname}."
        if verb == "use":
            o = self.obj_index[rest]
            self.toggled[o] = True
            return f"You turn on the {rest}."
        if verb == "slice":
            oname, _, kname = rest.partition(" with ")
            self.sliced[self.obj_index[oname]] = True
            return f"You sliced the {oname} with the {kname}."
        raise AssertionError(f"admissible command without a rule: {action!r}")

    def step(self, action: str | None) -> StepResult:
        """Apply `action` (lower-cased text, None = malformed model output). Never raises."""
        if self.task is None:
            raise RuntimeError("call reset(task) before step()")
        if self.done:
            return StepResult(self.last_observation, self._admissible, 0.0, True,
                              StepInfo(won=self.won, score=float(self.won), turn=self.turn))
        self.turn += 1
        format_error = not isinstance(action, str)  # None (or anything but text: malformed)
        command = action.strip() if isinstance(action, str) else ""  # TextWorld matches the stripped text exactly
        invalid = command not in self._admissible
        if invalid:
            observation = NOTHING_HAPPENS
        else:
            observation = self._apply(command)
            self._admissible = self._compute_admissible()
            self.won = self._goal_satisfied()
        reward = 1.0 if self.won else 0.0
        self.done = self.won or self.turn >= self.max_turns
        self.last_observation = observation
        info = StepInfo(won=self.won, score=float(self.won), invalid=invalid, format_error=format_error,
                        turn=self.turn)
        return StepResult(observation, self._admissible, reward, self.done, info)

    # ------------------------------------------------------------------ scripted expert
    def expert_action(self, rng: random.Random, noise: float = 0.0) -> str:
        """The scripted expert's next command; with probability `noise` a random admissible one.

        The expert searches like a person (it only uses where objects are once it has seen inside
        their receptacle this episode, looking first in receptacles that can hold the object type),
        and falls back on the true state only if its search found nothing.
        """
        if noise > 0.0 and rng.random() < noise:
            return rng.choice(self._admissible)
        return self._expert_plan()

    def _goto(self, r: int, then: str) -> str:
        """Go to receptacle r if not there; open it if it is closed; else `then`."""
        if self.agent_at != r:
            return f"go to {self.rec_names[r]}"
        if then in self._admissible:
            return then
        if self.rec_openable[r] and not self.opened[r]:
            return "open " + self.rec_names[r]
        return "look"  # unreachable for generated tasks: `then` is admissible once r is open

    def _search_order(self, obj_type: str) -> list[int]:
        rs = [r for r in range(len(self.rec_names)) if obj_type in C.CAN_CONTAIN.get(self.rec_types[r], ())]
        return sorted(rs, key=lambda r: (self.rec_types[r].lower(), int(self.rec_names[r].rsplit(" ", 1)[1])))

    def _explore(self, hosts: list[int], obj_type: str) -> str:
        """Visit (and open) the next receptacle not checked yet; privileged fallback if all were checked."""
        for r in hosts:
            if not self.checked[r]:
                return self._goto(r, "open " + self.rec_names[r])
        for o in range(len(self.obj_names)):  # fallback: go where the object truly is
            if self.obj_types[o] == obj_type and self.obj_loc[o] >= 0 and not self.checked[self.obj_loc[o]]:
                return self._goto(self.obj_loc[o], "open " + self.rec_names[self.obj_loc[o]])
        return "look"

    def _target_receptacle(self) -> int:
        parents = [r for r in range(len(self.rec_names)) if self.rec_types[r] == self.goal_parent]
        parents.sort(key=lambda r: int(self.rec_names[r].rsplit(" ", 1)[1]))
        for r in parents:  # prefer a receptacle that already holds one goal object (two-object task)
            if any(self.obj_loc[o] == r and self.obj_types[o] == self.goal_obj for o in range(len(self.obj_names))):
                return r
        return parents[0]

    def _transform_done(self, o: int) -> bool:
        verb = C.TRANSFORM[self.task_type][0]
        return {"heat": self.hot, "cool": self.cool, "clean": self.clean}[verb][o]

    def _expert_plan(self) -> str:
        t = self.goal_obj
        look_task = self.task_type == "look_at_obj_in_light"
        target = -1 if look_task else self._target_receptacle()
        held = self.held
        if held >= 0 and self.obj_types[held] != t:  # put down anything useless
            hname, htype = self.obj_names[held], self.obj_types[held]
            here = self.agent_at
            if here >= 0 and self._visible(here) and htype in C.CAN_CONTAIN.get(self.rec_types[here], ()):
                return f"move {hname} to {self.rec_names[here]}"
            hosts = self._search_order(htype)
            hosts.sort(key=lambda r: self.rec_openable[r])
            return self._goto(hosts[0], f"move {hname} to {self.rec_names[hosts[0]]}")
        if held >= 0:
            hname = self.obj_names[held]
            if self.task_type in C.TRANSFORM and not self._transform_done(held):
                verb, appliance = C.TRANSFORM[self.task_type]
                r = next(r for r in range(len(self.rec_names)) if self.rec_types[r] == appliance)
                if self.agent_at != r:
                    return f"go to {self.rec_names[r]}"
                return f"{verb} {hname} with {self.rec_names[r]}"
            if look_task:
                for o in range(len(self.obj_names)):
                    r = self.obj_loc[o]
                    if self.obj_types[o] == self.goal_toggle and r >= 0 and self.checked[r]:
                        if self.agent_at != r:
                            return f"go to {self.rec_names[r]}"
                        return f"use {self.obj_names[o]}"
                return self._explore(self._lamp_hosts(), self.goal_toggle)
            return self._goto(target, f"move {hname} to {self.rec_names[target]}")
        # Hands empty: take a goal object we know of (not one already in place).
        known = [o for o in range(len(self.obj_names))
                 if self.obj_types[o] == t and self.obj_loc[o] >= 0 and self.checked[self.obj_loc[o]]
                 and (self.obj_loc[o] != target or self.task_type in C.TRANSFORM)]
        if self.task_type in C.TRANSFORM:  # an untransformed object in the target must still be processed
            known = [o for o in known if not (self.obj_loc[o] == target and self._transform_done(o))]
        if known:
            here = [o for o in known if self.obj_loc[o] == self.agent_at]
            o = (here or known)[0]
            r = self.obj_loc[o]
            return self._goto(r, f"take {self.obj_names[o]} from {self.rec_names[r]}")
        return self._explore(self._search_order(t), t)

    def _lamp_hosts(self) -> list[int]:
        rs = [r for r in range(len(self.rec_names)) if self.rec_types[r] in C.LAMP_HOSTS]
        return sorted(rs, key=lambda r: (self.rec_types[r].lower(), int(self.rec_names[r].rsplit(" ", 1)[1])))
