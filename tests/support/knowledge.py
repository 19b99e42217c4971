"""Helpers for knowledge-base tests: upload files to the live service, search it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.service import RunningService

DATA = Path(__file__).resolve().parents[1] / "data"
FORMATS = DATA / "formats"


def upload(
    service: RunningService,
    files: list[tuple[str, bytes]] | list[tuple[str, bytes, str]],
    *,
    org: str = "org-a",
    user: str = "alice",
    role: str = "member",
    field: str = "files",
    metadata: dict[str, Any] | None = None,
    collection: str | None = None,
) -> httpx.Response:
    """POST files as multipart to ``/api/knowledge/documents``."""
    parts = [
        (field, (f[0], f[1], f[2] if len(f) > 2 else "application/octet-stream"))  # type: ignore[misc]
        for f in files
    ]
    data: dict[str, str] = {}
    if metadata is not None:
        data["metadata"] = json.dumps(metadata)
    if collection is not None:
        data["collection"] = collection
    return httpx.post(
        f"{service.api}/knowledge/documents",
        headers=service.headers(org, user, role),  # type: ignore[arg-type]
        files=parts,
        data=data,
        timeout=60,
    )


def search(
    service: RunningService, query: str, *, org: str = "org-a", **body: Any
) -> httpx.Response:
    """POST ``/api/knowledge/search``."""
    return httpx.post(
        f"{service.api}/knowledge/search",
        headers=service.headers(org),
        json={"query": query, **body},
        timeout=60,
    )
