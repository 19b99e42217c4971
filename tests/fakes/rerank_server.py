"""A fake rerank endpoint: real HTTP on 127.0.0.1, the de-facto rerank wire protocol.

``POST /rerank``, ``/v1/rerank`` or ``/v2/rerank`` with ``{model, query, documents, top_n}``
answers ``{model, results: [{index, relevance_score}], usage: {total_tokens}}``, best first
(the shape of Jina, Infinity, vLLM and Cohere v2). A document's score is the share of the
query's words (lowercased ``\\w+`` runs, and the character bigrams of Hangul words) it
contains; ``total_tokens`` counts the query's and the documents' words. Deterministic, so a
test knows the order the service must return.

Tests get the ``fake_rerank`` fixture (``tests/conftest.py`` loads this module)::

    fake_rerank.fail_next(status=503)          # scripted: the next request fails
    fake_rerank.delay_next(2.0)                # or answers late
    fake_rerank.requests[-1]["body"]["documents"]
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

_WORD = re.compile(r"\w+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]{2,}")
API_KEY = "rk-test"


def features(text: str) -> set[str]:
    """The words of ``text`` (lowercased) and the character bigrams of its Hangul words."""
    words = {w.lower() for w in _WORD.findall(text)}
    for word in _HANGUL.findall(text):
        words.update(word[i : i + 2] for i in range(len(word) - 1))
    return words


def score(query: str, document: str) -> float:
    """The share of the query's features the document has (0..1)."""
    asked = features(query)
    return len(asked & features(document)) / len(asked) if asked else 0.0


class FakeRerank:
    """The fake endpoint; its public attributes are the knobs tests turn and read."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._scripts: deque[tuple[int, float]] = deque()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload = fake._answer(self.path, dict(self.headers), raw)
                data = orjson.dumps(payload)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def reset(self) -> None:
        """No requests, no scripts."""
        self.requests.clear()
        self._scripts.clear()

    def fail_next(self, *, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and an error body."""
        self._scripts.extend((status, 0.0) for _ in range(times))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` requests."""
        self._scripts.extend((0, seconds) for _ in range(times))

    def __enter__(self) -> FakeRerank:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        self.requests.append({"path": path, "authorization": auth, "body": body})
        if path.rstrip("/") not in ("/rerank", "/v1/rerank", "/v2/rerank"):
            return 404, {"error": {"message": f"no route {path}"}}
        if auth != f"Bearer {API_KEY}":
            return 401, {"error": {"message": "invalid api key"}}
        status, delay = self._scripts.popleft() if self._scripts else (0, 0.0)
        if delay:
            time.sleep(delay)
        if status:
            return status, {"error": {"message": f"scripted {status}"}}
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("query"), str)
            or not isinstance(body.get("documents"), list)
        ):
            return 422, {"error": {"message": "'query' and 'documents' are required"}}
        query, documents = body["query"], [str(d) for d in body["documents"]]
        scored = sorted(
            ({"index": i, "relevance_score": score(query, d)} for i, d in enumerate(documents)),
            key=lambda r: -float(r["relevance_score"]),
        )
        top_n = body.get("top_n") or len(documents)
        words = len(_WORD.findall(query)) + sum(len(_WORD.findall(d)) for d in documents)
        return 200, {
            "model": body.get("model"),
            "results": scored[:top_n],
            "usage": {"total_tokens": words},
        }


@pytest.fixture(scope="session")
def _fake_rerank_session() -> Iterator[FakeRerank]:
    with FakeRerank() as fake:
        yield fake


@pytest.fixture
def fake_rerank(_fake_rerank_session: FakeRerank) -> Iterator[FakeRerank]:
    """The session's fake rerank endpoint, reset before and after the test."""
    _fake_rerank_session.reset()
    yield _fake_rerank_session
    _fake_rerank_session.reset()


def main() -> None:
    """Serve standalone until killed: prints ``READY <base_url>`` (for the benchmarks)."""
    import argparse
    import contextlib

    argparse.ArgumentParser(description="Fake rerank endpoint.").parse_args()
    with FakeRerank() as fake:
        print(f"READY {fake.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
