"""The run config of a runnable call (LangServe routes), built by the server, not the client.

The client may choose ``model``, ``temperature``, ``max_tokens`` and ``thread_id`` (and, for
the RAG runnables, the search: ``collection``, ``k``, ``filter``, ``mode``,
``min_similarity``); the service resolves the model (and the org's own key), claims the
thread for the caller, reserves against the org's limits, and writes org, user, route,
request id, accounting callback and tracing metadata last, so none of them can come from
the client.

The prompt playground (``/runnables/prompt``) also takes ``template`` and ``version`` or
``label``: the template is resolved here for the caller's org (404 before the run when it
does not exist, the template's 422 when an input's variables do not fit), its version is
pinned in ``configurable`` (so the run uses the version its usage events record), and its
model, temperature and max_tokens apply where the client sets none.
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from accounting.events import CallContext
from auth.tokens import Principal
from chains.prompt_playground import DEFAULT_TEMPLATE
from chains.prompt_playground import UNSET as PLAYGROUND_UNSET
from core.patterns import (
    COLLECTION_PATTERN,
    LABEL_PATTERN,
    TEMPLATE_NAME_PATTERN,
    THREAD_ID_PATTERN,
)
from core.request_id import current_request_id
from core.tracing import run_metadata
from db.models import checkpoint_key
from services.template_use import apply_template_defaults
from services.turn_locks import after_response

if TYPE_CHECKING:
    from services.container import Services
    from services.prompt_templates import ResolvedTemplate


class RunnableConfigurable(BaseModel):
    """What a client may put in ``config.configurable`` of a runnable call."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    thread_id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN)
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)
    k: int | None = Field(default=None, ge=1, le=50)
    filter: dict[str, Any] | None = None
    mode: Literal["vector", "keyword", "hybrid"] | None = None
    min_similarity: float | None = Field(default=None, ge=-1, le=1)


class PromptConfigurable(RunnableConfigurable):
    """The prompt playground's ``configurable``: also which template version.

    The playground's form submits every field, the unset ones with the runnable's "not
    given" values (``chains.prompt_playground.UNSET``); they are dropped here.
    """

    @model_validator(mode="before")
    @classmethod
    def _unset_to_none(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            k: v
            for k, v in data.items()
            if not (k in PLAYGROUND_UNSET and v == PLAYGROUND_UNSET[k] and not isinstance(v, bool))
        }

    template: str | None = Field(default=None, pattern=TEMPLATE_NAME_PATTERN)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    label: str | None = Field(default=None, pattern=LABEL_PATTERN)


_SEARCH_KEYS = {"collection", "k", "filter", "mode", "min_similarity"}
_TEMPLATE_KEYS = {"template", "version", "label"}


async def prompt_runnable_config(
    services: Services,
    principal: Principal,
    config: dict[str, Any],
    client: PromptConfigurable,
    run_input: Any,
    *,
    flow: str,
) -> dict[str, Any]:
    """The prompt playground's config: the caller's template version, pinned, then as usual."""
    template = await services.prompt_templates.resolve(
        principal.org_id,
        client.template or DEFAULT_TEMPLATE,
        version=client.version,
        label=client.label,
    )
    if isinstance(run_input, dict):  # invoke/stream: bad variables fail before the run
        template.render(run_input)
    return await runnable_config(
        services,
        principal,
        config,
        client,
        run_input,
        flow=flow,
        with_threads=False,
        template=template,
    )


async def runnable_config(
    services: Services,
    principal: Principal,
    config: dict[str, Any],
    client: RunnableConfigurable,
    run_input: Any,
    *,
    flow: str,
    with_threads: bool,
    require_thread: bool = True,
    thread_prefix: str = "",
    template: ResolvedTemplate | None = None,
) -> dict[str, Any]:
    """The config the runnable runs with.

    ``with_threads``: the runnable keeps a conversation under ``configurable.thread_id``
    (``thread_prefix`` + ``<org>/<thread id>``). Without a client ``thread_id``, a new
    thread is claimed (``require_thread``) or an unclaimed one-off key is used.
    ``template``: the resolved template version of the prompt playground.
    """
    gate = services.metering
    given = {
        "model": client.model,
        "temperature": client.temperature,
        "max_tokens": client.max_tokens,
    }
    params = apply_template_defaults(template, given)
    route = await gate.resolve(principal.org_id, params.get("model"))
    configurable: dict[str, Any] = client.model_dump(
        exclude_none=True, exclude={"thread_id", *_TEMPLATE_KEYS}
    )
    reply_limit = params.get("max_tokens")
    if template is not None:
        # The playground binds the template's other params itself (chains.prompt_playground).
        configurable.update(
            {k: params[k] for k in ("temperature", "max_tokens") if k in params},
            template=template.name,
            version=template.version,
        )
    thread_id: str | None = None
    if with_threads and (client.thread_id or require_thread):
        thread_id = client.thread_id or f"runnable-{uuid.uuid4().hex}"
        key = thread_prefix + checkpoint_key(principal.org_id, thread_id)
        claim = await services.threads.claim_turn(principal, thread_id, model=route.name)
        if claim.created:  # a first run that keeps nothing takes its thread back
            after_response(
                functools.partial(services.threads.discard_if_empty, principal, claim, key)
            )
        configurable["thread_id"] = key
    elif with_threads:
        once = f"once-{uuid.uuid4().hex}"
        configurable["thread_id"] = thread_prefix + checkpoint_key(principal.org_id, once)
    context = CallContext.for_principal(
        principal,
        flow,
        request_id=current_request_id(),
        thread_id=thread_id,
        template_name=template.name if template is not None else None,
        template_version=template.version if template is not None else None,
    )
    call = await gate.hold(
        principal,
        context,
        route,
        prompt=lambda: _prompt_text(run_input, template),
        messages=1,
        reply_limit=reply_limit,
    )
    if call.cap is not None:
        configurable["max_tokens"] = call.cap
    return dict(call.runnable_config(configurable, base=config))


def _prompt_text(run_input: Any, template: ResolvedTemplate | None) -> str:
    """What the hold counts: the input, and the template's tools and format sent with it.

    A spoken question's audio is not text (``/runnables/voice`` takes base64 audio: counted
    as tokens it would be hundreds of thousands for a sentence; its transcript is unknown
    until the run transcribes it), so it is left out.
    """
    if isinstance(run_input, dict) and "audio" in run_input:
        run_input = {key: value for key, value in run_input.items() if key != "audio"}
    parts = [orjson.dumps(run_input).decode()]
    if template is not None:
        offered = (template.tools, template.response_format)
        parts += [orjson.dumps(value).decode() for value in offered if value]
    return " ".join(parts)


def retriever_config(
    principal: Principal, config: dict[str, Any], client: RunnableConfigurable, *, flow: str
) -> dict[str, Any]:
    """The config of a retrieval-only runnable: the search and the caller, no model, no hold.

    The query's embedding is accounted by the knowledge service to the identity set here.
    """
    configurable: dict[str, Any] = client.model_dump(exclude_none=True, include=_SEARCH_KEYS)
    context = CallContext.for_principal(principal, flow, request_id=current_request_id())
    configurable.update(
        org_id=principal.org_id,
        user_id=principal.user_id,
        route=flow,
        request_id=context.request_id,
    )
    return _with_identity(config, context, configurable, [])


def _with_identity(
    config: dict[str, Any],
    context: CallContext,
    configurable: dict[str, Any],
    callbacks: list[Any],
) -> dict[str, Any]:
    """The client's config with the server's configurable, callbacks and tracing, last."""
    trace = run_metadata(context)
    return {
        **config,
        "metadata": {**(config.get("metadata") or {}), **trace["metadata"]},
        "tags": [*(config.get("tags") or []), *trace["tags"]],
        "run_name": trace["run_name"],
        "configurable": configurable,
        "callbacks": callbacks,
    }
