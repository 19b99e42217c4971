"""The run config of a runnable call (LangServe routes), built by the server, not the client.

The client may choose ``model``, ``temperature``, ``max_tokens`` and ``thread_id``; the
service resolves the model (and the org's own key), claims the thread for the caller,
reserves against the org's limits, and writes org, user, accounting callback and tracing
metadata last, so none of them can come from the client.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from accounting.events import CallContext
from api.schemas import THREAD_ID_PATTERN
from auth.tokens import Principal
from core.request_id import current_request_id
from core.tracing import run_metadata
from db.models import checkpoint_key
from providers.keys import org_openai_key

if TYPE_CHECKING:
    from services.container import Services


class RunnableConfigurable(BaseModel):
    """What a client may put in ``config.configurable`` of a runnable call."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    thread_id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN)


async def runnable_config(
    services: Services,
    principal: Principal,
    config: dict[str, Any],
    client: RunnableConfigurable,
    run_input: Any,
    *,
    flow: str,
    with_threads: bool,
) -> dict[str, Any]:
    """The config the runnable runs with."""
    org_key = await services.provider_keys.get(principal.org_id, "openai")
    org_openai_key.set(org_key)  # read by the registry's model factory during the run
    route = services.registry.resolve(client.model, org_key=org_key)
    configurable: dict[str, Any] = client.model_dump(exclude_none=True, exclude={"thread_id"})
    configurable["model"] = route.name
    thread_id: str | None = None
    if with_threads:
        thread_id = client.thread_id or f"runnable-{uuid.uuid4().hex}"
        await services.threads.claim(principal, thread_id, model=route.name)
        configurable["thread_id"] = checkpoint_key(principal.org_id, thread_id)
    context = CallContext(
        org_id=principal.org_id,
        user_id=principal.user_id,
        route=flow,
        request_id=current_request_id(),
        thread_id=thread_id,
    )
    context, cap = await services.limits.hold(
        principal,
        context,
        model=route.name,
        prompt=lambda: orjson.dumps(run_input).decode(),
        messages=1,
        reply_limit=client.max_tokens,
    )
    if cap is not None:
        configurable["max_tokens"] = cap
    configurable.update(org_id=principal.org_id, user_id=principal.user_id)
    trace = run_metadata(context)
    return {
        **config,
        "metadata": {**(config.get("metadata") or {}), **trace["metadata"]},
        "tags": [*(config.get("tags") or []), *trace["tags"]],
        "run_name": trace["run_name"],
        "configurable": configurable,
        "callbacks": [services.accountant.callback(context)],
    }
