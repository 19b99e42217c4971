"""Prompt template use cases: versions, labels, listing with starters, resolution, render.

Routes call this, and so will every flow that uses a template by name (chat, RAG, the
playground runnable): they call :meth:`PromptTemplates.resolve` and render the returned
``ChatPromptTemplate`` (``ResolvedTemplate.render`` applies ``prompts.render``'s rules).
Which version a name means: ``version`` if given, else the version ``label`` points at,
else the ``production`` label's, else the latest. An org's template of a starter's name
replaces the starter for that org.
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.tokens import Principal
from core.errors import ApiError
from db.models import PromptTemplate, PromptTemplateVersion
from db.session import session_scope
from prompts import store
from prompts.content import TemplateContent, checked_content
from prompts.render import build_prompt, render_messages, to_openai
from prompts.starters import STARTER_AUTHOR, STARTERS, StarterTemplate
from prompts.syntax import TemplateFormat
from services.tool_checks import check_template_offer

Scope = Literal["org", "system"]
DEFAULT_LABEL = "production"
"""The label a flow uses when it names a template without a version or label."""
_PROMPT_CACHE_SIZE = 1024
_WRITE_ATTEMPTS = 10
"""SQLite has no row locks: concurrent writers of one name collide and retry."""


@dataclass(frozen=True)
class TemplateDraft:
    """A submitted version: ``description``/``tags`` ``None`` keep the template's."""

    name: str
    messages: Sequence[Mapping[str, Any]]
    template_format: TemplateFormat = "f-string"
    input_variables: Sequence[str] | None = None
    model: str | None = None
    params: Mapping[str, Any] | None = None
    description: str | None = None
    tags: Sequence[str] | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    response_format: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TemplateView:
    """One version of a template with the template's metadata, as routes show it."""

    name: str
    scope: Scope
    description: str
    tags: list[str]
    version: int
    latest_version: int
    labels: dict[str, int]
    content: TemplateContent
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ResolvedTemplate:
    """A template version ready to use: what ``resolve`` gives the flows.

    ``prompt`` is shared between callers (built once per content): use it, never mutate it.
    ``label`` is the label that chose the version (``None`` when chosen by number, or the
    latest with no ``production`` label). Usage events record ``name`` and ``version``.
    """

    name: str
    version: int
    scope: Scope
    prompt: ChatPromptTemplate
    template_format: TemplateFormat
    input_variables: tuple[str, ...]
    optional_variables: tuple[str, ...]
    model: str | None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    label: str | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None

    def render(self, variables: Mapping[str, Any]) -> list[BaseMessage]:
        """The rendered messages (422 ``PromptError`` naming missing/unexpected variables)."""
        return render_messages(self.prompt, variables)

    def render_openai(self, variables: Mapping[str, Any]) -> list[dict[str, str]]:
        """The rendered messages as OpenAI ``{role, content}`` dicts."""
        return to_openai(self.render(variables))


@dataclass(frozen=True)
class RenderResult:
    """``POST .../render``: the messages and which version produced them."""

    name: str
    version: int
    scope: Scope
    messages: list[dict[str, str]]
    model: str | None
    params: Mapping[str, Any]
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


def _not_found(name: str) -> ApiError:
    return ApiError(404, "template_not_found", f"no prompt template named {name!r}")


def _starter_view(starter: StarterTemplate) -> TemplateView:
    return TemplateView(
        name=starter.name,
        scope="system",
        description=starter.description,
        tags=list(starter.tags),
        version=starter.version,
        latest_version=starter.version,
        labels={},
        content=starter.content,
        created_by=STARTER_AUTHOR,
        created_at=starter.created_at,
        updated_at=starter.created_at,
    )


def _content(row: PromptTemplateVersion) -> TemplateContent:
    return TemplateContent(
        messages=list(row.messages),
        template_format=row.template_format,  # type: ignore[arg-type]
        input_variables=list(row.input_variables),
        optional_variables=list(row.optional_variables),
        model=row.model,
        params=dict(row.params or {}),
        tools=row.tools,
        response_format=row.response_format,
    )


def _org_view(
    template: PromptTemplate, version: PromptTemplateVersion, labels: dict[str, int]
) -> TemplateView:
    return TemplateView(
        name=template.name,
        scope="org",
        description=template.description,
        tags=list(template.tags),
        version=version.version,
        latest_version=template.latest_version,
        labels=labels,
        content=_content(version),
        created_by=version.created_by,
        created_at=version.created_at,
        updated_at=template.updated_at,
    )


def _normalize_tags(tags: Sequence[str]) -> list[str]:
    return sorted({t.strip() for t in tags if t.strip()})


class PromptTemplates:
    """The org's templates and the system starters (``services.prompt_templates``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._prompts: OrderedDict[str, ChatPromptTemplate] = OrderedDict()

    # --- writing ---------------------------------------------------------------------

    async def create(self, principal: Principal, draft: TemplateDraft) -> tuple[TemplateView, bool]:
        """Create the template or its next version; ``False`` when the content is the latest's.

        Identical content (same hash as the latest version) makes no version: the latest is
        returned, with ``description``/``tags`` updated when given. Concurrent writers of
        the same name are serialized by the primary keys and retried.
        """
        check_template_offer(draft.tools, draft.response_format)
        content, _ = checked_content(
            draft.messages,
            draft.template_format,
            input_variables=draft.input_variables,
            model=draft.model,
            params=draft.params,
            tools=draft.tools,
            response_format=draft.response_format,
        )
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return await self._write(principal, draft, content)
            except IntegrityError as exc:  # another writer took the name or the number
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise ApiError(
                        409, "conflict", f"template {draft.name!r} changed meanwhile; retry"
                    ) from exc
                await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")

    async def _write(
        self, principal: Principal, draft: TemplateDraft, content: TemplateContent
    ) -> tuple[TemplateView, bool]:
        async with session_scope(self._sessions) as session:
            template = await store.get_template(
                session, principal.org_id, draft.name, for_update=True
            )
            latest = None
            if template is None:
                template = store.add_template(
                    session,
                    principal.org_id,
                    draft.name,
                    description=draft.description or "",
                    tags=_normalize_tags(draft.tags or ()),
                    created_by=principal.user_id,
                )
                await session.flush()  # the template row before its first version
            else:
                latest = await store.get_version(session, template.id, template.latest_version)
                if draft.description is not None:
                    template.description = draft.description
                if draft.tags is not None:
                    template.tags = _normalize_tags(draft.tags)
            created = latest is None or latest.content_hash != content.content_hash
            if created:
                latest = store.add_version(session, template, content, created_by=principal.user_id)
            await session.flush()
            assert latest is not None
            labels = (await store.labels(session, [template.id]))[template.id]
            return _org_view(template, latest, labels), created

    async def delete(self, principal: Principal, name: str) -> None:
        """Delete the org's template, all its versions and labels (admins only).

        A starter cannot be deleted; deleting an org's override brings the starter back.
        """
        if not principal.is_admin:
            raise ApiError(403, "forbidden", "this action needs the admin role")
        async with session_scope(self._sessions) as session:
            # The template row first, as writers of versions and labels lock it: no deadlock.
            template = await store.get_template(session, principal.org_id, name, for_update=True)
            if template is None:
                raise self._missing_org_template(name, "deleted")
            await store.delete_template(session, template.id)

    async def set_label(
        self, principal: Principal, name: str, label: str, version: int
    ) -> dict[str, int]:
        """Point ``label`` at an existing version of the org's template; the labels after.

        The label is upserted (concurrent first writes all succeed, the last one stays);
        the template row is locked (PostgreSQL) so a concurrent delete waits instead of
        failing the label's foreign key.
        """
        async with session_scope(self._sessions) as session:
            template = await store.get_template(session, principal.org_id, name, for_update=True)
            if template is None:
                raise self._missing_org_template(name, "labelled")
            if await store.get_version(session, template.id, version) is None:
                raise ApiError(
                    404, "version_not_found", f"template {name!r} has no version {version}"
                )
            await store.set_label(
                session, template.id, label, version, updated_by=principal.user_id
            )
            await session.flush()
            return (await store.labels(session, [template.id]))[template.id]

    @staticmethod
    def _missing_org_template(name: str, action: str) -> ApiError:
        if name in STARTERS:
            return ApiError(
                409,
                "system_template",
                f"{name!r} is a system starter template and cannot be {action}; "
                "create a template of that name for your organization first",
            )
        return _not_found(name)

    # --- reading ---------------------------------------------------------------------

    async def list(
        self,
        org_id: str,
        *,
        q: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[TemplateView], int]:
        """A page of the latest versions (the org's and the starters it does not override)."""
        async with self._sessions() as session:
            rows = await store.list_templates(session, org_id, name_contains=q)
            overridden = {row.name for row in rows}
            entries: list[PromptTemplate | StarterTemplate] = [
                row for row in rows if tag is None or tag in row.tags
            ]
            entries += [
                starter
                for starter in STARTERS.values()
                if starter.name not in overridden
                and (not q or q.lower() in starter.name.lower())
                and (tag is None or tag in starter.tags)
            ]
            entries.sort(key=lambda entry: entry.name)
            page = entries[offset : offset + limit]
            ids = [e.id for e in page if isinstance(e, PromptTemplate)]
            versions = await store.latest_versions(session, ids)
            labels = await store.labels(session, ids)
        views = [
            _org_view(e, versions[e.id], labels[e.id])
            if isinstance(e, PromptTemplate)
            else _starter_view(e)
            for e in page
        ]
        return views, len(entries)

    async def get(
        self, org_id: str, name: str, *, version: int | None = None, label: str | None = None
    ) -> tuple[TemplateView, str | None]:
        """The version ``name`` means (see the module doc) and the label that chose it."""
        if version is not None and label is not None:
            raise ApiError(422, "invalid_request", "give a version or a label, not both")
        async with self._sessions() as session:
            template = await store.get_template(session, org_id, name)
            if template is None:
                return self._starter(name, version, label), None
            labels = (await store.labels(session, [template.id]))[template.id]
            chosen_by = None
            if version is None:
                if label is not None:
                    if label not in labels:
                        raise ApiError(
                            404, "label_not_found", f"template {name!r} has no label {label!r}"
                        )
                    chosen_by = label
                elif DEFAULT_LABEL in labels:
                    chosen_by = DEFAULT_LABEL
                version = labels[chosen_by] if chosen_by else template.latest_version
            row = await store.get_version(session, template.id, version)
            if row is None:
                raise ApiError(
                    404, "version_not_found", f"template {name!r} has no version {version}"
                )
        return _org_view(template, row, labels), chosen_by

    @staticmethod
    def _starter(name: str, version: int | None, label: str | None) -> TemplateView:
        starter = STARTERS.get(name)
        if starter is None:
            raise _not_found(name)
        if label is not None:
            raise ApiError(404, "label_not_found", f"template {name!r} has no label {label!r}")
        if version not in (None, starter.version):
            raise ApiError(404, "version_not_found", f"template {name!r} has no version {version}")
        return _starter_view(starter)

    async def versions(
        self, org_id: str, name: str, *, limit: int = 50, offset: int = 0
    ) -> tuple[builtins.list[TemplateView], int]:
        """A page of the template's versions, newest first."""
        async with self._sessions() as session:
            template = await store.get_template(session, org_id, name)
            if template is None:
                starter = self._starter(name, None, None)
                return ([starter] if offset == 0 else []), 1
            rows, count = await store.list_versions(
                session, template.id, limit=limit, offset=offset
            )
            labels = (await store.labels(session, [template.id]))[template.id]
        return [_org_view(template, row, labels) for row in rows], count

    async def resolve(
        self, org_id: str, name: str, version: int | None = None, label: str | None = None
    ) -> ResolvedTemplate:
        """The template version a flow means by ``name`` (404 ``ApiError`` when there is none).

        Without ``version`` or ``label``: the ``production`` label's version, else the latest.
        """
        view, chosen_by = await self.get(org_id, name, version=version, label=label)
        content = view.content
        return ResolvedTemplate(
            name=view.name,
            version=view.version,
            scope=view.scope,
            prompt=self._prompt(content),
            template_format=content.template_format,
            input_variables=tuple(content.input_variables),
            optional_variables=tuple(content.optional_variables),
            model=content.model,
            params=MappingProxyType(dict(content.params)),
            label=chosen_by,
            tools=content.tools,
            response_format=content.response_format,
        )

    async def render(
        self,
        org_id: str,
        name: str,
        variables: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
    ) -> RenderResult:
        """Render a template version with ``variables`` (the rules of ``prompts.render``)."""
        resolved = await self.resolve(org_id, name, version=version, label=label)
        return RenderResult(
            name=resolved.name,
            version=resolved.version,
            scope=resolved.scope,
            messages=resolved.render_openai(variables),
            model=resolved.model,
            params=resolved.params,
            tools=resolved.tools,
            response_format=resolved.response_format,
        )

    def _prompt(self, content: TemplateContent) -> ChatPromptTemplate:
        """The built prompt of a content, cached by hash (versions never change)."""
        key = content.content_hash
        prompt = self._prompts.get(key)
        if prompt is None:
            prompt = build_prompt(content.messages, content.template_format)
            self._prompts[key] = prompt
            if len(self._prompts) > _PROMPT_CACHE_SIZE:
                self._prompts.popitem(last=False)
        else:
            self._prompts.move_to_end(key)
        return prompt
