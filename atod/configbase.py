"""Base class for every params.yaml section: strict (unknown keys are errors), typed, validated."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params.yaml (sub)section. Unknown keys, wrong types and out-of-range values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
