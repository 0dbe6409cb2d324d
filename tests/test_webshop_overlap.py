"""WebShop test goals that repeat a train goal in other words (atod.envs.webshop.benchmark.twinned_test_tasks)
and benchmarks/webshop_overlap.py's success split by them, on hand-made goals and records."""

from __future__ import annotations

from conftest import load_script

from atod.envs.base import Task
from atod.envs.webshop.benchmark import goal_key, twinned_test_tasks
from atod.eval.compare import EvalRecord


def _goal(split: str, i: int, text: str, asin: str, attributes: list[str], options: dict, price: float) -> Task:
    return Task("webshop", split, f"webshop-{split}-{i:05d}", text,
                {"asin": asin, "attributes": attributes, "goal_options": options, "price_upper": price})


class _Bench:
    def __init__(self, tasks: dict[str, list[Task]]):
        self._tasks = tasks

    def tasks(self, split: str) -> list[Task]:
        return self._tasks[split]


BENCH = _Bench({
    "train": [_goal("train", 0, "i want red jeans", "A1", ["slim", "blue"], {"size": "m", "color": "red"}, 40.0),
              _goal("train", 1, "i need a lamp", "B2", [], {}, 30.0)],
    "test": [
        # same product, attributes (other order) and options, other words, other price: a twin without price
        _goal("test", 0, "looking for red jeans", "A1", ["blue", "slim"], {"color": "red", "size": "m"}, 50.0),
        _goal("test", 1, "a lamp please", "B2", [], {}, 30.0),  # a twin with the price too
        _goal("test", 2, "red jeans, size l", "A1", ["slim", "blue"], {"size": "l", "color": "red"}, 40.0),  # other option
        _goal("test", 3, "a lamp, dimmable", "B2", ["dimmable"], {}, 30.0),  # other attribute
    ],
})


def test_twins_are_the_same_request_in_other_words():
    assert goal_key(BENCH.tasks("test")[0], with_price=False) == ("A1", ("blue", "slim"), (("color", "red"), ("size", "m")))
    assert twinned_test_tasks(BENCH) == ["webshop-test-00000", "webshop-test-00001"]
    assert twinned_test_tasks(BENCH, with_price=True) == ["webshop-test-00001"]


def test_success_split_by_twins():
    script = load_script("webshop_overlap")
    twins = {f"test/{t}" for t in twinned_test_tasks(BENCH)}
    ids = [f"test/webshop-test-0000{i}" for i in range(4)]
    records = [
        EvalRecord("atod", "webshop", "test", 0, "final", [1, 1, 0, 0], task_ids=ids),  # wins the twins only
        EvalRecord("atod", "webshop", "test", 1, "final", [0, 1, 1, 0], task_ids=ids),
        EvalRecord("atod", "webshop", "test", 0, "best", [1, 1, 1, 1], task_ids=ids),  # other checkpoint: left out
        EvalRecord("atod", "alfworld", "valid_seen", 0, "final", [1], task_ids=["valid_seen/x"]),  # other benchmark
    ]
    table = script.success_by_subset(records, twins, "final")
    # twinned (tasks 0, 1 in seeds 0 and 1): 1 + 1 + 0 + 1 = 3 of 4; rest (tasks 2, 3): 0 + 0 + 1 + 0 = 1 of 4
    assert table == {"atod": {"all": 100 * 4 / 8, "twinned": 100 * 3 / 4, "rest": 100 * 1 / 4}}
