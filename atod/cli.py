"""The `atod` command line.

    atod config show|validate        the resolved, validated params.yaml of a profile
    atod envs play|show              run the generated benchmarks with the scripted expert or at random
    atod bench envs|rollout|train-step   speed benchmarks that print numbers (--json for one object)
    atod stage NAME                  run one pipeline stage (what dvc.yaml calls)
    atod pipeline                    run the whole pipeline as a Prefect flow
    atod up                          start the Prefect server + MLflow UI on 127.0.0.1 and serve deployments

Heavy imports (torch, prefect, mlflow) happen inside the commands, so `atod --help` is instant.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from atod.project_env import configure_environment

app = typer.Typer(
    help="ATOD: annealed turn-aware on-policy distillation for multi-turn LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or validate params.yaml.", no_args_is_help=True)
envs_app = typer.Typer(help="Play the embedded benchmarks with the scripted expert or a random policy.",
                       no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks (print numbers; --json for one JSON object).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(envs_app, name="envs")
app.add_typer(bench_app, name="bench")


class BenchName(str, Enum):
    alfworld = "alfworld"
    webshop = "webshop"
    searchqa = "searchqa"


class Policy(str, Enum):
    expert = "expert"
    random = "random"


class ProfileName(str, Enum):
    smoke = "smoke"
    default = "default"
    gpu = "gpu"


class StageName(str, Enum):
    prepare = "prepare"
    sft_teacher = "sft_teacher"
    sft_student = "sft_student"
    cache_teacher = "cache_teacher"
    train = "train"
    evaluate = "evaluate"
    compare = "compare"


ParamsOpt = Annotated[Path, typer.Option("--params", help="path to params.yaml")]
ProfileOpt = Annotated[ProfileName | None, typer.Option("--profile", "-p",
                                                        help="size profile (default: params.yaml's `profile`)")]
BenchProfileOpt = Annotated[ProfileName, typer.Option("--profile", "-p", help="size profile")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _params(path: Path, profile: ProfileName | None):
    from atod.config import ConfigError, load_params

    try:
        return load_params(path, profile=profile.value if profile else None)
    except ConfigError as e:
        _fail(str(e))


@app.callback()
def _main() -> None:
    configure_environment()


# ---------------------------------------------------------------- config
@config_app.command("show")
def config_show(params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Print the resolved config of a profile (after profile overrides and validation)."""
    p = _params(params, profile)
    if as_json:
        print(json.dumps(p.model_dump(mode="json"), indent=2))
    else:
        import yaml

        print(yaml.safe_dump(p.model_dump(mode="json"), sort_keys=False), end="")


@config_app.command("validate")
def config_validate(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate every profile of params.yaml; exit 2 with the offending key paths if any is wrong, or if the
    dvc.yaml beside it does not list a key its stages read (a profile override DVC would not track)."""
    from atod.config import PROFILES

    for name in PROFILES:
        _params(params, ProfileName(name))
    root = params.resolve().parent
    if (root / "dvc.yaml").is_file() and (root / "tasks" / "params_keys.py").is_file():  # the project's own
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        from tasks.params_keys import check_dvc_params

        try:
            check_dvc_params(params.resolve())
        except ValueError as e:
            _fail(str(e))
    typer.echo(f"{params}: ok (profiles: {', '.join(PROFILES)})")


# ---------------------------------------------------------------- envs
def _benchmark(name: str, params: Path, profile: ProfileName | None, seed: int):
    from atod.envs import build_benchmark

    return build_benchmark(name, _params(params, profile).prepare, seed=seed)


@envs_app.command("play")
def envs_play(
    bench: Annotated[BenchName, typer.Argument(help="benchmark")],
    split: Annotated[str, typer.Option(help="task split (default: the benchmark's first evaluation split)")] = "",
    n: Annotated[int, typer.Option(help="episodes to play", min=1)] = 50,
    seed: Annotated[int, typer.Option(help="seed of the generated benchmark and of the policy")] = 0,
    policy: Annotated[Policy, typer.Option(help="expert (scripted) or random (uniform over admissible actions)")] = Policy.expert,
    noise: Annotated[float, typer.Option(help="expert noise: probability of a random action", min=0.0, max=1.0)] = 0.0,
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Play N episodes and print success rate, mean score, mean turns and invalid rate."""
    from atod.envs import EVAL_SPLITS
    from atod.envs.play import play_episodes

    split = split or EVAL_SPLITS[bench.value][0]
    benchmark = _benchmark(bench.value, params, profile, seed)
    if split not in benchmark.splits:
        _fail(f"unknown split {split!r} for {bench.value}; choose one of {', '.join(benchmark.splits)}")
    stats = play_episodes(benchmark, split, n=n, seed=seed, noise=1.0 if policy is Policy.random else noise,
                          progress=not as_json)
    summary = {k: stats[k] for k in ("success_rate", "mean_score", "mean_turns", "invalid_rate", "episodes")}
    if as_json:
        print(json.dumps(summary))
    else:
        typer.echo(f"{bench.value}/{split} policy={policy.value} episodes={summary['episodes']}")
        for k in ("success_rate", "mean_score", "mean_turns", "invalid_rate"):
            typer.echo(f"  {k:13s} {summary[k]:.3f}")


@envs_app.command("show")
def envs_show(
    bench: Annotated[BenchName, typer.Argument(help="benchmark")],
    seed: Annotated[int, typer.Option(help="seed of the generated benchmark")] = 0,
    split: Annotated[str, typer.Option(help="task split")] = "train",
    index: Annotated[int, typer.Option(help="task index within the split", min=0)] = 0,
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
) -> None:
    """Print one expert episode's transcript."""
    from atod.envs.play import expert_transcript

    benchmark = _benchmark(bench.value, params, profile, seed)
    if split not in benchmark.splits:
        _fail(f"unknown split {split!r} for {bench.value}; choose one of {', '.join(benchmark.splits)}")
    tasks = benchmark.tasks(split)
    if index >= len(tasks):
        _fail(f"{bench.value}/{split} has {len(tasks)} tasks; --index must be below that")
    print(expert_transcript(benchmark, tasks[index], seed=seed))


# ---------------------------------------------------------------- bench
@bench_app.command("envs")
def bench_envs(
    seconds: Annotated[float, typer.Option(help="time budget per benchmark", min=0.1)] = 3.0,
    params: ParamsOpt = Path("params.yaml"),
    profile: BenchProfileOpt = ProfileName.smoke,
    as_json: JsonOpt = False,
) -> None:
    """Environment steps per second (scripted expert, one core) for each benchmark."""
    from atod.envs import BENCHMARKS
    from atod.envs.play import steps_per_second

    out = {}
    for name in BENCHMARKS:
        out[name] = steps_per_second(_benchmark(name, params, profile, 0), seconds=seconds)
    if as_json:
        print(json.dumps(out))
    else:
        for name, r in out.items():
            typer.echo(f"{name:9s} {r['steps_per_s']:10.0f} steps/s  ({r['steps']} steps, {r['episodes']} episodes)")


@bench_app.command("rollout")
def bench_rollout(
    params: ParamsOpt = Path("params.yaml"),
    profile: BenchProfileOpt = ProfileName.default,
    as_json: JsonOpt = False,
    repeats: Annotated[int, typer.Option(min=1, help="timed runs per variant; the median is reported")] = 3,
) -> None:
    """Batched rollout throughput at 1/16/64 parallel environments vs the naive one-at-a-time loop."""
    from atod.agent.bench import run_rollout_benchmark

    result = run_rollout_benchmark(_params(params, profile), repeats=repeats, progress=not as_json)
    print(json.dumps(result, indent=None if as_json else 2))


@bench_app.command("train-step")
def bench_train_step(
    params: ParamsOpt = Path("params.yaml"),
    profile: BenchProfileOpt = ProfileName.default,
    as_json: JsonOpt = False,
) -> None:
    """Time one full training step (rollout, teacher scoring, update) next to TRL's GKD trainer."""
    from atod.train.bench import run_train_step_benchmark

    result = run_train_step_benchmark(_params(params, profile))
    print(json.dumps(result, indent=None if as_json else 2))


# ---------------------------------------------------------------- pipeline
def _project_imports() -> None:
    """`tasks` and `flows` live at the project root (not installed): make them importable."""
    from atod.project_env import find_project_root

    root = find_project_root()
    if not (root / "tasks").is_dir():
        _fail(f"run this from the atod project (no tasks/ under {root})")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


@app.command("stage")
def stage(
    name: Annotated[StageName, typer.Argument(help="pipeline stage")],
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
) -> None:
    """Run one pipeline stage (the same code DVC and Prefect call), logging to MLflow."""
    _params(params, profile)  # refuse bad params before any import or compute
    _project_imports()
    from tasks.stages import run_stage
    from tasks.tracking import tracking_on

    try:
        tracking_on()  # ATOD_TRACKING: on or off
    except ValueError as e:
        _fail(str(e))

    run_stage(name.value, params_path=params, profile=profile.value if profile else None)


@app.command("pipeline")
def pipeline(
    profile: ProfileOpt = None,
    parallel_evaluate: Annotated[bool, typer.Option(
        help="evaluate the benchmarks as concurrent Prefect tasks, then `dvc commit` (flows/evaluate.py)")] = False,
) -> None:
    """Run the whole pipeline as a Prefect flow (each stage through DVC, so outputs stay versioned) with the
    project's params.yaml, the file DVC reads; --profile sets its `profile` key."""
    _params(configure_environment() / "params.yaml", profile)
    _project_imports()
    from flows.pipeline import pipeline_flow

    pipeline_flow(profile=profile.value if profile else None, parallel_evaluate=parallel_evaluate)


@app.command("up")
def up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow UI port")] = 5000,
    serve: Annotated[bool, typer.Option(help="also serve the pipeline and ablation deployments")] = True,
) -> None:
    """Start a local Prefect server and the MLflow UI on 127.0.0.1, print their addresses, serve the
    deployments; Ctrl-C stops everything cleanly."""
    _project_imports()
    from flows.serve import up as run_up

    run_up(prefect_port=prefect_port, mlflow_port=mlflow_port, serve=serve)


if __name__ == "__main__":
    app()
