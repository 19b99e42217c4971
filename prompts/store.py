"""Prompt templates in SQL: templates, versions, labels.

Functions take the caller's session (the caller owns the transaction) and filter templates
by org, so another org's template is simply not found. Child rows are deleted explicitly:
SQLite does not enforce the foreign keys' cascades.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import utcnow
from db.models import PromptTemplate, PromptTemplateLabel, PromptTemplateVersion
from db.upsert import upsert
from prompts.content import TemplateContent


async def get_template(
    session: AsyncSession, org_id: str, name: str, *, for_update: bool = False
) -> PromptTemplate | None:
    """The org's template called ``name``.

    ``for_update`` locks the row (PostgreSQL) so writers of the next version queue instead
    of colliding.
    """
    query = select(PromptTemplate).where(
        PromptTemplate.org_id == org_id, PromptTemplate.name == name
    )
    if for_update:
        query = query.with_for_update()
    result = await session.execute(query)
    return result.scalar_one_or_none()


async def list_templates(
    session: AsyncSession, org_id: str, *, name_contains: str | None = None
) -> list[PromptTemplate]:
    """The org's templates by name, optionally those whose name contains a substring.

    Not paged here: the caller merges them with the starters (one row per name; an org
    keeps tens to thousands, never millions) and pages the merged list.
    """
    query = select(PromptTemplate).where(PromptTemplate.org_id == org_id)
    if name_contains:
        query = query.where(
            func.lower(PromptTemplate.name).contains(name_contains.lower(), autoescape=True)
        )
    result = await session.execute(query.order_by(PromptTemplate.name))
    return list(result.scalars())


async def get_version(
    session: AsyncSession, template_id: str, version: int
) -> PromptTemplateVersion | None:
    """One version of a template."""
    return await session.get(PromptTemplateVersion, (template_id, version))


async def latest_versions(
    session: AsyncSession, template_ids: Sequence[str]
) -> dict[str, PromptTemplateVersion]:
    """The latest version of each template, by template id."""
    if not template_ids:
        return {}
    result = await session.execute(
        select(PromptTemplateVersion)
        .join(
            PromptTemplate,
            and_(
                PromptTemplate.id == PromptTemplateVersion.template_id,
                PromptTemplate.latest_version == PromptTemplateVersion.version,
            ),
        )
        .where(PromptTemplate.id.in_(template_ids))
    )
    return {row.template_id: row for row in result.scalars()}


async def list_versions(
    session: AsyncSession, template_id: str, *, limit: int, offset: int
) -> tuple[list[PromptTemplateVersion], int]:
    """A page of a template's versions, newest first, and how many there are."""
    total = await session.scalar(
        select(func.count())
        .select_from(PromptTemplateVersion)
        .where(PromptTemplateVersion.template_id == template_id)
    )
    result = await session.execute(
        select(PromptTemplateVersion)
        .where(PromptTemplateVersion.template_id == template_id)
        .order_by(PromptTemplateVersion.version.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(result.scalars()), int(total or 0)


async def labels(session: AsyncSession, template_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{template id: {label: version}}`` for the given templates."""
    out: dict[str, dict[str, int]] = {tid: {} for tid in template_ids}
    if not template_ids:
        return out
    result = await session.execute(
        select(PromptTemplateLabel)
        .where(PromptTemplateLabel.template_id.in_(template_ids))
        .order_by(PromptTemplateLabel.label)
    )
    for row in result.scalars():
        out[row.template_id][row.label] = row.version
    return out


def add_template(
    session: AsyncSession,
    org_id: str,
    name: str,
    *,
    description: str,
    tags: list[str],
    created_by: str,
) -> PromptTemplate:
    """A new template, with no version yet (``latest_version`` 0)."""
    row = PromptTemplate(
        id=str(uuid.uuid4()),
        org_id=org_id,
        name=name,
        description=description,
        tags=tags,
        latest_version=0,
        created_by=created_by,
    )
    session.add(row)
    return row


def add_version(
    session: AsyncSession, template: PromptTemplate, content: TemplateContent, *, created_by: str
) -> PromptTemplateVersion:
    """The template's next version (a concurrent writer of the same number fails the flush)."""
    template.latest_version += 1
    row = PromptTemplateVersion(
        template_id=template.id,
        version=template.latest_version,
        messages=content.messages,
        template_format=content.template_format,
        input_variables=content.input_variables,
        optional_variables=content.optional_variables,
        model=content.model,
        params=content.params,
        tools=content.tools,
        response_format=content.response_format,
        content_hash=content.content_hash,
        created_by=created_by,
    )
    session.add(row)
    return row


async def set_label(
    session: AsyncSession, template_id: str, label: str, version: int, *, updated_by: str
) -> PromptTemplateLabel:
    """Point ``label`` at ``version`` (created or moved, in one upsert: no first-write race)."""
    return await upsert(
        session,
        PromptTemplateLabel,
        {
            "template_id": template_id,
            "label": label,
            "version": version,
            "updated_by": updated_by,
            "updated_at": utcnow(),
        },
        key=("template_id", "label"),
    )


async def delete_template(session: AsyncSession, template_id: str) -> None:
    """Delete a template with its versions and labels."""
    await session.execute(
        delete(PromptTemplateLabel).where(PromptTemplateLabel.template_id == template_id)
    )
    await session.execute(
        delete(PromptTemplateVersion).where(PromptTemplateVersion.template_id == template_id)
    )
    await session.execute(delete(PromptTemplate).where(PromptTemplate.id == template_id))
