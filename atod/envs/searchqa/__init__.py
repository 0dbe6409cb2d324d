"""Search-QA (Search-R1 protocol) over a generated knowledge base of fictional entities.

`build(config, seed)` generates the benchmark, `load(directory)` reads one written by `save`.
`remote` adapts the env to a Search-R1 style HTTP retrieval server and FlashRAG question files;
`serve_retriever` serves any corpus behind that protocol.
"""

from atod.envs.searchqa.benchmark import SPLITS, SearchQABenchmark, build, load
from atod.envs.searchqa.config import SearchQAConfig
from atod.envs.searchqa.env import SearchQAEnv
from atod.envs.searchqa.protocol import INVALID_FEEDBACK, exact_match, extract_action, normalize_answer

__all__ = [
    "INVALID_FEEDBACK",
    "SPLITS",
    "SearchQABenchmark",
    "SearchQAConfig",
    "SearchQAEnv",
    "build",
    "exact_match",
    "extract_action",
    "load",
    "normalize_answer",
]
