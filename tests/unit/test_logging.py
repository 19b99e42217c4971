"""Tokens in playground links never reach the access log."""

from __future__ import annotations

import logging

from core.logging import RedactTokens


def test_token_is_redacted_from_access_log_args() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/runnables/chat/playground/?token=eyJabc.def.ghi&x=1", "1.1", 303),
        None,
    )
    RedactTokens().filter(record)
    message = record.getMessage()
    assert "eyJabc" not in message
    assert "?token=[redacted]&x=1" in message
