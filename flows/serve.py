"""`atod up`: a local Prefect server and MLflow UI on 127.0.0.1, plus the two deployments, served.

    up(prefect_port=4200, mlflow_port=5000, serve=True)
        starts `prefect server start --host 127.0.0.1 --port P` and `mlflow server --host 127.0.0.1
        --port M --backend-store-uri sqlite:///<root>/mlflow.db` as child processes, waits until both
        answer their health endpoints, prints their addresses, then serves
          atod-pipeline/nightly   pipeline_flow, cron "0 2 * * *" (02:00 every night), profile from params.yaml
          atod-ablation/manual    ablation_flow, no schedule (start it from the UI with its parameters)
        until Ctrl-C or SIGTERM, which stop the deployments and both servers (their whole process groups).

Everything binds 127.0.0.1 only. The building blocks (`free_port`, `prefect_server`, `mlflow_server`,
`serve_deployments`) are what the tests use to run a deployment against a server of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

HOST = "127.0.0.1"
PIPELINE_CRON = "0 2 * * *"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((HOST, port)) == 0


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float, what: str, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; fail early (with the log's tail) if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.is_file() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} before answering {url}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer {url} within {timeout_s:.0f} s" +
                       (f"; see {log}" if log else ""))


def stop_process(proc: subprocess.Popen, name: str, timeout_s: float = 15.0) -> None:
    """SIGTERM the child's process group (it was started in its own session), SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within {timeout_s:.0f} s; killing it", file=sys.stderr)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@contextmanager
def _child(cmd: list[str], name: str, log: Path, env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process(proc, name)


@contextmanager
def prefect_server(root: Path, port: int, timeout_s: float = 120.0) -> Iterator[str]:
    """A `prefect server start` on 127.0.0.1:port; yields its API URL; stops it on exit."""
    if _port_in_use(port):
        raise RuntimeError(f"port {port} on {HOST} is already in use; pass another --prefect-port")
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update({"PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(port),
                "PREFECT_UI_API_URL": f"http://{HOST}:{port}/api"})
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", HOST, "--port", str(port)]
    log = root / ".atod" / "logs" / f"prefect-server-{port}.log"
    with _child(cmd, "prefect server", log, env, root) as proc:
        api = f"http://{HOST}:{port}/api"
        wait_http(f"{api}/health", proc, timeout_s, "prefect server", log)
        yield api


@contextmanager
def mlflow_server(root: Path, port: int, timeout_s: float = 120.0) -> Iterator[str]:
    """An MLflow tracking server + UI on 127.0.0.1:port over <root>/mlflow.db; yields its URL."""
    if _port_in_use(port):
        raise RuntimeError(f"port {port} on {HOST} is already in use; pass another --mlflow-port")
    uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    if not uri.startswith("sqlite:"):
        uri = f"sqlite:///{root / 'mlflow.db'}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", HOST, "--port", str(port),
           "--backend-store-uri", uri, "--default-artifact-root", (root / "mlartifacts").resolve().as_uri(),
           "--workers", "1"]
    log = root / ".atod" / "logs" / f"mlflow-server-{port}.log"
    with _child(cmd, "mlflow server", log, dict(os.environ), root) as proc:
        url = f"http://{HOST}:{port}"
        wait_http(f"{url}/health", proc, timeout_s, "mlflow server", log)
        yield url


def deployments(pipeline_cron: str | None = PIPELINE_CRON, suffix: str = "") -> list:
    """The two deployments: the pipeline (nightly) and the ablation (manual, parameters in the UI)."""
    from flows.ablation import ablation_flow
    from flows.pipeline import pipeline_flow

    return [
        pipeline_flow.to_deployment(name=f"nightly{suffix}", cron=pipeline_cron,
                                    description="The whole pipeline through DVC (profile from params.yaml).",
                                    tags=["atod"]),
        ablation_flow.to_deployment(name=f"manual{suffix}", tags=["atod", "ablation"],
                                    description="One `dvc exp run` per method, one MLflow experiment."),
    ]


def serve_deployments(pipeline_cron: str | None = PIPELINE_CRON, suffix: str = "") -> None:
    """Serve both deployments from this process until interrupted (blocks)."""
    from prefect import serve

    serve(*deployments(pipeline_cron, suffix), print_starting_message=True)


def up(prefect_port: int = 4200, mlflow_port: int = 5000, serve: bool = True) -> None:
    """Start both servers, print where they are, serve the deployments; Ctrl-C / SIGTERM stops all."""
    from atod.project_env import configure_environment

    root = configure_environment()
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

    def on_sigterm(signum, frame):  # turn SIGTERM into the same clean shutdown as Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with ExitStack() as stack:
            print(f"starting prefect server on {HOST}:{prefect_port} and mlflow on {HOST}:{mlflow_port} ...",
                  flush=True)
            t0 = time.monotonic()
            api = stack.enter_context(prefect_server(root, prefect_port))
            os.environ["PREFECT_API_URL"] = api
            mlflow_url = stack.enter_context(mlflow_server(root, mlflow_port))
            print(f"Prefect UI:  http://{HOST}:{prefect_port}   (API {api})", flush=True)
            print(f"MLflow UI:   {mlflow_url}", flush=True)
            print(f"ready in {time.monotonic() - t0:.0f} s; Ctrl-C stops everything", flush=True)
            if serve:
                print(f"serving deployments: atod-pipeline/nightly (cron '{PIPELINE_CRON}'), atod-ablation/manual",
                      flush=True)
                serve_deployments()
            else:
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)


if __name__ == "__main__":
    # `python -m flows.serve --deployments-only` serves the deployments against $PREFECT_API_URL
    # (used by tests, which run their own server).
    from atod.project_env import configure_environment

    configure_environment()
    if "--deployments-only" in sys.argv:
        cron = None if "--no-schedule" in sys.argv else PIPELINE_CRON
        serve_deployments(cron, suffix=os.environ.get("ATOD_DEPLOYMENT_SUFFIX", ""))
    else:
        up()
