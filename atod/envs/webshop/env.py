"""The WebShop environment: a simulated shop session (search, results, item pages, buy) in text mode.

Actions (the lower-cased, stripped text inside `<action>...</action>`):
- `search[query]`: only on the search page (the only page with a search bar); an empty query is invalid.
- `click[x]`: `x` must be one of the current page's clickables (lower-cased, see pages.py).
Anything else (or a search away from the search bar) leaves the page unchanged with reward 0 and
`invalid=True`; `None` (no well-formed action) is the same plus `format_error=True`. Every step
counts towards the 15-turn limit. Buying ends the episode with the WebShop score as reward.

Admissible actions: the page's clickables as `click[...]`; on the search page the single entry
`search[<your query>]` (verl-agent's placeholder: the agent writes its own query in its place; sent
literally it is a valid search for the words "your query").

Session rules follow WebShop's SimServer: a search resets the selected options; `< Prev` on an item
page returns to the same results page, on a sub-page to the item page (options kept); `Back to
Search` starts over; clicking an option value selects it (one value per option name).
"""

from __future__ import annotations

import random
import re

from atod.envs.base import StepInfo, StepResult, Task
from atod.envs.webshop.catalogue import Goal, Product
from atod.envs.webshop.pages import (
    BACK_TO_SEARCH,
    BUY_NOW,
    NEXT_PAGE,
    PREV_PAGE,
    RESULTS_PER_PAGE,
    done_page,
    item_page,
    results_page,
    search_page,
    sub_page,
)
from atod.envs.webshop.reward import get_option_reward, get_reward
from atod.envs.webshop.search import SearchEngine

SEARCH_PLACEHOLDER = "search[<your query>]"
ACTION_RE = re.compile(r"^(search|click)\[(.*)\]$", re.DOTALL)


class Shop:
    """The catalogue and its BM25 index, shared (read-only) by every environment of a benchmark."""

    def __init__(self, products: list[Product]) -> None:
        self.products = {p.asin: p for p in products}
        if len(self.products) != len(products):
            raise ValueError("the catalogue has duplicate ASINs")
        self.engine = SearchEngine(products)

    def search(self, query: str) -> tuple[str, ...]:
        return self.engine.search(query)


def parse_action(action: str) -> tuple[str, str] | None:
    """`search[q]` / `click[x]` -> (name, lower-cased stripped argument); None when malformed."""
    match = ACTION_RE.match(action.strip())
    if match is None:
        return None
    return match.group(1), match.group(2).strip().lower()


EXPERTS = ("reward", "observable")


def price_top(tag: str) -> float:
    """The highest price a price tag allows: '$50.99 to $66.99' -> 66.99, '$38.99' -> 38.99."""
    return float(tag.split(" to ")[-1].lstrip("$"))


def _type_title(goal: Goal) -> str:
    """The goal's product type as the instruction names it: its key words minus the attributes."""
    attributes = " ".join(goal.attributes)
    return goal.keywords[: len(goal.keywords) - len(attributes)].strip() if attributes else goal.keywords


class WebshopEnv:
    """One WebShop session at a time (see the module docstring for the protocol). `expert` picks the
    scripted expert of `expert_action`: "reward" or "observable" (see there)."""

    benchmark = "webshop"

    def __init__(self, shop: Shop, max_turns: int = 15, expert: str = "reward") -> None:
        if expert not in EXPERTS:
            raise ValueError(f"unknown WebShop expert {expert!r}; expected one of {', '.join(EXPERTS)}")
        self.shop = shop
        self.max_turns = max_turns
        self.expert = expert
        self.goal: Goal | None = None

    # ---- episode -------------------------------------------------------------------------------

    def reset(self, task: Task) -> StepResult:
        if task.benchmark != "webshop":
            raise ValueError(f"WebshopEnv got a task of benchmark {task.benchmark!r}")
        self.goal = Goal.from_json(task.payload)
        self.turn = 0
        self.done = False
        self.won = False
        self.score = 0.0
        self.keywords = ""
        self.results: tuple[str, ...] = ()
        self.page_no = 1
        self.asin: str | None = None
        self.options: dict[str, str] = {}
        self._expert_plans: dict[str, tuple[float, dict[str, str]]] = {}
        self._expert_fallback = False
        self._expert_rejected: set[str] = set()  # observable expert: products it ruled out
        self._expert_described: dict[str, bool] = {}  # ... and what their descriptions showed
        self.page = search_page(self.goal.instruction_text)
        return StepResult(self.page.text, self.admissible_actions(), 0.0, False, StepInfo(turn=0))

    def admissible_actions(self) -> tuple[str, ...]:
        if self.page.kind == "done":
            return ()
        actions = [SEARCH_PLACEHOLDER] if self.page.has_search_bar else []
        return tuple(actions + [f"click[{c}]" for c in self.page.clickables])

    def step(self, action: str | None) -> StepResult:
        if self.goal is None:
            raise RuntimeError("WebshopEnv.step called before reset(task)")
        if self.done:
            return StepResult(self.page.text, (), 0.0, True, StepInfo(self.won, self.score, turn=self.turn))
        self.turn += 1
        reward, invalid = 0.0, True
        parsed = parse_action(action) if isinstance(action, str) else None
        if parsed is not None:
            reward, invalid = self._apply(*parsed)
        if self.turn >= self.max_turns:
            self.done = True
        info = StepInfo(self.won, self.score, invalid=invalid, format_error=action is None, turn=self.turn)
        return StepResult(
            self.page.text, self.admissible_actions() if not self.done else (), reward, self.done, info
        )

    # ---- transitions ---------------------------------------------------------------------------

    def _apply(self, name: str, arg: str) -> tuple[float, bool]:
        """Apply a parsed action; returns (reward, invalid). Invalid actions change nothing."""
        if name == "search":
            if not self.page.has_search_bar or not arg:
                return 0.0, True
            self.keywords = arg
            self.results = self.shop.search(arg)
            self._show_results(1)
            return 0.0, False
        if arg not in self.page.clickables:
            return 0.0, True
        kind = self.page.kind
        if arg == BACK_TO_SEARCH.lower():
            self.keywords, self.results, self.asin, self.options = "", (), None, {}
            self.page = search_page(self.goal.instruction_text)
        elif kind == "results":
            if arg == NEXT_PAGE.lower():
                self._show_results(self.page_no + 1)
            elif arg == PREV_PAGE.lower():
                self._show_results(self.page_no - 1)
            else:
                self.asin = arg.upper()
                self._show_item()
        elif kind == "item":
            if arg == PREV_PAGE.lower():
                self._show_results(self.page_no)
            elif arg == BUY_NOW.lower():
                return self._buy(), False
            elif arg in ("description", "features", "reviews"):
                self.page = sub_page(self.goal.instruction_text, self._product(), arg)
            else:
                self.options[self._option_name(arg)] = arg
        else:  # description / features / reviews: only `< Prev` is left
            self._show_item()
        return 0.0, False

    def _product(self) -> Product:
        return self.shop.products[self.asin]

    def _option_name(self, value: str) -> str:
        for name, values in self._product().options.items():
            if value in values:
                return name
        raise KeyError(f"{value!r} is not an option value of {self.asin}")

    def _show_results(self, page_no: int) -> None:
        """Results page `page_no` of the last search; like WebShop, this clears the selected options."""
        self.page_no = page_no
        self.asin, self.options = None, {}
        start = (page_no - 1) * RESULTS_PER_PAGE
        shown = [self.shop.products[a] for a in self.results[start : start + RESULTS_PER_PAGE]]
        self.page = results_page(self.goal.instruction_text, shown, page_no, len(self.results))

    def _show_item(self) -> None:
        self.page = item_page(self.goal.instruction_text, self._product())

    def _buy(self) -> float:
        product = self._product()
        self.score = get_reward(product, self.goal, product.price, self.options)
        self.won = self.score >= 1.0
        self.done = True
        self.page = done_page(self.score)
        return self.score

    # ---- scripted expert -----------------------------------------------------------------------

    def expert_action(self, rng: random.Random, noise: float = 0.0) -> str:
        """The scripted expert's next action; with probability `noise` a random admissible action.

        Expert "observable" decides from what the pages show (`_observable_action`). Expert "reward"
        searches the goal's key words (product type + attributes, all words of the
        instruction), opens the target product, or else the first product on the page that can
        score 1.0 with the right options (privileged: it scores products with the reward function),
        pages through the results if none is visible, selects the goal's option values and buys.
        If the 50 results hold no such product it searches again with the target's title. A random
        `search[<your query>]` becomes a search for a few of the instruction's key words.
        The expert remembers (per episode) that its own query missed; it returns "" once the episode is over.
        """
        if self.goal is None or self.done:
            return ""
        if noise > 0.0 and rng.random() < noise:
            action = rng.choice(self.admissible_actions())
            if action == SEARCH_PLACEHOLDER:
                words = self.goal.keywords.split()
                action = f"search[{' '.join(rng.sample(words, rng.randint(1, min(4, len(words)))))}]"
            return action
        if self.expert == "observable":
            return self._observable_action()
        kind = self.page.kind
        if kind == "search":
            if self._expert_fallback:
                return f"search[{self.shop.products[self.goal.asin].title.lower()}]"
            return f"search[{self.goal.keywords}]"
        if kind == "results":
            visible = [c for c in self.page.clickables if c.upper() in self.shop.products]
            if self.goal.asin.lower() in visible:
                return f"click[{self.goal.asin.lower()}]"
            for asin in visible:
                if self._expert_plan(asin.upper())[0] >= 1.0:
                    return f"click[{asin}]"
            own_query = self.keywords == self.goal.keywords
            if own_query and NEXT_PAGE.lower() in self.page.clickables:
                return f"click[{NEXT_PAGE.lower()}]"
            if own_query:
                self._expert_fallback = True
            return f"click[{BACK_TO_SEARCH.lower()}]"
        if kind == "item":
            score, plan = self._expert_plan(self.asin)
            if score < 1.0 and self.asin != self.goal.asin:
                return f"click[{PREV_PAGE.lower()}]"
            for name, value in plan.items():
                if self.options.get(name) != value:
                    return f"click[{value}]"
            return f"click[{BUY_NOW.lower()}]"
        return f"click[{PREV_PAGE.lower()}]"  # description / features / reviews

    def _observable_action(self) -> str:
        """The observable expert: only what the instruction and the pages show decides. It searches the
        goal's key words (product type + attributes, all words of the instruction); on a results page it
        opens, in rank order, the first product it has not ruled out whose title names the product type
        and whose shown price (the top of a range) is under the limit, else turns the page (or, with no
        page left, searches again); on the item page it rules the product out unless every goal option
        value is offered, reads the description when the title lacks some goal attribute and rules it
        out unless the description names them all, then selects the goal's option values and buys.
        `benchmarks/webshop_observable_policy.py` plays it on whole splits."""
        goal, kind = self.goal, self.page.kind

        def candidate(product: Product) -> bool:  # what the results page shows: type and price
            return (product.asin not in self._expert_rejected and _type_title(goal) in product.title.lower()
                    and price_top(product.price_tag) <= goal.price_upper)

        if kind == "search":
            return f"search[{goal.keywords}]"
        if kind == "results":
            for asin in (c for c in self.page.clickables if c.upper() in self.shop.products):
                if candidate(self.shop.products[asin.upper()]):
                    return f"click[{asin}]"
            if NEXT_PAGE.lower() in self.page.clickables:
                return f"click[{NEXT_PAGE.lower()}]"
            return f"click[{BACK_TO_SEARCH.lower()}]"
        product = self._product()
        if kind == "description":
            self._expert_described[product.asin] = all(
                a in product.description.lower() for a in goal.attributes if a not in product.title.lower())
            return f"click[{PREV_PAGE.lower()}]"
        if kind != "item":
            return f"click[{PREV_PAGE.lower()}]"
        if not candidate(product) or any(value not in product.options.get(name, ())
                                         for name, value in goal.goal_options.items()):
            self._expert_rejected.add(product.asin)
        elif any(a not in product.title.lower() for a in goal.attributes):
            if product.asin not in self._expert_described:
                return "click[description]"
            if not self._expert_described[product.asin]:
                self._expert_rejected.add(product.asin)
        if product.asin in self._expert_rejected:
            return f"click[{PREV_PAGE.lower()}]"
        for value in goal.goal_options.values():
            if self.options.get(self._option_name(value)) != value:
                return f"click[{value}]"
        return f"click[{BUY_NOW.lower()}]"

    def _expert_plan(self, asin: str) -> tuple[float, dict[str, str]]:
        """(best reward, option choices) for buying `asin`: per option the value matching the goal best."""
        if asin not in self._expert_plans:
            product = self.shop.products[asin]
            goal_values = list(self.goal.goal_options.values())
            plan = {}
            for name, values in product.options.items():
                wanted = self.goal.goal_options.get(name)
                if wanted in values:
                    plan[name] = wanted
                else:
                    plan[name] = max(values, key=lambda v: get_option_reward(product, goal_values, {name: v}))
            self._expert_plans[asin] = (get_reward(product, self.goal, product.price, plan), plan)
        return self._expert_plans[asin]
