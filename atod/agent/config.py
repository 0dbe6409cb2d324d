"""params.yaml `models` (tokenizer, student, teacher) and `agent` (prompting, rollouts, rewards)."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from atod.agent.vocab import SPECIAL_TOKENS, TAG_TOKENS, VOCAB_FLOOR
from atod.configbase import Section


class TinyArch(Section):
    """Architecture of a model built from scratch (the embedded default)."""

    architecture: Literal["qwen3", "llama"] = "qwen3"
    hidden_size: int = Field(96, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=8)
    max_position_embeddings: int = Field(1024, ge=64)

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})")
        return self


class ModelSpec(Section):
    """Where a model comes from: `tiny` (built from `arch`, trained from scratch) or `pretrained`
    (a Hugging Face hub name or local path in `name_or_path`)."""

    source: Literal["tiny", "pretrained"] = "tiny"
    name_or_path: str | None = None
    arch: TinyArch = TinyArch()
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @field_validator("dtype")
    @classmethod
    def _not_float16(cls, dtype: str) -> str:
        if dtype == "float16":  # every model of the pipeline is trained: the warm-ups, then the student's RL
            raise ValueError("float16 is not supported: the pipeline trains every model (SFT warm-up, then RL) "
                             "with plain AdamW, and float16 weights without loss scaling turn to NaN within a "
                             "step (AdamW's eps of 1e-8 is 0 in float16); use bfloat16 (or float32)")
        return dtype

    @model_validator(mode="after")
    def _pretrained_needs_name(self):
        if self.source == "pretrained" and not self.name_or_path:
            raise ValueError("source 'pretrained' needs name_or_path (a hub name or a local directory)")
        return self


class TokenizerSpec(Section):
    """`embedded`: a byte-level BPE tokenizer learnt from the generated benchmarks' texts (tags kept
    whole; see atod.agent.tokenizer); `pretrained`: the tokenizer of models.student.name_or_path (the
    embedded-only fields, `vocab_size` and `min_frequency` included, are then ignored)."""

    source: Literal["embedded", "pretrained"] = "embedded"
    vocab_size: int = Field(2048, ge=1, le=262144)
    min_frequency: int = Field(1, ge=1)
    whole_terms: bool = Field(False, description=(
        "embedded only: add each benchmark's copy_terms (WebShop product ids, Search-QA name words) as "
        "one token, so a tiny model trained from scratch can copy them from its prompt"))
    split_digits: bool = Field(False, description=(
        "embedded only: every digit its own token, as Qwen's and Llama's tokenizers split numbers, so "
        "`1097` is the same four tokens wherever it appears (BPE otherwise cuts years unevenly: ` 10` `9` `7`)"))
    whole_numbers: bool = Field(False, description=(
        "embedded only: every 3-4 digit number in the benchmarks' texts (Search-QA's years) one token, "
        "so a year is copied like a whole-term name"))

    @model_validator(mode="after")
    def _room_above_the_fixed_tokens(self):
        if self.source == "embedded" and self.vocab_size <= VOCAB_FLOOR:
            raise ValueError(f"vocab_size {self.vocab_size} leaves no room for a learnt piece: the byte-level "
                             f"ASCII alphabet, the {len(SPECIAL_TOKENS)} special and {len(TAG_TOKENS)} tag tokens "
                             f"alone take {VOCAB_FLOOR}; use at least {VOCAB_FLOOR + 64}")
        return self

    @model_validator(mode="after")
    def _one_number_rule(self):
        if self.split_digits and self.whole_numbers:
            raise ValueError("split_digits and whole_numbers are exclusive (a number is "
                             "either one token per digit or one token); set one of them to false")
        return self


class ModelsConfig(Section):
    tokenizer: TokenizerSpec = TokenizerSpec()
    student: ModelSpec = ModelSpec()
    teacher: ModelSpec = ModelSpec(arch=TinyArch(hidden_size=128, num_layers=4, intermediate_size=384))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(0, ge=0, description="0 = torch's default")

    @model_validator(mode="after")
    def _tokenizer_has_a_source(self):
        """A pretrained tokenizer is the student's own (`prepare` then checks that every pretrained model's
        tokenizer is the pipeline's)."""
        if self.tokenizer.source == "pretrained" and self.student.source != "pretrained":
            raise ValueError("tokenizer.source 'pretrained' loads the tokenizer of student.name_or_path, but "
                             "student.source is 'tiny': set student.source to 'pretrained' or tokenizer.source "
                             "to 'embedded'")
        return self


class AgentConfig(Section):
    """How the agent is prompted and rewarded; shared by every stage that runs episodes."""

    history_length: int = Field(2, ge=0, le=50, description="past (observation, action) pairs in each prompt")
    max_new_tokens: int = Field(48, ge=4, le=4096, description="token limit of one turn's response")
    max_prompt_tokens: int = Field(960, ge=32, le=131072,
                                   description="longer prompts keep their end; also capped by the model's positions")
    success_reward: float = Field(10.0, gt=0, description="training reward for a won episode (verl-agent: 10)")
    invalid_penalty: float = Field(0.1, ge=0, description="penalty per malformed action (ALFWorld, WebShop)")
    searchqa_invalid_penalty: float = Field(0.01, ge=0, description="penalty per malformed Search-QA turn")
    train_temperature: float = Field(1.0, gt=0)
    eval_temperature: float = Field(0.4, gt=0)
    think: bool = Field(False, description="ask for <think> reasoning before the action")
