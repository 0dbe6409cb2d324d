"""params.yaml `prepare.webshop`: size of the generated WebShop catalogue and goal sets."""

from typing import Literal

from pydantic import Field

from atod.configbase import Section


class WebshopConfig(Section):
    num_products: int = Field(300, ge=20, description="products in the generated catalogue")
    train_tasks: int = Field(200, ge=1, description="goals in the train split")
    test_tasks: int = Field(100, ge=1, description="goals in the test split (verl-agent: goals 0-499)")
    max_turns: int = Field(15, ge=1, le=100)
    max_goal_attributes: int = Field(
        2, ge=1, le=4, description="difficulty: a goal names 1..this many of its target's attributes"
    )
    expert: Literal["reward", "observable"] = Field(
        "reward",
        description="the scripted expert behind the demonstrations: 'reward' picks products by their reward "
        "(privileged), 'observable' decides from what the pages show (see WebshopEnv.expert_action)",
    )
