"""params.yaml `prepare.alfworld`: sizes of the generated ALFWorld task sets."""

from pydantic import Field

from atod.configbase import Section


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
