"""Search-QA through the real protocol: `serve_retriever` in a subprocess on 127.0.0.1, the HTTP env
against it (identical to the in-process env), FlashRAG question files, and clear errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from atod.envs.searchqa import build
from atod.envs.searchqa.config import SearchQAConfig
from atod.envs.searchqa.remote import (
    HttpRetriever,
    RemoteSearchQABenchmark,
    RetrieverError,
    RetrieverUnavailableError,
    load_flashrag_jsonl,
    make_remote_env,
    write_flashrag_jsonl,
)

ROOT = Path(__file__).resolve().parent.parent
SMALL = SearchQAConfig(num_entities=60, train_tasks=40, test_in_domain_tasks=8, test_out_of_domain_tasks=8)


@pytest.fixture(scope="module")
def bench():
    return build(SMALL, seed=0)


@pytest.fixture(scope="module")
def server(bench, tmp_path_factory):
    """The retrieval server on a free port (--port 0; the address is its first line of stdout)."""
    directory = tmp_path_factory.mktemp("searchqa")
    bench.save(directory)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atod.envs.searchqa.serve_retriever",
            "--corpus",
            str(directory / "corpus.jsonl"),
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # blocks until the server is bound (or has died)
        if not line.startswith("serving "):
            proc.kill()
            raise RuntimeError(f"retrieval server did not start: {line!r} {proc.stderr.read()[-2000:]}")
        yield {"url": line.split()[-1], "dir": directory}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_server_speaks_the_search_r1_protocol(server, bench):
    response = requests.post(
        server["url"],
        json={"queries": [bench.kb.people[0].name + " born", "zzzz"], "topk": 3, "return_scores": True},
        timeout=10,
    ).json()
    assert list(response) == ["result"] and len(response["result"]) == 2
    first = response["result"][0]
    assert len(first) == 3 and set(first[0]) == {"document", "score"}
    assert set(first[0]["document"]) == {"id", "contents"} and first[0]["score"] > 0
    assert first[0]["document"]["contents"].startswith(f'"{bench.kb.people[0].name}"')
    assert response["result"][1] == []
    no_scores = requests.post(
        server["url"], json={"queries": ["x " + bench.kb.cities[0].name]}, timeout=10
    ).json()
    assert set(no_scores["result"][0][0]) == {"id", "contents"}  # documents only, default topk
    health = requests.get(server["url"].replace("/retrieve", "/health"), timeout=10).json()
    assert health == {"status": "ok", "passages": len(bench.kb.passages)}


def test_server_rejects_malformed_requests(server):
    bad = requests.post(server["url"], data=b"not json", timeout=10)
    assert bad.status_code == 400 and "error" in bad.json()
    assert requests.post(server["url"], json={"queries": "one string"}, timeout=10).status_code == 400
    assert requests.post(server["url"], json={"queries": ["a"], "topk": -1}, timeout=10).status_code == 400
    assert requests.post(server["url"].replace("/retrieve", "/other"), json={}, timeout=10).status_code == 404


def test_remote_env_equals_the_in_process_env(server, bench):
    remote = make_remote_env(
        server["url"], max_turns=bench.max_turns, topk=bench.topk, distractors=bench.distractors
    )
    local = bench.make_env()
    steps = 0
    for split in bench.splits:
        for i, task in enumerate(bench.tasks(split)[:10]):
            noise = 0.0 if i % 2 == 0 else 0.4
            rng_remote, rng_local = random.Random(i), random.Random(i)
            a, b = remote.reset(task), local.reset(task)
            assert a == b
            while not b.done:
                action = local.expert_action(rng_local, noise)
                assert remote.expert_action(rng_remote, noise) == action
                a, b = remote.step(action), local.step(action)
                assert a == b
                steps += 1
            assert b.info.won or noise > 0
    # Malformed output behaves the same too.
    task = bench.tasks("train")[0]
    remote.reset(task), local.reset(task)
    for action in (None, "<search></search>", "<search>the</search>", "<answer>x</answer>"):
        assert remote.step(action) == local.step(action)
    assert steps > 20


def test_flashrag_files_round_trip(server, bench, tmp_path):
    for split in bench.splits:
        write_flashrag_jsonl(bench.tasks(split), tmp_path / f"{split}.jsonl")
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert {"id", "question", "golden_answers"} <= set(first)
    remote = RemoteSearchQABenchmark.from_files(
        server["url"], {s: tmp_path / f"{s}.jsonl" for s in bench.splits}
    )
    for split in bench.splits:
        assert remote.tasks(split) == bench.tasks(split)
        assert [t.payload for t in remote.tasks(split)] == [t.payload for t in bench.tasks(split)]
    env = remote.make_env()
    # the noisy expert's wrong answers (its SFT demonstrations) carry no evaluation split's gold answers
    train_golds = {g for t in remote.tasks("train") for g in t.payload["golden_answers"]}
    assert set(env.distractors) == train_golds
    rng = random.Random(0)
    for task in remote.tasks("test_out_of_domain"):
        result = env.reset(task)
        while not result.done:
            result = env.step(env.expert_action(rng))
        assert result.info.won
    remote.save(tmp_path / "saved")
    assert RemoteSearchQABenchmark.load(tmp_path / "saved").tasks("train") == bench.tasks("train")


def test_flashrag_loader_on_foreign_questions(server, tmp_path):
    path = tmp_path / "nq.jsonl"
    rows = [
        {
            "id": "test_0",
            "question": "who got the first nobel prize in physics",
            "golden_answers": ["Wilhelm Conrad Röntgen"],
        },
        {"id": "test_1", "question": "Where is Paris? ", "golden_answers": "France"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    tasks = load_flashrag_jsonl(path, "test_in_domain")
    assert [t.goal for t in tasks] == ["who got the first nobel prize in physics?", "Where is Paris?"]
    assert [t.task_id for t in tasks] == ["test_0", "test_1"] and tasks[1].payload == {
        "golden_answers": ["France"]
    }
    assert len(load_flashrag_jsonl(path, "train", limit=1)) == 1
    env = make_remote_env(server["url"])  # no hops: the expert searches the question, then answers
    env.reset(tasks[0])
    assert env.expert_action(random.Random(0)) == "<search>who got the first nobel prize in physics?</search>"
    assert env.step(env.expert_action(random.Random(0))).observation.startswith("<information>")
    final = env.step(env.expert_action(random.Random(0)))
    assert final.done and final.reward == 1.0
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "question": "q"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a FlashRAG question line"):
        load_flashrag_jsonl(tmp_path / "bad.jsonl", "train")


def test_unreachable_server_is_a_clear_error():
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    retriever = HttpRetriever(f"http://127.0.0.1:{port}", timeout_s=2, retries=0)
    assert retriever.url.endswith("/retrieve")
    with pytest.raises(
        RetrieverUnavailableError, match=r"unreachable at http://127\.0\.0\.1:\d+/retrieve.*serve_retriever"
    ):
        retriever.ping()
    with pytest.raises(ValueError, match="retriever url"):
        HttpRetriever("localhost:8000")


def test_protocol_violations_are_clear_errors(server):
    with pytest.raises(RetrieverError, match="HTTP 404"):
        HttpRetriever(server["url"].replace("/retrieve", "/nothing/retrieve")).ping()


def test_server_cli_refuses_a_missing_corpus(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "atod.envs.searchqa.serve_retriever",
            "--corpus",
            str(tmp_path / "missing.jsonl"),
            "--port",
            "0",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "corpus file not found" in proc.stderr
