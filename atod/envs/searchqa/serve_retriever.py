"""A BM25 retrieval server speaking Search-R1's protocol (search_r1/search/retrieval_server.py).

    python -m atod.envs.searchqa.serve_retriever --corpus corpus.jsonl --port 8000

`POST /retrieve` with `{"queries": [...], "topk": 3, "return_scores": true}` answers
`{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}` (one list per query; without
`return_scores`, the lists hold the documents alone). `GET /health` answers `{"status": "ok", ...}`.
The corpus is FlashRAG/Search-R1 jsonl (`{"id", "contents": "\\"Title\\"\\ntext"}` a line): the
embedded benchmark's `corpus.jsonl` or any other. Standard library http.server + bm25s; binds
127.0.0.1 by default; `--port 0` picks a free port (printed on the first line of stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from atod.envs.searchqa.retrieval import BM25Index, read_corpus_jsonl

MAX_BODY_BYTES = 10 * 1024 * 1024


class RetrievalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], index: BM25Index, default_topk: int, verbose: bool = False
    ) -> None:
        self.index = index
        self.default_topk = default_topk
        self.verbose = verbose
        self.lock = threading.Lock()  # the index's query cache is a plain dict
        super().__init__(address, _Handler)

    def retrieve(self, request: Any) -> dict[str, Any]:
        """The response to one `/retrieve` request body (raises ValueError on a malformed one)."""
        if not isinstance(request, dict):
            raise ValueError("request body must be a JSON object")  # noqa: TRY004 (answered as HTTP 400)
        queries = request.get("queries")
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            raise ValueError('"queries" must be a list of strings')
        topk = request.get("topk") or self.default_topk
        if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
            raise ValueError('"topk" must be a positive integer')
        return_scores = bool(request.get("return_scores", False))
        with self.lock:
            results = self.index.batch_search(queries, topk)
        if return_scores:
            return {"result": [[hit.to_json() for hit in hits] for hits in results]}
        return {"result": [[hit.to_json()["document"] for hit in hits] for hits in results]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per client session
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: RetrievalServer

    def _send_json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("", "/health"):
            self._send_json(200, {"status": "ok", "passages": len(self.server.index)})
        else:
            self._send_json(404, {"error": f"unknown path {self.path}; use POST /retrieve"})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/retrieve":
            self._send_json(404, {"error": f"unknown path {self.path}; use POST /retrieve"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send_json(413, {"error": f"request body over {MAX_BODY_BYTES} bytes"})
            self.close_connection = True
            return
        try:
            request = json.loads(self.rfile.read(length) or b"null")
            response = self.server.retrieve(request)
        except (ValueError, UnicodeDecodeError) as e:
            self._send_json(400, {"error": str(e)})
            return
        self._send_json(200, response)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(
    corpus_path: str, host: str = "127.0.0.1", port: int = 0, topk: int = 3, verbose: bool = False
) -> RetrievalServer:
    """Index the corpus and bind the server (not yet serving: call `serve_forever()`)."""
    index = BM25Index(read_corpus_jsonl(corpus_path))
    return RetrievalServer((host, port), index, topk, verbose)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help='jsonl corpus, one {"id", "contents"} a line')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--topk", type=int, default=3, help="passages per query when a request gives no topk")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.corpus, args.host, args.port, args.topk, args.verbose)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"serve_retriever: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    host, port = server.server_address[:2]
    print(f"serving {len(server.index)} passages on http://{host}:{port}/retrieve", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
