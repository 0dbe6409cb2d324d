"""ALFWorld, generated offline: household rooms, the six ALFWorld task types, the alfworld 0.4.x text engine,
a scripted expert, and an adapter to the real engine (`atod.envs.alfworld.real`, needs `atod[alfworld]`).

    bench = build(AlfworldConfig(), seed=0)
    env = bench.make_env()
    result = env.reset(bench.tasks("train")[0])
    result = env.step(env.expert_action(random.Random(0)))
"""

from atod.envs.alfworld.benchmark import AlfworldBenchmark, build, load
from atod.envs.alfworld.config import AlfworldConfig
from atod.envs.alfworld.engine import AlfworldEnv

__all__ = ["AlfworldBenchmark", "AlfworldConfig", "AlfworldEnv", "build", "load"]
