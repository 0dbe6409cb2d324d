"""params.yaml `prepare.alfworld`: sizes of the generated ALFWorld task sets."""

from pydantic import Field, model_validator

from atod.configbase import Section
from atod.envs.alfworld.constants import TASK_TYPES


class AlfworldConfig(Section):
    train_tasks: int = Field(200, ge=1, description="tasks in the train split")
    valid_seen_tasks: int = Field(50, ge=1, description="tasks in valid_seen (rooms like train)")
    valid_unseen_tasks: int = Field(50, ge=1, description="tasks in valid_unseen (new rooms/objects)")
    min_receptacles: int = Field(5, ge=2, le=40)
    max_receptacles: int = Field(9, ge=2, le=40)
    min_objects: int = Field(3, ge=1, le=60)
    max_objects: int = Field(6, ge=1, le=60)
    task_types: list[str] = Field(
        default_factory=lambda: [
            "pick_and_place_simple",
            "look_at_obj_in_light",
            "pick_clean_then_place_in_recep",
            "pick_heat_then_place_in_recep",
            "pick_cool_then_place_in_recep",
            "pick_two_obj_and_place",
        ]
    )
    max_turns: int = Field(50, ge=1, le=200)
    num_layouts: int = Field(40, ge=8, le=400, description="distinct rooms (floor plans), spread over 4 scene types")
    unseen_layout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="share of each scene type's rooms reserved for valid_unseen")
    unseen_goal_fraction: float = Field(
        0.2, gt=0.0, lt=1.0,
        description="share of each task type's (object, receptacle/lamp) goal combinations reserved for valid_unseen")
    corpus_episodes_per_split: int = Field(
        20, ge=1, description="expert episodes per split whose texts corpus_texts() returns (tokenizer vocabulary)")

    @model_validator(mode="after")
    def _check_ranges(self) -> "AlfworldConfig":
        if self.min_receptacles > self.max_receptacles:
            raise ValueError(f"min_receptacles ({self.min_receptacles}) > max_receptacles ({self.max_receptacles})")
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) > max_objects ({self.max_objects})")
        if not self.task_types:
            raise ValueError("task_types is empty")
        unknown = sorted(set(self.task_types) - set(TASK_TYPES))
        if unknown:
            raise ValueError(f"unknown ALFWorld task types {unknown}; known: {', '.join(TASK_TYPES)}")
        return self
