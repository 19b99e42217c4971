"""A fake LangSmith endpoint on 127.0.0.1 that keeps every request body it receives.

The real ``langsmith`` client (used by LangChain's tracer and by the relay's RunTrees)
posts to it over HTTP; tests then look for the run metadata in what arrived.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLangSmith:
    """``with FakeLangSmith() as ls: ls.url ... ls.bodies``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if body:
                    received.append(body)
                payload = (
                    b'{"version": "0.10", "batch_ingest_config": {}}'
                    if self.path.endswith("/info")
                    else b"{}"
                )
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLangSmith:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()

    def seen(self, needle: str) -> bool:
        """Whether any received body contains ``needle``."""
        data = needle.encode()
        return any(data in body for body in self.bodies)
