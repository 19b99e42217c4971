"""Reserve, then settle: how limits hold exactly, across instances and for streams.

Before the upstream call the enforcer reserves the worst case — one request, prompt tokens
plus the reply cap, and their price — against every limit that applies (the org's and the
user's, per minute/day/month). The first usage event of the call settles the reservation
to the real numbers; later calls of the same request add theirs. A denied reservation is a
429 ``limit_exceeded`` naming the limit, with ``Retry-After`` until its window resets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from calendar import monthrange
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

from accounting.events import CallContext
from accounting.pricing import PriceTable
from auth.tokens import Principal
from core.errors import ApiError
from core.keys import scoped_key
from core.metrics import count_limit_rejection
from core.tokenizer import count_text_tokens
from limits.counters import Check, Counters
from limits.store import LimitStore, LimitValues

logger = logging.getLogger(__name__)

_MICRO = Decimal(1_000_000)


def micro_usd(cost: Decimal) -> int:
    """Cost in integer micro-dollars (rounded up: never under-count)."""
    return int((cost * _MICRO).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class _Window:
    bucket: str
    ttl: int
    resets_in: int


def _windows(now: float) -> dict[str, _Window]:
    moment = datetime.fromtimestamp(now, UTC)
    end_of_day = 86_400 - (moment.hour * 3600 + moment.minute * 60 + moment.second)
    days_left = monthrange(moment.year, moment.month)[1] - moment.day
    return {
        "minute": _Window(str(int(now // 60)), 120, 60 - int(now % 60)),
        "day": _Window(moment.strftime("%Y%m%d"), 2 * 86_400, end_of_day),
        "month": _Window(moment.strftime("%Y%m"), 32 * 86_400, days_left * 86_400 + end_of_day),
    }


# limit name → (window, unit)
_LIMITS = {
    "requests_per_minute": ("minute", "requests"),
    "tokens_per_minute": ("minute", "tokens"),
    "tokens_per_day": ("day", "tokens"),
    "tokens_per_month": ("month", "tokens"),
    "cost_usd_per_month": ("month", "cost"),
    "audio_seconds_per_month": ("month", "audio"),
    "tts_characters_per_month": ("month", "characters"),
}
#: The units a call's usage settles (requests are never given back).
_SETTLED = ("tokens", "cost", "audio", "characters")


@dataclass(frozen=True, slots=True)
class Amounts:
    """What one call holds: tokens, cost, audio seconds (speech to text), characters (TTS)."""

    tokens: int = 0
    cost: Decimal = Decimal(0)
    audio_seconds: float = 0.0
    characters: int = 0

    def units(self) -> dict[str, int]:
        """The counters' integer units: micro-dollars, audio milliseconds (rounded up)."""
        return {
            "requests": 1,
            "tokens": self.tokens,
            "cost": micro_usd(self.cost),
            "audio": math.ceil(self.audio_seconds * 1000),
            "characters": self.characters,
        }


def _bound(unit: str, limit: int | Decimal) -> int:
    """A limit in its counter's unit."""
    if unit == "cost":
        return micro_usd(Decimal(limit))
    if unit == "audio":
        return int(limit) * 1000
    return int(limit)


class Reservation:
    """What one request holds against its limits until its usage is known."""

    def __init__(
        self, counters: Counters, keys: dict[str, list[tuple[str, int]]], held: dict[str, int]
    ) -> None:
        self._counters = counters
        self._keys = keys
        self._held = held
        self._settled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def account(
        self, tokens: int, cost: Decimal, *, audio_seconds: float = 0.0, characters: int = 0
    ) -> None:
        """Apply a call's real usage (the first one replaces the reservation)."""
        used = Amounts(tokens, cost, audio_seconds, characters).units()
        deltas: list[tuple[str, int, int]] = []
        for unit in _SETTLED:
            delta = used[unit] - (0 if self._settled else self._held.get(unit, 0))
            deltas += [(k, delta, ttl) for k, ttl in self._keys.get(unit, ()) if delta]
        self._settled = True
        if deltas:
            task = asyncio.get_running_loop().create_task(self._adjust(deltas))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def release(self) -> None:
        """No usage will come (the call failed before the model): give the hold back."""
        if not self._settled:
            self.account(0, Decimal(0))

    async def _adjust(self, deltas: list[tuple[str, int, int]]) -> None:
        try:
            await self._counters.adjust(deltas)
        except Exception:  # a lost settlement over-counts until the window ends; never raises
            logger.exception("could not settle a limit reservation")


class LimitEnforcer:
    """Applies an organization's limits to its calls."""

    def __init__(
        self,
        store: LimitStore,
        counters: Counters,
        prices: PriceTable,
        default_reply: int,
        *,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.store = store
        self.counters = counters
        self._prices = prices
        self._default_reply = default_reply

    async def hold(
        self,
        principal: Principal,
        context: CallContext,
        *,
        model: str,
        prompt: Callable[[], str],
        messages: int,
        reply_limit: int | None,
    ) -> tuple[CallContext, int | None]:
        """Reserve a call's worst case when the caller has limits.

        Returns the context carrying the reservation, and the reply cap to send upstream
        when the request set none (so the worst case is a real bound). Callers without
        limits pay one cached lookup.
        """
        scopes = await self.applicable(principal) if self.enabled else []
        if not scopes:
            return context, None
        prompt_tokens = count_text_tokens(prompt(), model) + 3 * messages + 3
        reply = reply_limit or self._default_reply
        amounts = Amounts(prompt_tokens + reply, self._prices.cost(model, prompt_tokens, reply))
        reservation = await self.reserve(principal, scopes, amounts)
        return replace(context, reservation=reservation), (reply if reply_limit is None else None)

    async def applicable(self, principal: Principal) -> list[tuple[str, LimitValues]]:
        """The limits that apply to the caller: ``("org", ...)`` and/or ``("user", ...)``."""
        org, user = await self.store.get(principal.org_id, principal.user_id)
        return [(scope, v) for scope, v in (("org", org), ("user", user)) if v is not None]

    async def hold_tokens(
        self,
        principal: Principal,
        context: CallContext,
        size: Callable[[], tuple[int, Decimal]],
    ) -> CallContext:
        """Reserve a call without a reply (a search's query embedding), or raise 429.

        ``size`` gives its tokens and cost, computed only when the caller has limits;
        ``(0, 0)`` admits work whose size is not known yet (an upload): it is refused only
        when a limit is already used up, or by ``requests_per_minute``.
        """
        return await self.hold_amounts(principal, context, lambda: Amounts(*size()))

    async def hold_amounts(
        self, principal: Principal, context: CallContext, size: Callable[[], Amounts]
    ) -> CallContext:
        """Reserve a call of a known size (speech: audio seconds, characters), or raise 429.

        ``size`` is computed only when the caller has limits.
        """
        scopes = await self.applicable(principal) if self.enabled else []
        if not scopes:
            return context
        reservation = await self.reserve(principal, scopes, size())
        return replace(context, reservation=reservation)

    async def tab(self, context: CallContext) -> CallContext:
        """Count accepted background work (ingestion, re-embedding) as its usage comes.

        Never denies: the request that queued the work was admitted. The usage lands in the
        windows current when the tab opened.
        """
        if not self.enabled or context.reservation is not None:
            return context
        principal = Principal(org_id=context.org_id, user_id=context.user_id)
        scopes = await self.applicable(principal)
        if not scopes:
            return context
        plan = _plan(principal, scopes, Amounts().units(), now=time.time())
        return replace(context, reservation=Reservation(self.counters, plan.keys, {}))

    async def reserve(
        self, principal: Principal, scopes: list[tuple[str, LimitValues]], amounts: Amounts
    ) -> Reservation:
        """Hold one request and ``amounts`` against every limit, or raise 429."""
        units = amounts.units()
        plan = _plan(principal, scopes, units, now=time.time())
        failed = await self.counters.reserve(plan.checks) if plan.checks else None
        if failed is not None:
            scope, name = plan.names[failed]
            window = plan.windows[_LIMITS[name][0]]
            whose = "organization's" if scope == "org" else "user's"
            limit = getattr(dict(scopes)[scope], name)
            count_limit_rejection(name, scope)
            raise ApiError(
                429,
                "limit_exceeded",
                f"the {whose} {name} limit ({limit}) would be exceeded",
                headers={"Retry-After": str(max(window.resets_in, 1))},
                details={"limit": name, "scope": scope},
            )
        return Reservation(self.counters, plan.keys, units)


@dataclass(slots=True)
class _Plan:
    """The counters one call touches: what to check, and what its usage settles."""

    windows: dict[str, _Window]
    checks: list[Check] = field(default_factory=list)
    names: list[tuple[str, str]] = field(default_factory=list)  # (scope, limit) per check
    keys: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # unit → counters


def _plan(
    principal: Principal,
    scopes: list[tuple[str, LimitValues]],
    units: dict[str, int],
    *,
    now: float,
) -> _Plan:
    plan = _Plan(_windows(now))
    for scope, values in scopes:
        # org:<org>:<limit>:<bucket> or user:<org>:<user>:<limit>:<bucket>, escaped so no
        # org's or user's counter is another's (``core.keys``); plain ids keep their keys.
        owner = [scope, principal.org_id] + ([principal.user_id] if scope == "user" else [])
        for name, (window_name, unit) in _LIMITS.items():
            limit = getattr(values, name)
            if limit is None:
                continue
            window = plan.windows[window_name]
            key = scoped_key(*owner, name, window.bucket, sep=":")
            plan.checks.append(Check(key, units[unit], _bound(unit, limit), window.ttl))
            plan.names.append((scope, name))
            if unit in _SETTLED:
                plan.keys.setdefault(unit, []).append((key, window.ttl))
    return plan
