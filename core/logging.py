"""Structured logging: one JSON object per line, with the request id and caller of the request.

Log lines name the org and user (ids from the verified token), never the token itself,
a key or a document's text: messages that could carry them are not written (tested in
``tests/api/test_log_fields.py``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from core.request_id import current_caller, current_request_id

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"]+")


class RedactTokens(logging.Filter):
    """Keep playground links' JWTs (``?token=...``) out of access logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", "org_id", "user_id", ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as JSON."""
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := current_request_id()) is not None:
            entry["request_id"] = rid
        if (caller := current_caller()) is not None and caller.org_id is not None:
            entry["org_id"] = caller.org_id
            entry["user_id"] = caller.user_id
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, *, json_logs: bool = True) -> None:
    """Configure the root logger (JSON lines by default); quiet chatty libraries."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_ahc", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._ahc = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(
        JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.setLevel(level)
    # aiosqlite too, even at DEBUG: it logs every statement with its parameters (document
    # text, prompts, messages).
    for name in ("httpx", "httpx2", "httpcore", "chromadb", "aiosqlite"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers print plain text: route its records through ours.
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
