"""The generated WebShop benchmark: catalogue + goal splits + environment factory, saved as JSON files.

Splits follow verl-agent's use of WebShop: one goal list, the first `test_tasks` goals are `test`, the
next `train_tasks` are `train` (no goal text in both; products are shared, as in WebShop, and with a small
catalogue some test goals ask for what a train goal asks in other words: `twinned_test_tasks`).
Files written by `save(directory)`: `catalogue.json` (format, max_turns, products, and `expert` unless
it is the original "reward" expert, so that files written before the option existed load unchanged) and
one `<split>.jsonl` of tasks per split.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from atod.envs.base import Task
from atod.envs.webshop.catalogue import Product, generate_catalogue, generate_goals
from atod.envs.webshop.config import WebshopConfig
from atod.envs.webshop.env import Shop, WebshopEnv
from atod.envs.webshop.pages import item_page, sub_page

NAME = "webshop"
SPLITS = ("train", "test")
FORMAT = "atod-webshop-v1"
CORPUS_EPISODES_PER_SPLIT = 6


class WebshopBenchmark:
    """Satisfies `atod.envs.base.Benchmark`."""

    name = NAME
    splits = SPLITS

    def __init__(self, products: list[Product], tasks: dict[str, list[Task]], max_turns: int,
                 expert: str = "reward") -> None:
        missing = set(SPLITS) - set(tasks)
        if missing:
            raise ValueError(f"WebShop benchmark is missing split(s) {sorted(missing)}")
        self.products = products
        self._tasks = tasks
        self.max_turns = max_turns
        self.expert = expert
        self.shop = Shop(products)

    def tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            raise KeyError(f"unknown WebShop split {split!r}; known: {', '.join(SPLITS)}")
        return list(self._tasks[split])

    def make_env(self) -> WebshopEnv:
        return WebshopEnv(self.shop, self.max_turns, self.expert)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        catalogue = {
            "format": FORMAT,
            "max_turns": self.max_turns,
            "products": [p.to_json() for p in self.products],
        }
        if self.expert != "reward":
            catalogue["expert"] = self.expert
        (directory / "catalogue.json").write_text(json.dumps(catalogue, ensure_ascii=False) + "\n")
        for split in SPLITS:
            lines = [json.dumps(t.to_json(), ensure_ascii=False) for t in self._tasks[split]]
            (directory / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))

    def copy_terms(self) -> list[str]:
        """Every product id, upper-case as result pages show it and lower-case as clicks name it."""
        return sorted({p.asin for p in self.products} | {p.asin.lower() for p in self.products})

    def corpus_texts(self) -> list[str]:
        """Every goal, every product's item and sub-page texts, and a few expert episodes per split
        (clean and noisy: observations, admissible actions, actions). Enough for a vocabulary."""
        texts: list[str] = []
        for split in SPLITS:
            texts += [t.goal for t in self._tasks[split]]
        instruction = self._tasks[SPLITS[0]][0].goal
        for product in self.products:
            texts.append(item_page(instruction, product).text)
            texts += [
                sub_page(instruction, product, kind).text for kind in ("description", "features", "reviews")
            ]
        env = self.make_env()
        rng = random.Random(0)
        for split in SPLITS:
            for i, task in enumerate(self._tasks[split][:CORPUS_EPISODES_PER_SPLIT]):
                noise = 0.0 if i % 2 == 0 else 0.3
                result = env.reset(task)
                texts += [result.observation, *result.admissible_actions]
                while not result.done:
                    action = env.expert_action(rng, noise)
                    result = env.step(action)
                    texts += [action, result.observation, *result.admissible_actions]
        return texts


def _tasks(goals, split: str) -> list[Task]:
    return [
        Task(NAME, split, f"{NAME}-{split}-{i:05d}", g.instruction_text, g.to_json())
        for i, g in enumerate(goals)
    ]


def goal_key(task: Task, with_price: bool = True) -> tuple:
    """What a WebShop goal asks for, whatever its wording: (product, sorted attributes, sorted options[,
    price limit]). Two goals with one key are the same task for a policy that has learnt which product
    and options a request means."""
    p = task.payload
    key = (p["asin"], tuple(sorted(p["attributes"])), tuple(sorted(p["goal_options"].items())))
    return (*key, p["price_upper"]) if with_price else key


def twinned_test_tasks(bench: WebshopBenchmark, with_price: bool = False) -> list[str]:
    """Task ids of the `test` goals whose `goal_key` is also a `train` goal's: the splits share no goal
    text, but a generated catalogue of a few hundred products repeats the same request in other words
    (the default's 300 products: 30 of its 100 test goals, 12 of them with the same price limit too).
    Evaluation can be read on the test goals without a twin as well (benchmarks/webshop_overlap.py)."""
    train = {goal_key(t, with_price) for t in bench.tasks("train")}
    return [t.task_id for t in bench.tasks("test") if goal_key(t, with_price) in train]


def build(config: WebshopConfig, seed: int) -> WebshopBenchmark:
    """Generate the catalogue and the goal splits (deterministic in `config` and `seed`)."""
    rng = random.Random(f"webshop/{seed}")
    products = generate_catalogue(config.num_products, rng)
    goals = generate_goals(products, config.test_tasks + config.train_tasks, rng, config.max_goal_attributes)
    tasks = {
        "test": _tasks(goals[: config.test_tasks], "test"),
        "train": _tasks(goals[config.test_tasks :], "train"),
    }
    return WebshopBenchmark(products, tasks, config.max_turns, config.expert)


def load(directory: Path) -> WebshopBenchmark:
    """Read a benchmark written by `WebshopBenchmark.save(directory)`."""
    directory = Path(directory)
    path = directory / "catalogue.json"
    if not path.is_file():
        raise FileNotFoundError(f"no WebShop catalogue at {path}: run the prepare stage first")
    catalogue = json.loads(path.read_text())
    if catalogue.get("format") != FORMAT:
        raise ValueError(f"{path} has format {catalogue.get('format')!r}, expected {FORMAT!r}")
    products = [Product.from_json(p) for p in catalogue["products"]]
    tasks = {}
    for split in SPLITS:
        split_path = directory / f"{split}.jsonl"
        if not split_path.is_file():
            raise FileNotFoundError(f"WebShop split file {split_path} is missing")
        tasks[split] = [
            Task.from_json(json.loads(line)) for line in split_path.read_text().splitlines() if line
        ]
    return WebshopBenchmark(products, tasks, int(catalogue["max_turns"]), catalogue.get("expert", "reward"))
