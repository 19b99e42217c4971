"""The usage event as the recorder carries it (a plain record, serializable to the spool)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from auth.tokens import Principal


class Settlement(Protocol):
    """A request's hold on its limits (``limits.enforcer.Reservation``), settled by usage."""

    def account(
        self, tokens: int, cost: Decimal, *, audio_seconds: float = 0.0, characters: int = 0
    ) -> None:
        """Apply a call's real usage (speech: audio seconds transcribed, characters spoken)."""

    def release(self) -> None:
        """Give the hold back when no usage will come."""


@dataclass(slots=True)
class UsageRecord:
    """One accounted call; field names are the columns of ``ahc_usage_events``."""

    org_id: str
    user_id: str
    route: str
    model: str
    provider: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    cost_usd: Decimal = Decimal(0)
    latency_ms: int = 0
    cached: bool = False
    status: str = "ok"
    error_code: str | None = None
    request_id: str | None = None
    thread_id: str | None = None
    template_name: str | None = None
    template_version: int | None = None
    audio_seconds: float = 0.0
    """Speech to text: the audio's decoded duration."""
    tts_characters: int = 0
    """Text to speech: the characters spoken."""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(cls, context: CallContext, *, model: str, provider: str, **fields: Any) -> UsageRecord:
        """An event of ``context``'s request (who, route, request, thread, template)."""
        return cls(
            org_id=context.org_id,
            user_id=context.user_id,
            route=context.route,
            model=model,
            provider=provider,
            request_id=context.request_id,
            thread_id=context.thread_id,
            template_name=context.template_name,
            template_version=context.template_version,
            **fields,
        )

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens

    def row(self) -> dict[str, Any]:
        """The database row (a shallow copy: ``asdict`` deep-copies every value)."""
        row = {name: getattr(self, name) for name in _RECORD_FIELDS}
        row["total_tokens"] = self.total_tokens
        return row

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for the spool file)."""
        data = asdict(self)
        data["cost_usd"] = str(self.cost_usd)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageRecord:
        """Inverse of :meth:`to_json`."""
        return cls(
            **{
                **data,
                "cost_usd": Decimal(data["cost_usd"]),
                "created_at": datetime.fromisoformat(data["created_at"]),
            }
        )


_RECORD_FIELDS = tuple(f.name for f in fields(UsageRecord))


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a call is for and where it came from; set by the server, never by the client."""

    org_id: str
    user_id: str
    route: str
    request_id: str | None = None
    thread_id: str | None = None
    template_name: str | None = None
    template_version: int | None = None
    reservation: Settlement | None = None
    """The request's hold on its limits, settled by its usage events."""

    @classmethod
    def for_principal(
        cls,
        principal: Principal,
        flow: str,
        *,
        request_id: str | None = None,
        thread_id: str | None = None,
        template_name: str | None = None,
        template_version: int | None = None,
    ) -> CallContext:
        """The context of a call made for ``principal`` by ``flow`` (the usage label)."""
        return cls(
            org_id=principal.org_id,
            user_id=principal.user_id,
            route=flow,
            request_id=request_id,
            thread_id=thread_id,
            template_name=template_name,
            template_version=template_version,
        )
