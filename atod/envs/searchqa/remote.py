"""Search-QA against a real retriever: a Search-R1 style HTTP retrieval server, and FlashRAG question
files (the format of Search-R1's NQ/HotpotQA/... data).

    retriever = HttpRetriever("http://127.0.0.1:8000/retrieve")
    env = make_remote_env("http://127.0.0.1:8000/retrieve")      # a SearchQAEnv over HTTP
    tasks = load_flashrag_jsonl("nq_test.jsonl", split="test_in_domain")

The server may be Search-R1's own `retrieval_server.py` (E5 or BM25 over Wikipedia) or
`python -m atod.envs.searchqa.serve_retriever --corpus corpus.jsonl`. The protocol:
`POST /retrieve` `{"queries": [...], "topk": k, "return_scores": true}` ->
`{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests

from atod.envs.base import Task
from atod.envs.searchqa.env import BENCHMARK, SearchQAEnv
from atod.envs.searchqa.protocol import INVALID_FEEDBACK
from atod.envs.searchqa.retrieval import Hit

SPLITS = ("train", "test_in_domain", "test_out_of_domain")


class RetrieverError(RuntimeError):
    """The retrieval server answered with an error or with something that is not the protocol."""


class RetrieverUnavailableError(RetrieverError):
    """The retrieval server could not be reached (not started, wrong address, or too slow)."""


def _endpoint(url: str) -> str:
    """Accept the full endpoint (`http://host:port/retrieve`) or the server's base address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"retriever url must look like http://127.0.0.1:8000/retrieve, got {url!r}")
    return url if parts.path.rstrip("/").endswith("/retrieve") else url.rstrip("/") + "/retrieve"


class HttpRetriever:
    """`Retriever` over HTTP. Retries connection failures `retries` times, then raises
    `RetrieverUnavailableError` naming the address and how to start a server."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, retries: int = 2) -> None:
        self.url = _endpoint(url)
        self.timeout_s = timeout_s
        self.retries = retries
        self._session = requests.Session()

    def batch_search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        payload = {"queries": list(queries), "topk": topk, "return_scores": True}
        response = None
        for attempt in range(self.retries + 1):
            try:
                response = self._session.post(self.url, json=payload, timeout=self.timeout_s)
                break
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt == self.retries:
                    raise RetrieverUnavailableError(
                        f"retrieval server unreachable at {self.url} ({type(e).__name__}: {e}); "
                        "start one with `python -m atod.envs.searchqa.serve_retriever --corpus corpus.jsonl "
                        "--port PORT` or Search-R1's retrieval_server.py"
                    ) from e
        assert response is not None
        if response.status_code != 200:
            raise RetrieverError(
                f"retrieval server {self.url} answered HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            results = response.json()["result"]
            if len(results) != len(queries):
                raise ValueError(f"{len(results)} result lists for {len(queries)} queries")
            return [[Hit.from_json(item) for item in hits] for hits in results]
        except (ValueError, KeyError, TypeError) as e:
            raise RetrieverError(
                f"retrieval server {self.url} answered outside the Search-R1 protocol "
                f"({e}): {response.text[:300]}"
            ) from e

    def ping(self) -> None:
        """One tiny query; raises `RetrieverUnavailableError`/`RetrieverError` if the server is not usable."""
        self.batch_search(["test"], 1)

    def close(self) -> None:
        self._session.close()


def make_remote_env(
    url: str, *, max_turns: int = 4, topk: int = 3, timeout_s: float = 10.0, distractors: Sequence[str] = ()
) -> SearchQAEnv:
    """A Search-QA env whose searches go to the HTTP retrieval server at `url`."""
    return SearchQAEnv(
        HttpRetriever(url, timeout_s=timeout_s), max_turns=max_turns, topk=topk, distractors=distractors
    )


def _question_text(question: str) -> str:
    """Search-R1's preprocessing: strip, and end with a question mark."""
    question = question.strip()
    return question if question.endswith("?") else question + "?"


def load_flashrag_jsonl(path: str | Path, split: str, *, limit: int | None = None) -> list[Task]:
    """Tasks from a FlashRAG question file (`{"id", "question", "golden_answers": [...]}` a line).

    The goal is the question (stripped, ending with "?"); `payload["golden_answers"]` the gold list.
    Entries of a dict `metadata` field are kept in the payload (the embedded benchmark stores its
    expert plan there, see `write_flashrag_jsonl`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FlashRAG question file not found: {path}")
    tasks: list[Task] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                question, golden = obj["question"], obj["golden_answers"]
                if isinstance(golden, str):
                    golden = [golden]
                if not isinstance(question, str) or not question.strip() or not golden:
                    raise ValueError("empty question or golden_answers")
                task_id = str(obj.get("id", f"{path.stem}-{line_no}"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(
                    f"{path}:{line_no}: not a FlashRAG question line "
                    f'{{"id", "question", "golden_answers"}}: {e}'
                ) from e
            metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            payload = {**metadata, "golden_answers": [str(g) for g in golden]}
            tasks.append(Task(BENCHMARK, split, task_id, _question_text(question), payload))
            if limit is not None and len(tasks) >= limit:
                break
    return tasks


def write_flashrag_jsonl(tasks: Iterable[Task], path: str | Path) -> None:
    """Write tasks as a FlashRAG question file; the rest of each payload goes to `metadata`."""
    with Path(path).open("w", encoding="utf-8") as f:
        for task in tasks:
            metadata = {k: v for k, v in task.payload.items() if k != "golden_answers"}
            row = {
                "id": task.task_id,
                "question": task.goal,
                "golden_answers": list(task.payload["golden_answers"]),
                "metadata": metadata,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


class RemoteSearchQABenchmark:
    """A Search-QA benchmark over question files and an HTTP retriever (same protocol and splits as the
    embedded one). `save(directory)` writes the tasks as FlashRAG files `<split>.jsonl` plus meta.json."""

    name = BENCHMARK
    splits = SPLITS

    def __init__(
        self,
        url: str,
        tasks: dict[str, list[Task]],
        *,
        max_turns: int = 4,
        topk: int = 3,
        timeout_s: float = 10.0,
    ) -> None:
        missing = [s for s in SPLITS if s not in tasks]
        if missing:
            raise ValueError(f"remote Search-QA benchmark lacks splits {missing}")
        self.url = _endpoint(url)
        self._tasks = tasks
        self.max_turns = max_turns
        self.topk = topk
        self.timeout_s = timeout_s

    @classmethod
    def from_files(cls, url: str, question_files: dict[str, str | Path], **kwargs) -> RemoteSearchQABenchmark:
        """`question_files` maps each split to a FlashRAG jsonl file."""
        return cls(
            url, {split: load_flashrag_jsonl(p, split) for split, p in question_files.items()}, **kwargs
        )

    def tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            raise KeyError(f"unknown Search-QA split {split!r}; splits: {', '.join(SPLITS)}")
        return list(self._tasks[split])

    def make_env(self) -> SearchQAEnv:
        # the noisy expert's wrong answers come from the TRAIN questions' gold answers only: its
        # demonstrations (SFT data) must not carry an evaluation split's answers
        distractors = sorted({g for t in self._tasks["train"] for g in t.payload["golden_answers"]})
        return make_remote_env(
            self.url,
            max_turns=self.max_turns,
            topk=self.topk,
            timeout_s=self.timeout_s,
            distractors=distractors,
        )

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "url": self.url,
            "max_turns": self.max_turns,
            "topk": self.topk,
            "splits": list(SPLITS),
            "remote": True,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for split in SPLITS:
            write_flashrag_jsonl(self._tasks[split], directory / f"{split}.jsonl")

    @classmethod
    def load(cls, directory: Path, *, url: str | None = None) -> RemoteSearchQABenchmark:
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        return cls.from_files(
            url or meta["url"],
            {s: directory / f"{s}.jsonl" for s in SPLITS},
            max_turns=int(meta["max_turns"]),
            topk=int(meta["topk"]),
        )

    def copy_terms(self) -> list[str]:
        """None known: the corpus is the server's (a real retriever serves real names, which a
        pretrained tokenizer already handles)."""
        return []

    def corpus_texts(self) -> list[str]:
        """Questions, gold answers, the feedback text and a few expert episodes per split (queries the
        server)."""
        texts = [INVALID_FEEDBACK]
        env = self.make_env()
        rng = random.Random(0)
        for split in SPLITS:
            for i, task in enumerate(self._tasks[split]):
                texts += [task.goal, *task.payload["golden_answers"]]
                if i < 5:
                    result = env.reset(task)
                    while not result.done:
                        action = env.expert_action(rng)
                        result = env.step(action)
                        texts += [action, result.observation]
        return [t for t in texts if t]
