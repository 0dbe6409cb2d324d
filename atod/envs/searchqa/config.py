"""params.yaml `prepare.searchqa`: size of the generated knowledge base and question sets."""

from pydantic import Field

from atod.configbase import Section


class SearchQAConfig(Section):
    num_entities: int = Field(300, ge=20, description="fictional entities in the knowledge base")
    train_tasks: int = Field(200, ge=1)
    test_in_domain_tasks: int = Field(100, ge=1)
    test_out_of_domain_tasks: int = Field(100, ge=1)
    max_turns: int = Field(4, ge=1, le=20)
    topk: int = Field(3, ge=1, le=20, description="passages returned per search")
    one_hop_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of one-hop (NQ-like) questions; the rest are bridge/comparison",
    )
    out_of_domain_templates: tuple[str, ...] = Field(
        ("headquarters", "person_country", "city_older"),
        description="question templates held out for test_out_of_domain (see atod.envs.searchqa.questions)",
    )
