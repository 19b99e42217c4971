"""Run an ASGI app on a real socket (127.0.0.1, free port) in a background thread.

Real HTTP is what the openai SDK, ChatOpenAI and RemoteRunnable speak, and it is the
only way to observe streaming and client disconnects as production sees them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class LiveServer:
    """``with LiveServer(app) as server: server.url``."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", loop="asyncio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        # sse-starlette (LangServe's SSE) keeps a process-wide exit event bound to the first
        # event loop that used it; each live server runs its own loop (the library's
        # documented test workaround is to reset it).
        from sse_starlette.sse import AppStatus

        AppStatus.should_exit_event = None
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the service failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not start within 60 s")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
