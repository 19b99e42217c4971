"""Org-scoped keys are unambiguous: no two owners share a checkpoint or a limit counter.

Issue 17, item 2: ``"rag:" + "acme/t1"`` (org ``acme``'s knowledge thread) was org
``rag:acme``'s chat thread ``t1``. Keys are now built by ``core.keys.scoped_key``.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from auth.tokens import Principal
from core.keys import scoped_key
from db.models import RAG_THREAD_PREFIX, checkpoint_key, rag_checkpoint_key
from limits.enforcer import Amounts, _plan
from limits.store import LimitValues

TRICKY = [
    "acme",
    "rag:acme",
    "rag",
    "a/b",
    "a",
    "b",
    "a:b",
    "b:c",
    "a:b:c",
    "a/b/c",
    "한국",
    "%2F",
    "%3A",
    "%",
    "/",
    ":",
    "",
    "rag:",
    "rag:a/b",
    "org",
    "user",
    "t1",
    "a%2Fb",
    "\ud800",  # a lone surrogate (JSON allows it in a token's claims)
]


def test_checkpoint_keys_of_distinct_owners_never_collide() -> None:
    keys: dict[str, tuple[str, str, str]] = {}
    for org, thread in itertools.product(TRICKY, repeat=2):
        for kind, key in (
            ("chat", checkpoint_key(org, thread)),
            ("rag", rag_checkpoint_key(org, thread)),
        ):
            owner = (kind, org, thread)
            assert keys.setdefault(key, owner) == owner, f"{owner} and {keys[key]} share {key!r}"
    assert len(keys) == 2 * len(TRICKY) ** 2


def test_the_reported_collision_is_gone() -> None:
    assert rag_checkpoint_key("acme", "t1") == "rag:acme/t1"
    assert checkpoint_key("rag:acme", "t1") == "rag%3Aacme/t1"
    assert not checkpoint_key("rag:acme", "t1").startswith(RAG_THREAD_PREFIX)


@pytest.mark.parametrize(
    ("org", "thread"),
    [
        ("org-a", "t1"),
        ("Org_1.x~y-z", "thread-9.a_b~c"),
        ("org-a", "ticket:42"),  # thread ids may hold ':' (the API's pattern allows it)
        ("한국", "대화"),
        ("alice@example.com", "t"),
    ],
)
def test_ids_without_structure_characters_keep_their_keys(org: str, thread: str) -> None:
    """Stored checkpoints and live counters stay valid: no data migration."""
    assert checkpoint_key(org, thread) == f"{org}/{thread}"
    assert rag_checkpoint_key(org, thread) == f"rag:{org}/{thread}"
    assert scoped_key("org", org, "tokens_per_day", "20261205", sep=":") == (
        f"org:{org}:tokens_per_day:20261205"
    )


@pytest.mark.parametrize("sep", ["/", ":"])
def test_scoped_keys_are_injective_per_arity(sep: str) -> None:
    for arity in (1, 2, 3):
        keys: dict[str, tuple[str, ...]] = {}
        for parts in itertools.product(TRICKY[:14], repeat=arity):
            key = scoped_key(*parts, sep=sep)
            assert keys.setdefault(key, parts) == parts, f"{parts} and {keys[key]}: {key!r}"


def test_inner_parts_hold_no_raw_structure_characters() -> None:
    for value in TRICKY:
        inner = scoped_key(value, "x").removesuffix("/x")
        assert not set(inner) & {"/", ":"}
        assert "%" not in inner.replace("%25", "").replace("%2F", "").replace("%3A", "")


def test_bad_separators_are_refused() -> None:
    with pytest.raises(ValueError):
        scoped_key("a", "b", sep="-")
    with pytest.raises(ValueError):
        scoped_key()


def counter_keys(org: str, user: str, now: float = 1_764_900_000.0) -> set[str]:
    values = LimitValues(requests_per_minute=1, tokens_per_day=10, cost_usd_per_month=Decimal(1))
    plan = _plan(
        Principal(org_id=org, user_id=user),
        [("org", values), ("user", values)],
        Amounts(tokens=1, cost=Decimal("0.000001")).units(),
        now=now,
    )
    return {check.key for check in plan.checks}


def test_limit_counters_of_distinct_owners_never_collide() -> None:
    owners: dict[str, tuple[str, str | None]] = {}
    for org, user in itertools.product(TRICKY, repeat=2):
        for key in counter_keys(org, user):
            owner = (org, user) if key.startswith("user:") else (org, None)
            assert owners.setdefault(key, owner) == owner, f"{owner} and {owners[key]}: {key!r}"


def test_plain_counter_keys_are_unchanged() -> None:
    keys = counter_keys("org-a", "alice", now=1_764_900_000.0)
    bucket = str(1_764_900_000 // 60)
    assert f"org:org-a:requests_per_minute:{bucket}" in keys
    assert f"user:org-a:alice:requests_per_minute:{bucket}" in keys
    assert counter_keys("a", "b:c").isdisjoint(counter_keys("a:b", "c"))
