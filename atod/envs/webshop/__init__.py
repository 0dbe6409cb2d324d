"""The embedded WebShop benchmark: a generated catalogue, BM25 search, WebShop's text pages and reward.

`build(config, seed)` generates a benchmark; `load(directory)` reads one written by `save(directory)`.
"""

from atod.envs.webshop.benchmark import WebshopBenchmark, build, load
from atod.envs.webshop.env import SEARCH_PLACEHOLDER, WebshopEnv

__all__ = ["SEARCH_PLACEHOLDER", "WebshopBenchmark", "WebshopEnv", "build", "load"]
