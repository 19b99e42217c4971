"""Org-scoped keys built by knowledge code are unambiguous for any org id (issue 17.2).

Org ids come from ai-helper-back and may be any string (``/``, ``:``, Korean, blanks): no
key of one org may equal a key of another. Knowledge keys are tuples, hashes of JSON, or
built from the collection's own uuid, never an org id joined into a string.
"""

from __future__ import annotations

import itertools
import re
import uuid

from db.models import KnowledgeCollection
from knowledge.collections import CollectionCache
from knowledge.registry import vector_collection_name
from services.semantic_cache import context_key

ORGS = ["acme", "rag:acme", "acme/t1", "acme:", ":acme", "a", "a/", "/", ":", "", " ", "한국"]
ORGS += ["acme\x00", 'acme"', "acme\\", "ACME"]


def test_semantic_cache_contexts_never_cross_orgs() -> None:
    body = {"model": "m", "temperature": 0}
    keys = {context_key(org, "m", body, []) for org in ORGS}
    assert len(keys) == len(ORGS)
    # an org id may not borrow the separator of the model or a parameter
    assert context_key("a", "b/c", body, []) != context_key("a/b", "c", body, [])
    assert context_key("a", "m", {"org": "b"}, []) != context_key("b", "m", {"org": "a"}, [])


def test_collection_cache_keys_never_cross_orgs() -> None:
    cache = CollectionCache(ttl=60)
    pairs = list(itertools.product(ORGS, ["default", "a", "acme/default", "b:c"]))
    for org, name in pairs:
        cache.put(org, name, KnowledgeCollection(id=f"{org!r}|{name!r}", org_id=org, name=name))
    for org, name in pairs:
        found = cache.get(org, name)
        assert found is not None and (found.org_id, found.name) == (org, name)


def test_vector_collection_names_hold_no_org_id() -> None:
    collection_id = str(uuid.uuid4())
    names = {vector_collection_name(collection_id) for _ in range(20)}
    assert len(names) == 20  # a fresh name per re-embedding
    for name in names:
        # the collection's uuid (its registry row carries the org) and a random suffix
        assert re.fullmatch(rf"ahc-{collection_id.replace('-', '')}-[0-9a-f]{{8}}", name)
        assert len(name) <= 63  # Chroma's limit
