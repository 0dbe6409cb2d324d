"""WebShop's purchase reward, following web_agent_site/engine/goal.py (princeton-nlp/WebShop).

    reward = (attribute matches + option matches + [price <= limit]) / (n_attrs + n_options + 1) * r_type

- `get_type_reward`: r_type = 1.0 if the search query matches, or >= 2 breadcrumb levels match, or
  more than 20% of the goal title's nouns are in the purchased title; else 0.5; then 0.1 if under
  10% of the nouns match and 0.0 if none do (the noun overlap overrides the other two signals,
  exactly as in WebShop). WebShop finds nouns with spaCy; our products carry their title nouns.
- `get_attribute_reward`: a goal attribute matches if some product attribute has token-set ratio
  > 85 with it, or it occurs in the title, features (bullet points) or description.
- `get_option_reward`: each *purchased* option value matches if it equals a goal option value
  (exact for `size`) or has token-set ratio > 85 with one (other options), or occurs in the title,
  features or description. WebShop first normalises colour spellings (`normalize_color`); our
  generated colour values are already canonical, so that step is the identity here.
- Fuzzy matching uses rapidfuzz with WebShop's (thefuzz's) preprocessing: lower-cased, non-alphanumerics
  stripped, score rounded to an integer before the `> 85` test.
The only change: the total is clipped to [0, 1] (WebShop can exceed 1 when more purchased options
match than the goal has; the protocol's score lives in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from atod.envs.webshop.catalogue import Goal, Product

EXACT_MATCH_OPTS = ("size",)
FUZZY_THRESHOLD = 85


def fuzzy_match(a: str, b: str) -> bool:
    """thefuzz.fuzz.token_set_ratio(a, b) > 85 (thefuzz rounds the score to an integer)."""
    return round(fuzz.token_set_ratio(a, b, processor=default_process)) > FUZZY_THRESHOLD


@dataclass(frozen=True)
class TypeReward:
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


def get_type_reward(product: Product, goal: Goal) -> TypeReward:
    """Is the purchased product the same kind of product as the goal's (query, breadcrumb, title nouns)."""
    query_match = product.query == goal.query
    purchased_category = {x.strip() for x in product.product_category.split("›")}
    goal_category = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(purchased_category & goal_category) >= 2

    desired = set(goal.title_nouns)
    if not desired:
        title_score = 0.2
    else:
        title_score = len(set(product.title_nouns) & desired) / len(desired)

    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeReward(r_type, query_match, category_match, title_score)


def _in_text(value: str, product: Product) -> bool:
    return (
        value in product.title.lower()
        or value in " ".join(product.features).lower()
        or value in product.description.lower()
    )


def get_attribute_reward(product: Product, goal: Goal) -> int:
    """Number of goal attributes the purchased product has (fuzzy, or mentioned in its texts)."""
    matches = 0
    for g_attr in goal.attributes:
        if any(fuzzy_match(p_attr, g_attr) for p_attr in product.attributes) or _in_text(g_attr, product):
            matches += 1
    return matches


def get_option_reward(product: Product, goal_options: list[str], purchased_options: dict[str, str]) -> int:
    """Number of purchased option values that match some goal option value."""
    matches = 0
    for name, value in purchased_options.items():
        if name.lower() in EXACT_MATCH_OPTS:
            matched = value in goal_options
        else:
            matched = any(fuzzy_match(g, value) for g in goal_options)
        if matched or _in_text(value, product):
            matches += 1
    return matches


def get_reward(product: Product, goal: Goal, price: float, options: dict[str, str]) -> float:
    """The score of buying `product` at `price` with the selected `options` (option name -> value)."""
    r_type = get_type_reward(product, goal).r_type
    r_price = float(price <= goal.price_upper)
    n_attr = get_attribute_reward(product, goal)
    n_opt = get_option_reward(product, list(goal.goal_options.values()), options)
    total = (n_attr + n_opt + r_price) / (len(goal.attributes) + len(goal.goal_options) + 1)
    return min(1.0, max(0.0, total * r_type))
