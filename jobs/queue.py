"""The job interface every background task goes through."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

Handler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
"""A task's body: gets the JSON payload it was enqueued with."""

Abandon = Callable[[dict[str, Any], str], Coroutine[Any, Any, None]]
"""What a task's owner does when the queue gives up on a job (payload, why): record it as
failed where users look (the document, the evaluation), so it never stays "processing"."""

JobState = Literal["queued", "running", "done", "failed", "cancelled", "unknown"]


class JobQueue(Protocol):
    """Runs named tasks in the background, fairly between organizations.

    Tasks keep their own durable state (a document's ``status``, an evaluation's row), so a
    queue may lose nothing but its place in line: on start-up, the owners re-enqueue what
    was accepted and not finished.
    """

    def register(self, task: str, handler: Handler, abandon: Abandon | None = None) -> None:
        """Make ``task`` runnable; handlers are registered before :meth:`start`.

        ``abandon`` runs when the queue gives up on a job whose workers keep dying in it
        (a poison job: each delivery kills the process, so the handler cannot record it).
        """
        ...

    async def enqueue(
        self, task: str, payload: dict[str, Any], *, org_id: str, job_id: str
    ) -> None:
        """Queue one run of ``task`` for ``org_id`` (``job_id`` names it for cancel/wait)."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """Drop a queued job or stop a running one; False when it is unknown or finished."""
        ...

    async def wait(self, job_id: str, seconds: float) -> JobState:
        """Wait up to ``seconds`` for the job to finish; its state then."""
        ...

    async def start(self) -> None:
        """Start taking jobs."""
        ...

    async def aclose(self) -> None:
        """Stop: running jobs are cancelled (their owners re-enqueue them on the next start)."""
        ...
