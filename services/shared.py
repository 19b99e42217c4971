"""The services of a process, for entry points that cannot be handed them.

LangGraph's server (``langgraph dev``, ``langgraph.json``) calls a graph factory with the
run's config only: no app, no ``request.app.state``. It mounts this service's app
(``http.app``) and runs that app's lifespan, which opens the one :class:`Services` of the
process and publishes it here for the duration; the factories (``studio.graphs``) read it.
One container, not two: a second would start a second job queue, local model and pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.container import Services

_published: list[Services] = []


@contextmanager
def published(services: Services) -> Iterator[None]:
    """Make ``services`` the process's current ones while the block runs (the app's lifespan)."""
    _published.append(services)
    try:
        yield
    finally:
        # By identity: Services is a dataclass, and == would compare every field.
        index = next(i for i, item in enumerate(_published) if item is services)
        del _published[index]


def current_services() -> Services:
    """The services the running app published (the latest app, when tests start several).

    Raises:
        RuntimeError: no app is running in this process (``langgraph.json`` lacks
            ``http.app``, or it has not started yet).
    """
    if not _published:
        raise RuntimeError(
            "the service is not running in this process: langgraph.json must mount its app "
            '("http": {"app": "./server.py:app"}), whose lifespan opens the database, '
            "accounting and knowledge base the graphs use"
        )
    return _published[-1]
