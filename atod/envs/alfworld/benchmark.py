"""The generated ALFWorld benchmark: splits of tasks, an env factory, save/load as JSON files."""

from __future__ import annotations

import json
import random
from pathlib import Path

from atod.envs.alfworld import constants as C
from atod.envs.alfworld.config import AlfworldConfig
from atod.envs.alfworld.engine import NOTHING_HAPPENS, AlfworldEnv
from atod.envs.alfworld.generator import SPLITS, Layout, generate
from atod.envs.base import Task

WORLD_FILE = "world.json"


class AlfworldBenchmark:
    """Train / valid_seen / valid_unseen tasks over generated rooms (see `generator`)."""

    name = "alfworld"
    splits = SPLITS

    def __init__(self, config: AlfworldConfig, seed: int, layouts: list[Layout],
                 tasks_by_split: dict[str, list[Task]]) -> None:
        self.config = config
        self.seed = seed
        self.layouts = layouts
        self._tasks = tasks_by_split
        self.max_turns = config.max_turns

    def tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            raise KeyError(f"unknown alfworld split {split!r}; splits: {', '.join(self.splits)}")
        return list(self._tasks[split])

    def make_env(self) -> AlfworldEnv:
        return AlfworldEnv(max_turns=self.max_turns)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        world = {"benchmark": self.name, "seed": self.seed, "config": self.config.model_dump(),
                 "layouts": [layout.to_json() for layout in self.layouts]}
        (directory / WORLD_FILE).write_text(json.dumps(world, indent=1) + "\n")
        for split in self.splits:
            with open(directory / f"{split}.jsonl", "w") as f:
                f.writelines(json.dumps(task.to_json(), sort_keys=True) + "\n" for task in self._tasks[split])

    def copy_terms(self) -> list[str]:
        """None: every argument (objects, receptacles) is a frequent word of the vocabulary."""
        return []

    def corpus_texts(self) -> list[str]:
        """Goals, observations and commands of expert episodes (a few per split, with and without noise),
        every task's intro and object names, and the fixed texts (for the tokenizer's vocabulary)."""
        texts = [NOTHING_HAPPENS, "You are not carrying anything.",
                 " ".join(C.display_name(t) for t in C.RECEPTACLE_TYPES + C.OBJECT_TYPES + C.LAMPS)]
        env = self.make_env()
        rng = random.Random(self.seed)
        for split in self.splits:
            for k, task in enumerate(self._tasks[split]):
                result = env.reset(task)
                texts.append(result.observation)
                texts.append(" ".join(o["name"] for o in task.payload["objects"]))
                if k >= self.config.corpus_episodes_per_split:
                    continue
                texts.extend(result.admissible_actions)
                noise = 0.0 if k % 2 == 0 else 0.3
                while not result.done:
                    action = env.expert_action(rng, noise)
                    result = env.step(action)
                    texts.append(action)
                    texts.append(result.observation)
                texts.extend(result.admissible_actions)
        return texts


def build(config: AlfworldConfig, seed: int) -> AlfworldBenchmark:
    """Generate the benchmark (deterministic: same config and seed -> identical tasks and texts)."""
    layouts, tasks = generate(config, seed)
    return AlfworldBenchmark(config, seed, layouts, tasks)


def load(directory: Path) -> AlfworldBenchmark:
    """Read a benchmark written by `AlfworldBenchmark.save(directory)`."""
    directory = Path(directory)
    world_path = directory / WORLD_FILE
    if not world_path.is_file():
        raise FileNotFoundError(f"{world_path} not found: not an alfworld benchmark directory (run prepare first)")
    world = json.loads(world_path.read_text())
    config = AlfworldConfig(**world["config"])
    layouts = [Layout.from_json(obj) for obj in world["layouts"]]
    tasks: dict[str, list[Task]] = {}
    for split in SPLITS:
        path = directory / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the alfworld benchmark at {directory} is incomplete")
        with open(path) as f:
            tasks[split] = [Task.from_json(json.loads(line)) for line in f if line.strip()]
    return AlfworldBenchmark(config, world["seed"], layouts, tasks)
