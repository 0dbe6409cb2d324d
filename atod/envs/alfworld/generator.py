"""Generate ALFWorld-like household tasks: room layouts, goals and object placements.

A *layout* plays the role of an AI2-THOR floor plan: a scene type (kitchen, living room, bedroom,
bathroom), its receptacles ("cabinet 1", "fridge 1", ...) and, in living rooms and bedrooms, a lamp
standing on one of them. A *task* is a layout plus the objects placed in its receptacles plus a goal
(task type, object type, parent receptacle type, lamp type for look tasks) and its goal text.

Splits follow ALFWorld: `train` and `valid_seen` draw from the same ("seen") layouts and goal
combinations; `valid_unseen` uses layouts reserved for it AND goal combinations (task type, object,
receptacle/lamp) that never occur in the seen splits. Every task's content is unique across splits.

Everything is deterministic in the seed (only `random.Random(seed)` objects are used).

Task payload (JSON, stored in `Task.payload`):
    {"task_type": str, "scene": str, "layout": str,
     "receptacles": [{"name": "cabinet 1", "type": "Cabinet"}, ...],    # ALFWorld listing order
     "objects": [{"name": "apple 1", "type": "Apple", "receptacle": "countertop 1"}, ...],  # listing order
     "goal": {"object": "Apple", "parent": "Fridge", "toggle": ""}}
Listing order is ALFWorld's: sorted by type name, then by decreasing instance number (TextWorld
sorts facts by entity id and ALFWorld's demangler numbers sorted ids from the highest down).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from atod.envs.alfworld import constants as C
from atod.envs.alfworld.config import AlfworldConfig
from atod.envs.base import Task

SEEN_SPLITS = ("train", "valid_seen")
SPLITS = ("train", "valid_seen", "valid_unseen")


@dataclass(frozen=True)
class Layout:
    """A room: scene type, receptacle types in listing order (name -> type), optional lamp."""

    layout_id: str
    scene: str
    receptacles: tuple[tuple[str, str], ...]  # (name, type), ALFWorld listing order
    lamp: tuple[str, str, str] | None = None  # (name, type, host receptacle name)

    def receptacle_types(self) -> set[str]:
        return {t for _, t in self.receptacles}

    def signature(self) -> str:
        return json.dumps([self.scene, sorted(self.receptacles), self.lamp])

    def to_json(self) -> dict:
        return {"layout_id": self.layout_id, "scene": self.scene,
                "receptacles": [list(r) for r in self.receptacles],
                "lamp": list(self.lamp) if self.lamp else None}

    @classmethod
    def from_json(cls, obj: dict) -> Layout:
        return cls(obj["layout_id"], obj["scene"], tuple(tuple(r) for r in obj["receptacles"]),
                   tuple(obj["lamp"]) if obj["lamp"] else None)


def listing_key(name: str) -> tuple[str, int]:
    """Sort key giving ALFWorld's listing order of entity names: by type, then number descending."""
    base, _, num = name.rpartition(" ")
    return base, -int(num)


def _number(types: list[str], rng: random.Random) -> list[str]:
    """Name instances "type k", numbering the instances of each type 1..n in a random order."""
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    numbers = {t: rng.sample(range(1, n + 1), n) for t, n in counts.items()}
    return [f"{C.display_name(t)} {numbers[t].pop()}" for t in types]


def generate_layouts(config: AlfworldConfig, rng: random.Random) -> list[Layout]:
    """`config.num_layouts` distinct rooms, spread evenly over the four scene types."""
    layouts: list[Layout] = []
    signatures: set[str] = set()
    for k in range(config.num_layouts):
        scene = C.SCENE_TYPES[k % len(C.SCENE_TYPES)]
        spec = C.SCENES[scene]
        for _attempt in range(200):
            size = rng.randint(max(config.min_receptacles, len(spec["required"])),
                               max(config.max_receptacles, len(spec["required"])))
            types = list(spec["required"])
            max_count = {t: n for t, n in spec["optional"]}
            optional = sorted(max_count)
            while len(types) < size:
                free = [t for t in optional if types.count(t) < max_count[t] + (t in spec["required"])]
                if not free:
                    break
                types.append(rng.choice(free))
            names = _number(types, rng)
            receptacles = tuple(sorted(zip(names, types), key=lambda r: listing_key(r[0])))
            lamp = None
            if scene in ("LivingRoom", "Bedroom"):
                hosts = [name for name, t in receptacles if t in C.LAMP_HOSTS]
                lamp_type = rng.choice(C.LAMPS)
                lamp = (f"{C.display_name(lamp_type)} 1", lamp_type, rng.choice(hosts))
            layout = Layout(f"{scene.lower()}-{k // len(C.SCENE_TYPES) + 1:02d}", scene, receptacles, lamp)
            if layout.signature() not in signatures:
                signatures.add(layout.signature())
                layouts.append(layout)
                break
        else:
            raise RuntimeError(f"could not generate {config.num_layouts} distinct {scene} layouts with "
                               f"{config.min_receptacles}..{config.max_receptacles} receptacles; lower num_layouts")
    return layouts


def split_layouts(layouts: list[Layout], config: AlfworldConfig, rng: random.Random) -> dict[str, list[Layout]]:
    """Reserve `unseen_layout_fraction` of each scene type's layouts (at least one) for valid_unseen."""
    seen: list[Layout] = []
    unseen: list[Layout] = []
    for scene in C.SCENE_TYPES:
        mine = [lay for lay in layouts if lay.scene == scene]
        rng.shuffle(mine)
        n_unseen = min(len(mine) - 1, max(1, math.ceil(config.unseen_layout_fraction * len(mine))))
        unseen += mine[:n_unseen]
        seen += mine[n_unseen:]
    return {"train": seen, "valid_seen": seen, "valid_unseen": unseen}


def goal_combos(task_type: str) -> list[tuple[str, str, str]]:
    """All (object type, parent type, lamp type) goal combinations ALFRED allows for a task type."""
    combos = set()
    for scene in sorted(C.GOAL_SCENES[task_type]):
        spec = C.SCENES[scene]
        recs = set(spec["required"]) | {t for t, _ in spec["optional"]}
        for obj in spec["objects"]:
            if task_type == "look_at_obj_in_light":
                combos.update((obj, "", lamp) for lamp in C.LAMPS)
                continue
            for parent in recs:
                if obj not in C.CAN_CONTAIN[parent]:
                    continue
                if task_type in C.TRANSFORM:
                    verb, _appliance = C.TRANSFORM[task_type]
                    affordance = {"clean": C.CLEANABLE, "heat": C.HEATABLE, "cool": C.COOLABLE}[verb]
                    if obj not in affordance or parent == C.TRANSFORM_EXCLUDED_PARENT[task_type]:
                        continue
                combos.add((obj, parent, ""))
    return sorted(combos)


def split_goal_combos(config: AlfworldConfig, rng: random.Random) -> dict[str, dict[str, set]]:
    """Per task type, reserve `unseen_goal_fraction` of the goal combinations for valid_unseen."""
    seen: dict[str, set] = {}
    unseen: dict[str, set] = {}
    for task_type in C.TASK_TYPES:
        combos = goal_combos(task_type)
        rng.shuffle(combos)
        n_unseen = max(1, math.ceil(config.unseen_goal_fraction * len(combos)))
        unseen[task_type] = set(combos[:n_unseen])
        seen[task_type] = set(combos[n_unseen:])
    return {"train": seen, "valid_seen": seen, "valid_unseen": unseen}


def _hosts(layout: Layout, obj_type: str, exclude_type: str = "") -> list[str]:
    return [name for name, t in layout.receptacles if obj_type in C.CAN_CONTAIN[t] and t != exclude_type]


def feasible_combos(layout: Layout, task_type: str, allowed: set) -> list[tuple[str, str, str]]:
    """Goal combinations of `allowed` that can be posed in `layout` (and are not solved at the start)."""
    if layout.scene not in C.GOAL_SCENES[task_type]:
        return []
    rec_types = layout.receptacle_types()
    if task_type in C.TRANSFORM and C.TRANSFORM[task_type][1] not in rec_types:
        return []
    objects = C.SCENES[layout.scene]["objects"]
    out = []
    for obj, parent, lamp in sorted(allowed):
        if obj not in objects:
            continue
        if task_type == "look_at_obj_in_light":
            if layout.lamp is None or layout.lamp[1] != lamp or not _hosts(layout, obj):
                continue
        elif parent not in rec_types or not _hosts(layout, obj, exclude_type=parent):
            continue
        out.append((obj, parent, lamp))
    return out


def make_task(layout: Layout, task_type: str, combo: tuple[str, str, str], config: AlfworldConfig,
              rng: random.Random, split: str, index: int) -> Task:
    """Place the goal's objects and distractors in `layout` and write the goal text."""
    obj, parent, lamp = combo
    n_objects = rng.randint(config.min_objects, config.max_objects)
    n_targets = rng.randint(2, 3) if task_type == "pick_two_obj_and_place" else rng.randint(1, 2)
    n_targets = min(n_targets, max(n_objects, 2 if task_type == "pick_two_obj_and_place" else 1))
    placements: list[tuple[str, str]] = []  # (type, receptacle name)
    target_hosts = _hosts(layout, obj, exclude_type=parent)
    for _ in range(n_targets):
        placements.append((obj, rng.choice(target_hosts)))
    distractor_types = [t for t in C.SCENES[layout.scene]["objects"] if t != obj and _hosts(layout, t)]
    for _ in range(max(0, n_objects - n_targets)):
        t = rng.choice(distractor_types)
        placements.append((t, rng.choice(_hosts(layout, t))))
    names = _number([t for t, _ in placements], rng)
    objects = [{"name": n, "type": t, "receptacle": r} for n, (t, r) in zip(names, placements)]
    if layout.lamp is not None:
        lamp_name, lamp_type, host = layout.lamp
        objects.append({"name": lamp_name, "type": lamp_type, "receptacle": host})
    objects.sort(key=lambda o: listing_key(o["name"]))
    template = rng.choice(C.GOAL_TEMPLATES[task_type])
    goal = template.format(obj=C.display_name(obj), recep=C.display_name(parent), toggle=C.display_name(lamp))
    payload = {
        "task_type": task_type,
        "scene": layout.scene,
        "layout": layout.layout_id,
        "receptacles": [{"name": n, "type": t} for n, t in layout.receptacles],
        "objects": objects,
        "goal": {"object": obj, "parent": parent, "toggle": lamp},
    }
    return Task("alfworld", split, f"alfworld-{split}-{index:05d}", goal, payload)


def task_content_key(task: Task) -> str:
    """Identity of a task's content (rooms, objects, goal), independent of its split and id."""
    p = task.payload
    return json.dumps([p["task_type"], p["receptacles"], p["objects"], p["goal"]], sort_keys=True)


def generate(config: AlfworldConfig, seed: int) -> tuple[list[Layout], dict[str, list[Task]]]:
    """All layouts and the tasks of every split, deterministic in `seed`."""
    unknown = sorted(set(config.task_types) - set(C.TASK_TYPES))
    if unknown:
        raise ValueError(f"unknown ALFWorld task types {unknown}; known: {', '.join(C.TASK_TYPES)}")
    rng = random.Random(seed)
    layouts = generate_layouts(config, random.Random(rng.random()))
    layouts_by_split = split_layouts(layouts, config, random.Random(rng.random()))
    combos_by_split = split_goal_combos(config, random.Random(rng.random()))
    sizes = {"train": config.train_tasks, "valid_seen": config.valid_seen_tasks,
             "valid_unseen": config.valid_unseen_tasks}
    seen_content: set[str] = set()
    tasks: dict[str, list[Task]] = {}
    for split in SPLITS:
        split_rng = random.Random(f"{seed}-{split}")
        type_order = list(config.task_types)
        split_rng.shuffle(type_order)
        tasks[split] = []
        for index in range(sizes[split]):
            task_type = type_order[index % len(type_order)]
            for _attempt in range(1000):
                layout = split_rng.choice(layouts_by_split[split])
                combos = feasible_combos(layout, task_type, combos_by_split[split][task_type])
                if not combos:
                    continue
                task = make_task(layout, task_type, split_rng.choice(combos), config, split_rng, split, index)
                key = task_content_key(task)
                if key not in seen_content:
                    seen_content.add(key)
                    tasks[split].append(task)
                    break
            else:
                raise RuntimeError(f"could not generate a new {task_type} task for split {split!r}: "
                                   "too few layouts/goal combinations for the requested number of tasks")
    return layouts, tasks
