"""LangSmith tracing, on with the standard LangSmith environment variables, off by default.

LangChain traces the graphs and chains by itself; we add who and where to every run (org,
user, request id, route as metadata and tags). The relay does not go through LangChain, so
its calls are posted as LangSmith runs here — only when tracing is on, decided once at
start-up (asking LangSmith per call costs ~65 µs).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from langsmith import utils as ls_utils
from langsmith.run_trees import RunTree

logger = logging.getLogger(__name__)


class TracedCall(Protocol):
    """Who a call is for and where it came from (``accounting.events.CallContext``).

    A protocol, so ``core`` does not import the accounting package above it.
    """

    @property
    def org_id(self) -> str: ...  # noqa: D102
    @property
    def user_id(self) -> str: ...  # noqa: D102
    @property
    def route(self) -> str: ...  # noqa: D102
    @property
    def request_id(self) -> str | None: ...  # noqa: D102
    @property
    def thread_id(self) -> str | None: ...  # noqa: D102


def tracing_enabled() -> bool:
    """Whether the environment turns LangSmith tracing on (``LANGSMITH_TRACING=true``)."""
    return bool(ls_utils.tracing_is_enabled())


def run_metadata(context: TracedCall) -> dict[str, Any]:
    """Metadata, tags and run name for a LangChain ``RunnableConfig``."""
    metadata = {
        "org_id": context.org_id,
        "user_id": context.user_id,
        "request_id": context.request_id,
        "route": context.route,
    }
    if context.thread_id:
        metadata["thread_id"] = context.thread_id
    return {
        "metadata": metadata,
        "tags": [f"org:{context.org_id}", f"user:{context.user_id}", f"route:{context.route}"],
        "run_name": context.route,
    }


class RelayTracer:
    """Posts relayed calls to LangSmith as ``llm`` runs (a no-op when tracing is off)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def start(self, context: TracedCall, model: str, body: dict[str, Any]) -> RunTree | None:
        """Open a run for one relayed call."""
        if not self.enabled:
            return None
        try:
            meta = run_metadata(context)
            run = RunTree(
                name=context.route,
                run_type="llm",
                inputs={"messages": body.get("messages", []), "model": model},
                extra={"metadata": {**meta["metadata"], "ls_model_name": model}},
                tags=meta["tags"],
            )
            run.post()
            return run
        except Exception:  # tracing must never break a call
            logger.exception("could not start a LangSmith run")
            return None

    @staticmethod
    def end(run: RunTree | None, *, usage: dict[str, Any] | None, error: str | None) -> None:
        """Close the run with the call's usage (or its error)."""
        if run is None:
            return
        try:
            run.end(outputs={"usage": usage or {}}, error=error)
            run.patch()
        except Exception:
            logger.exception("could not end a LangSmith run")
