"""Logging set-up (structured JSON logs with request ids come with the accounting work)."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    """Configure the root logger once; quiet chatty libraries."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        root.setLevel(level)
    for name in ("httpx", "httpx2", "httpcore", "chromadb"):
        logging.getLogger(name).setLevel(logging.WARNING)
